//! Provider credentials as stored per tenant: parsed and validated from the management API,
//! sealed at rest, shown redacted.

use serde_json::Value;

use super::twilio::TwilioConfig;
use crate::error::ApiError;

/// One tenant's credentials for one provider.
#[derive(Clone, Debug, PartialEq)]
pub enum ProviderConfig {
    Twilio(TwilioConfig),
}

impl ProviderConfig {
    /// Parses and validates a `PUT …/providers/{provider}` body. `previous` is the stored config,
    /// if any (for fields a provider keeps when absent).
    pub fn from_request(
        provider: &str,
        body: Value,
        _previous: Option<&ProviderConfig>,
    ) -> Result<Self, ApiError> {
        let bad = |e: serde_json::Error| {
            ApiError::bad_request("invalid_config", format!("invalid {provider} config: {e}"))
        };
        match provider {
            "twilio" => {
                let c: TwilioConfig = serde_json::from_value(body).map_err(bad)?;
                c.validate()?;
                Ok(Self::Twilio(c))
            }
            _ => Err(ApiError::not_found(
                "unknown_provider",
                format!("unknown provider `{provider}`"),
            )),
        }
    }

    /// Reads a stored (already opened) config.
    pub fn from_stored(provider: &str, json: &str) -> anyhow::Result<Self> {
        Ok(match provider {
            "twilio" => Self::Twilio(serde_json::from_str(json)?),
            other => anyhow::bail!("unknown provider `{other}` in storage"),
        })
    }

    /// The JSON stored (sealed) in the database.
    pub fn to_stored(&self) -> String {
        match self {
            Self::Twilio(c) => serde_json::to_string(c),
        }
        .expect("configs serialize")
    }

    /// The config as the API shows it: secrets reduced to their last four characters.
    pub fn redacted(&self) -> Value {
        match self {
            Self::Twilio(c) => c.redacted(),
        }
    }
}

impl ProviderConfig {
    /// The token carried in the inbound URL (Exotel), if this provider uses one.
    pub fn url_token(&self) -> Option<&str> {
        match self {
            Self::Twilio(_) => None,
        }
    }
}
