//! Provider credentials as stored per tenant: parsed and validated from the management API,
//! sealed at rest, shown redacted.

use serde_json::Value;

use super::exotel::ExotelConfig;
use super::razorpay::RazorpayConfig;
use super::stripe::StripeConfig;
use super::twilio::TwilioConfig;
use crate::error::ApiError;

/// One tenant's credentials for one provider.
#[derive(Clone, Debug, PartialEq)]
pub enum ProviderConfig {
    Twilio(TwilioConfig),
    Exotel(ExotelConfig),
    Stripe(StripeConfig),
    Razorpay(RazorpayConfig),
}

impl ProviderConfig {
    /// Parses and validates a `PUT …/providers/{provider}` body. `previous` is the stored config,
    /// if any (for fields a provider keeps when absent: Exotel's generated tokens).
    pub fn from_request(
        provider: &str,
        body: Value,
        previous: Option<&ProviderConfig>,
    ) -> Result<Self, ApiError> {
        fn parse<T: serde::de::DeserializeOwned>(
            provider: &str,
            body: Value,
        ) -> Result<T, ApiError> {
            serde_json::from_value(body).map_err(|e| {
                ApiError::bad_request("invalid_config", format!("invalid {provider} config: {e}"))
            })
        }
        let cfg = match provider {
            "twilio" => {
                let c: TwilioConfig = parse(provider, body)?;
                c.validate()?;
                Self::Twilio(c)
            }
            "exotel" => {
                let prev = match previous {
                    Some(Self::Exotel(p)) => Some(p),
                    _ => None,
                };
                Self::Exotel(ExotelConfig::from_request(body, prev)?)
            }
            "stripe" => {
                let c: StripeConfig = parse(provider, body)?;
                c.validate()?;
                Self::Stripe(c)
            }
            "razorpay" => {
                let c: RazorpayConfig = parse(provider, body)?;
                c.validate()?;
                Self::Razorpay(c)
            }
            _ => {
                return Err(ApiError::not_found(
                    "unknown_provider",
                    format!("unknown provider `{provider}`"),
                ))
            }
        };
        Ok(cfg)
    }

    /// Reads a stored (already opened) config.
    pub fn from_stored(provider: &str, json: &str) -> anyhow::Result<Self> {
        Ok(match provider {
            "twilio" => Self::Twilio(serde_json::from_str(json)?),
            "exotel" => Self::Exotel(serde_json::from_str(json)?),
            "stripe" => Self::Stripe(serde_json::from_str(json)?),
            "razorpay" => Self::Razorpay(serde_json::from_str(json)?),
            other => anyhow::bail!("unknown provider `{other}` in storage"),
        })
    }

    /// The JSON stored (sealed) in the database.
    pub fn to_stored(&self) -> String {
        match self {
            Self::Twilio(c) => serde_json::to_string(c),
            Self::Exotel(c) => serde_json::to_string(c),
            Self::Stripe(c) => serde_json::to_string(c),
            Self::Razorpay(c) => serde_json::to_string(c),
        }
        .expect("configs serialize")
    }

    /// The config as the API shows it: secrets reduced to their last four characters.
    pub fn redacted(&self) -> Value {
        match self {
            Self::Twilio(c) => c.redacted(),
            Self::Exotel(c) => c.redacted(),
            Self::Stripe(c) => c.redacted(),
            Self::Razorpay(c) => c.redacted(),
        }
    }

    /// The token carried in the inbound URL (Exotel), if this provider uses one.
    pub fn url_token(&self) -> Option<&str> {
        match self {
            Self::Exotel(c) => Some(c.url_token()),
            _ => None,
        }
    }
}
