//! The HTTP surface: one router per concern (inbound callbacks, management API, health), the
//! shared application state, and request tracing without secrets.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Router;
use tokio::sync::RwLock;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;

use crate::config::Config;
use crate::crypto::Sealer;
use crate::error::ApiError;
use crate::providers::config::ProviderConfig;
use crate::store::batcher::Batcher;
use crate::store::DynStore;

pub mod admin;
pub mod extract;
pub mod health;
pub mod inbound;
pub mod subscriptions;

/// How long a provider config read from the database is reused. Changes made through this
/// instance take effect at once; other instances see them within this time.
const CONFIG_TTL: Duration = Duration::from_secs(2);

type ConfigCache = RwLock<HashMap<(String, &'static str), (Instant, Option<Arc<ProviderConfig>>)>>;

/// State shared by every handler.
pub struct AppState {
    pub config: Config,
    pub store: DynStore,
    pub batcher: Batcher,
    pub sealer: Sealer,
    /// SHA-256 hex of the admin token.
    pub admin_hash: String,
    pub delivery: crate::delivery::Delivery,
    pub metrics: Arc<crate::metrics::Metrics>,
    configs: ConfigCache,
}

pub type SharedState = Arc<AppState>;

impl AppState {
    pub fn new(
        config: Config,
        store: DynStore,
        batcher: Batcher,
        admin_hash: String,
        delivery: crate::delivery::Delivery,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Self {
        let sealer = Sealer::new(config.master_key);
        Self {
            config,
            store,
            batcher,
            sealer,
            admin_hash,
            delivery,
            metrics,
            configs: RwLock::new(HashMap::new()),
        }
    }

    /// Where deliveries may go, from the configuration.
    pub fn target_policy(&self) -> crate::delivery::client::TargetPolicy {
        target_policy(&self.config)
    }

    /// The tenant's config for `provider`, from a short-lived cache.
    pub async fn provider_config(
        &self,
        tenant: &str,
        provider: &'static str,
    ) -> Result<Option<Arc<ProviderConfig>>, ApiError> {
        let key = (tenant.to_owned(), provider);
        if let Some((at, cfg)) = self.configs.read().await.get(&key) {
            if at.elapsed() < CONFIG_TTL {
                return Ok(cfg.clone());
            }
        }
        let stored = self.store.get_provider_config(tenant, provider).await?;
        let cfg = match stored {
            None => None,
            Some(sealed) => {
                let json = self.sealer.open(&sealed).map_err(ApiError::Internal)?;
                Some(Arc::new(
                    ProviderConfig::from_stored(provider, &json).map_err(ApiError::Internal)?,
                ))
            }
        };
        let mut cache = self.configs.write().await;
        if cache.len() > 100_000 {
            cache.clear();
        }
        cache.insert(key, (Instant::now(), cfg.clone()));
        Ok(cfg)
    }

    /// Stores a provider config and makes this instance use it at once.
    pub async fn put_provider_config(
        &self,
        tenant: &str,
        provider: &'static str,
        cfg: ProviderConfig,
    ) -> Result<(), ApiError> {
        let sealed = self.sealer.seal(&cfg.to_stored());
        self.store
            .put_provider_config(tenant, provider, &sealed)
            .await?;
        self.configs.write().await.insert(
            (tenant.to_owned(), provider),
            (Instant::now(), Some(Arc::new(cfg))),
        );
        Ok(())
    }
}

/// The outbound address policy of a configuration.
pub fn target_policy(config: &Config) -> crate::delivery::client::TargetPolicy {
    crate::delivery::client::TargetPolicy {
        allow_http: config.allow_http_targets,
        allow_private: config.allow_private_targets.clone(),
    }
}

/// The whole router.
pub fn router(state: SharedState) -> Router {
    Router::new()
        .merge(inbound::router())
        .merge(admin::router())
        .merge(subscriptions::router())
        .merge(health::router())
        .fallback(|| async { ApiError::not_found("route_not_found", "no such route") })
        .method_not_allowed_fallback(|| async {
            (
                StatusCode::METHOD_NOT_ALLOWED,
                axum::Json(serde_json::json!({"error": {"code": "method_not_allowed", "message": "method not allowed on this route"}})),
            )
        })
        .with_state(state)
        .layer(
            TraceLayer::new_for_http().make_span_with(|req: &Request| {
                let route = req
                    .extensions()
                    .get::<MatchedPath>()
                    .map(|m| m.as_str().to_owned())
                    .unwrap_or_else(|| "unmatched".to_owned());
                // The query is never logged: Exotel routes carry a secret token in it.
                tracing::info_span!(
                    "request",
                    method = %req.method(),
                    route = %route,
                    tenant = tracing::field::Empty,
                    provider = tracing::field::Empty,
                    event_id = tracing::field::Empty,
                )
            }),
        )
        .layer(CatchPanicLayer::custom(|_| {
            tracing::error!("handler panicked");
            ApiError::Internal(anyhow::anyhow!("handler panicked")).into_response()
        }))
}

/// The client address for a request: the peer, or, when the peer is a trusted proxy, the last
/// address in `X-Forwarded-For` that is not itself a trusted proxy.
pub fn client_ip(
    config: &Config,
    peer: SocketAddr,
    headers: &axum::http::HeaderMap,
) -> std::net::IpAddr {
    let trusted = |ip: &std::net::IpAddr| config.trusted_proxies.iter().any(|n| n.contains(ip));
    let peer_ip = peer.ip().to_canonical();
    if !trusted(&peer_ip) {
        return peer_ip;
    }
    let forwarded: Vec<std::net::IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    forwarded
        .into_iter()
        .rev()
        .find(|ip| !trusted(ip))
        .unwrap_or(peer_ip)
}

/// The public base URL the provider called: `HOOKGATE_PUBLIC_URL`, or, when the peer is a
/// trusted proxy that sent them, `X-Forwarded-Proto` + `X-Forwarded-Host`.
pub fn public_base(config: &Config, peer: SocketAddr, headers: &axum::http::HeaderMap) -> String {
    let peer_ip = peer.ip().to_canonical();
    if config.trusted_proxies.iter().any(|n| n.contains(&peer_ip)) {
        let h = |n: &str| {
            headers
                .get(n)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split(',').next())
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        if let (Some(proto), Some(host)) = (h("x-forwarded-proto"), h("x-forwarded-host")) {
            if matches!(proto.as_str(), "http" | "https") && !host.contains(['/', '?', '#', ' ']) {
                return format!("{proto}://{host}");
            }
        }
    }
    config.public_url.clone()
}

/// Records a field on the current request span.
pub fn record_span(field: &'static str, value: &str) {
    tracing::Span::current().record(field, value);
}

impl IntoResponse for crate::store::StoreError {
    fn into_response(self) -> Response {
        ApiError::from(self).into_response()
    }
}
