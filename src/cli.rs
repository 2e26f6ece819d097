//! Command-line tools: `tenant create|show` (directly on the database) and `simulate`, which
//! sends a correctly signed sample callback to a running gateway the way a provider would.

use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};
use rand::Rng;

use crate::config::Config;
use crate::crypto::{random_token, sha256_hex, Sealer};
use crate::providers::config::ProviderConfig;
use crate::providers::{twilio, Route};
use crate::store::{now_ms, Tenant};

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
}

impl SimProvider {
    fn route(self) -> Route {
        match self {
            Self::TwilioIncoming => Route::TwilioIncoming,
            Self::TwilioStatus => Route::TwilioStatus,
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
    /// Where the gateway listens (default: HOOKGATE_PUBLIC_URL).
    #[arg(long)]
    pub url: Option<String>,
    /// Call status to report (status callbacks).
    #[arg(long, default_value = "completed")]
    pub status: String,
    /// Call id to use (default: a new random one).
    #[arg(long)]
    pub call_id: Option<String>,
}

/// A callback ready to send.
pub struct SignedRequest {
    pub method: reqwest::Method,
    /// Path and query.
    pub path_and_query: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

fn fixture_for_status(status: &str) -> &'static str {
    match status {
        "ringing" => include_str!("../fixtures/twilio/status_ringing.form"),
        "in-progress" | "answered" => include_str!("../fixtures/twilio/status_in-progress.form"),
        "busy" => include_str!("../fixtures/twilio/status_busy.form"),
        "no-answer" => include_str!("../fixtures/twilio/status_no-answer.form"),
        _ => include_str!("../fixtures/twilio/status_completed.form"),
    }
}

const FIXTURE_CALL_SID: &str = "CA5f1c3a9e2b7d4f6a8c0e1b3d5f7a9c2e";

/// A random id with `prefix` and 32 hex digits, like provider ids.
pub fn random_sid(prefix: &str) -> String {
    format!("{prefix}{:032x}", rand::thread_rng().gen::<u128>())
}

/// Builds a signed Twilio callback from the fixtures. `public_url` is the gateway's public base.
pub fn twilio_request(
    route: Route,
    tenant: &str,
    auth_token: &str,
    public_url: &str,
    status: &str,
    call_sid: &str,
) -> SignedRequest {
    let fixture = match route {
        Route::TwilioIncoming => include_str!("../fixtures/twilio/incoming.form"),
        _ => fixture_for_status(status),
    };
    let mut form: Vec<(String, String)> = form_urlencoded::parse(fixture.trim().as_bytes())
        .into_owned()
        .map(|(k, v)| {
            if v == FIXTURE_CALL_SID {
                (k, call_sid.to_owned())
            } else {
                (k, v)
            }
        })
        .collect();
    if route == Route::TwilioStatus {
        for (k, v) in form.iter_mut() {
            if k == "CallStatus" {
                v.clone_from(&status.to_owned());
            }
        }
    }
    let path_and_query = format!("{}?tenant_id={tenant}", route.path());
    let signature = twilio::sign(auth_token, &format!("{public_url}{path_and_query}"), &form);
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(&form)
        .finish();
    SignedRequest {
        method: reqwest::Method::POST,
        path_and_query,
        headers: vec![
            (
                "content-type".into(),
                "application/x-www-form-urlencoded".into(),
            ),
            ("x-twilio-signature".into(), signature),
        ],
        body: body.into_bytes(),
    }
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
    let req = match &cfg {
        ProviderConfig::Twilio(c) => twilio_request(
            route,
            &args.tenant,
            &c.auth_tokens[0],
            &config.public_url,
            &args.status,
            &args.call_id.clone().unwrap_or_else(|| random_sid("CA")),
        ),
    };
    let base = args
        .url
        .clone()
        .unwrap_or_else(|| config.public_url.clone());
    let url = format!("{}{}", base.trim_end_matches('/'), req.path_and_query);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let mut builder = client
        .request(req.method.clone(), &url)
        .body(req.body.clone());
    for (k, v) in &req.headers {
        builder = builder.header(k, v);
    }
    println!("> {} {}", req.method, req.path_and_query);
    let resp = builder.send().await?;
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    println!("< {status}\n{text}");
    anyhow::ensure!(status.is_success(), "the gateway answered {status}");
    Ok(())
}

/// Generates a new, never-used API key (exposed for tests and tools).
pub fn new_api_key() -> String {
    random_token("hk_")
}

impl SignedRequest {
    /// The same request sent to another path (tests use it to aim a signed request elsewhere).
    pub fn clone_with_path(&self, path_and_query: &str) -> Self {
        Self {
            method: self.method.clone(),
            path_and_query: path_and_query.to_owned(),
            headers: self.headers.clone(),
            body: self.body.clone(),
        }
    }
}
