//! Command-line tools: `tenant create|show` (directly on the database) and `simulate`, which
//! sends a correctly signed sample callback to a running gateway the way a provider would.

use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};

use crate::config::Config;
use crate::crypto::{random_token, sha256_hex, Sealer};
use crate::providers::config::ProviderConfig;
use crate::providers::exotel::redact_token;
use crate::providers::Route;
use crate::store::{now_ms, Tenant};

pub mod samples;

pub use samples::{
    exotel_request, random_id, random_sid, razorpay_request, stripe_request, twilio_request,
    SignedRequest,
};

#[derive(Subcommand)]
pub enum TenantCommand {
    /// Create a tenant and print its API key (shown once).
    Create {
        #[arg(long)]
        id: String,
        #[arg(long)]
        name: Option<String>,
    },
    /// Show a tenant.
    Show { id: String },
}

pub async fn tenant(config: &Config, cmd: TenantCommand) -> anyhow::Result<()> {
    let store = crate::store::open(config).await?;
    match cmd {
        TenantCommand::Create { id, name } => {
            anyhow::ensure!(
                crate::http::inbound::valid_tenant_id(&id),
                "id must match [a-z0-9_-]{{1,64}}"
            );
            let key = random_token("hk_");
            let t = Tenant {
                name: name.unwrap_or_else(|| id.clone()),
                id,
                created_at: now_ms(),
            };
            store.create_tenant(&t, &sha256_hex(key.as_bytes())).await?;
            println!(
                "{}",
                serde_json::json!({"id": t.id, "name": t.name, "api_key": key})
            );
        }
        TenantCommand::Show { id } => {
            let t = store
                .get_tenant(&id)
                .await?
                .ok_or_else(|| anyhow::anyhow!("no tenant `{id}`"))?;
            println!(
                "{}",
                serde_json::json!({"id": t.id, "name": t.name, "created_at": crate::event::rfc3339(crate::store::from_ms(t.created_at))})
            );
        }
    }
    Ok(())
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum SimProvider {
    TwilioIncoming,
    TwilioStatus,
    ExotelIncoming,
    ExotelStatus,
    Stripe,
    Razorpay,
}

impl SimProvider {
    fn route(self) -> Route {
        match self {
            Self::TwilioIncoming => Route::TwilioIncoming,
            Self::TwilioStatus => Route::TwilioStatus,
            Self::ExotelIncoming => Route::ExotelIncoming,
            Self::ExotelStatus => Route::ExotelStatus,
            Self::Stripe => Route::Stripe,
            Self::Razorpay => Route::Razorpay,
        }
    }
}

#[derive(Args)]
pub struct SimulateArgs {
    /// Which provider callback to send.
    pub provider: SimProvider,
    /// The tenant whose credentials sign the callback.
    #[arg(long)]
    pub tenant: String,
    /// The gateway's base URL as providers call it (default: HOOKGATE_PUBLIC_URL); Twilio
    /// callbacks are signed over it.
    #[arg(long)]
    pub url: Option<String>,
    /// What to report: a call status for calls (completed, ringing, in-progress, busy,
    /// no-answer, failed); for payments completed, failed, refunded or a provider event type
    /// with a sample (e.g. checkout.session.completed, order.paid).
    #[arg(long, default_value = "completed")]
    pub status: String,
    /// Call id to use (default: a new random one).
    #[arg(long)]
    pub call_id: Option<String>,
    /// Payment id to use for stripe (pi_…) and razorpay (pay_…) (default: a new random one).
    #[arg(long)]
    pub payment_id: Option<String>,
}

/// Builds the callback `args` asks for, signed with the tenant's first secret (Exotel: the
/// token of its inbound URLs).
fn sample_request(
    config: &Config,
    args: &SimulateArgs,
    cfg: &ProviderConfig,
) -> anyhow::Result<SignedRequest> {
    let route = args.provider.route();
    let call_id = |prefix: &str| args.call_id.clone().unwrap_or_else(|| random_sid(prefix));
    let payment_id = |prefix: &str, n: usize| {
        args.payment_id
            .clone()
            .unwrap_or_else(|| random_id(prefix, n))
    };
    Ok(match cfg {
        ProviderConfig::Twilio(c) => twilio_request(
            route,
            &args.tenant,
            &c.auth_tokens[0],
            // Signed over the URL it is sent to, as Twilio signs the URL it calls.
            args.url.as_deref().unwrap_or(&config.public_url),
            &args.status,
            &call_id("CA"),
        ),
        ProviderConfig::Exotel(c) => exotel_request(
            route,
            &args.tenant,
            c.url_token(),
            &args.status,
            &call_id(""),
        ),
        ProviderConfig::Stripe(c) => stripe_request(
            &args.tenant,
            &c.signing_secrets[0],
            &args.status,
            &payment_id("pi_3", 24),
            chrono::Utc::now().timestamp(),
        )?,
        ProviderConfig::Razorpay(c) => razorpay_request(
            &args.tenant,
            &c.webhook_secrets[0],
            &args.status,
            &payment_id("pay_", 14),
        )?,
    })
}

pub async fn simulate(config: &Config, args: SimulateArgs) -> anyhow::Result<()> {
    let store = crate::store::open(config).await?;
    let route = args.provider.route();
    let sealed = store
        .get_provider_config(&args.tenant, route.provider())
        .await?
        .ok_or_else(|| {
            anyhow::anyhow!(
                "tenant `{}` has no {} credentials",
                args.tenant,
                route.provider()
            )
        })?;
    let cfg = ProviderConfig::from_stored(
        route.provider(),
        &Sealer::new(config.master_key).open(&sealed)?,
    )?;
    let req = sample_request(config, &args, &cfg)?;
    let base = args
        .url
        .clone()
        .unwrap_or_else(|| config.public_url.clone());
    let url = format!("{}{}", base.trim_end_matches('/'), req.path_and_query);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let mut builder = client
        .request(req.method.clone(), &url)
        .body(req.body.clone());
    for (k, v) in &req.headers {
        builder = builder.header(k, v);
    }
    // The Exotel token is a secret: never printed, also not in an error naming the URL.
    println!("> {} {}", req.method, redact_token(&req.path_and_query));
    let resp = builder.send().await.map_err(|e| {
        anyhow::anyhow!(
            "could not reach the gateway at {}: {}",
            redact_token(&url),
            e.without_url()
        )
    })?;
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    println!("< {status}\n{text}");
    // Exotel's Passthru may be configured to answer 302 (the applet's other branch).
    let expected = status.is_success() || (route == Route::ExotelIncoming && status == 302);
    anyhow::ensure!(expected, "the gateway answered {status}");
    Ok(())
}

/// Generates a new, never-used API key (exposed for tests and tools).
pub fn new_api_key() -> String {
    random_token("hk_")
}
