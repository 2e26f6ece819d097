//! Inbound provider callbacks: tenant lookup, verification over the raw bytes, normalization,
//! one committed write (group commit), then the answer the provider expects. A 2xx leaves only
//! after the commit.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use serde_json::json;

use super::extract::read_body_limited;
use super::{record_span, SharedState};
use crate::error::ApiError;
use crate::providers::config::ProviderConfig;
use crate::providers::{self, params, Inbound, Normalized, Rejection, Route};
use crate::store::{IngestItem, IngestKind, IngestResult};

pub fn router() -> Router<SharedState> {
    let mut r = Router::new();
    for route in Route::ALL {
        r = r.route(
            route.path(),
            any(
                move |State(app): State<SharedState>,
                      ConnectInfo(peer): ConnectInfo<SocketAddr>,
                      req: Request| async move {
                    let started = std::time::Instant::now();
                    let resp = handle(app.clone(), route, peer, req)
                        .await
                        .unwrap_or_else(IntoResponse::into_response);
                    app.metrics.answered(
                        route.provider(),
                        resp.status().as_u16(),
                        started.elapsed(),
                    );
                    resp
                },
            ),
        );
    }
    r
}

/// Is `id` a valid tenant id (`[a-z0-9_-]{1,64}`)?
pub fn valid_tenant_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

fn allowed_method(route: Route, method: &axum::http::Method) -> bool {
    use axum::http::Method;
    match route {
        Route::Stripe | Route::Razorpay => method == Method::POST,
        _ => method == Method::POST || method == Method::GET,
    }
}

async fn handle(
    app: SharedState,
    route: Route,
    peer: SocketAddr,
    req: Request,
) -> Result<Response, ApiError> {
    let received_at = chrono::Utc::now();
    let (parts, body) = req.into_parts();
    if !allowed_method(route, &parts.method) {
        return Ok((
            StatusCode::METHOD_NOT_ALLOWED,
            axum::Json(json!({"error": {"code": "method_not_allowed", "message": "method not allowed on this route"}})),
        )
            .into_response());
    }
    let raw_query = parts.uri.query().map(str::to_owned);
    let query = params::parse_query(raw_query.as_deref());
    let tenant_id = params::first(&query, "tenant_id")
        .ok_or_else(|| {
            ApiError::bad_request(
                "missing_tenant_id",
                "the tenant_id query parameter is required",
            )
        })?
        .to_owned();
    let not_found = || {
        ApiError::not_found(
            "not_found",
            "unknown tenant, or provider not configured for it",
        )
    };
    if !valid_tenant_id(&tenant_id) {
        return Err(not_found());
    }
    record_span("tenant", &tenant_id);
    record_span("provider", route.provider());
    let body = read_body_limited(body, app.config.max_body).await?;
    let cfg = app
        .provider_config(&tenant_id, route.provider())
        .await?
        .ok_or_else(not_found)?;

    let client_ip = super::client_ip(&app.config, peer, &parts.headers);
    let inbound = Inbound {
        route,
        tenant_id: tenant_id.clone(),
        method: parts.method,
        path: parts.uri.path().to_owned(),
        raw_query,
        public_base: super::public_base(&app.config, peer, &parts.headers),
        headers: parts.headers,
        body,
        client_ip,
        received_at,
    };
    let log_item = |kind: IngestKind| IngestItem {
        tenant_id: tenant_id.clone(),
        provider: route.provider(),
        route: route.name(),
        received_at: received_at.timestamp_millis(),
        remote_addr: Some(client_ip.to_string()),
        kind,
    };
    let raw_body = inbound.body.clone();
    let normalized = match verify_and_normalize(inbound, &cfg).await {
        Ok(Ok(n)) => n,
        Ok(Err(rejection)) => {
            tracing::info!(reason = rejection.reason, "inbound callback rejected");
            let _ = app
                .batcher
                .ingest(log_item(IngestKind::Rejected {
                    reason: rejection.reason,
                }))
                .await;
            return Err(ApiError::Rejected(rejection.reason, rejection.message));
        }
        Err(e) => {
            // Malformed or unsupported: logged as rejected with the error's code.
            let _ = app
                .batcher
                .ingest(log_item(IngestKind::Rejected { reason: e.code() }))
                .await;
            return Err(e);
        }
    };
    let ignored = normalized.event.is_none();
    let status = if ignored {
        200
    } else {
        success_status(route, &cfg)
    };
    let item = log_item(IngestKind::Accepted {
        dedup_key: normalized.dedup_key,
        status,
        ignored_reason: ignored.then_some("ignored_event_type"),
        event: normalized.event,
        body: raw_body.to_vec(),
    });
    let (event_id, status) = match app.batcher.ingest(item).await? {
        IngestResult::New { event_id, status } | IngestResult::Duplicate { event_id, status } => {
            (event_id, status)
        }
        IngestResult::Rejected => unreachable!("an accepted item is never answered as rejected"),
    };
    if let Some(id) = &event_id {
        record_span("event_id", id);
    }
    Ok(success_response(route, &cfg, status, event_id))
}

/// Verifies with the provider's own scheme, then normalizes. Only a `Verified` request reaches a
/// normalizer.
async fn verify_and_normalize(
    req: Inbound,
    cfg: &ProviderConfig,
) -> Result<Result<Normalized, Rejection>, ApiError> {
    use providers::{exotel, razorpay, stripe, twilio};
    let verified = match cfg {
        ProviderConfig::Twilio(c) => twilio::verify(req, c)?,
        ProviderConfig::Exotel(c) => exotel::verify(req, c)?,
        ProviderConfig::Stripe(c) => stripe::verify(req, c)?,
        ProviderConfig::Razorpay(c) => razorpay::verify(req, c)?,
    };
    let v = match verified {
        Ok(v) => v,
        Err(r) => return Ok(Err(r)),
    };
    match cfg {
        ProviderConfig::Twilio(_) => twilio::normalize(&v),
        ProviderConfig::Exotel(_) => exotel::normalize(&v).await,
        ProviderConfig::Stripe(_) => stripe::normalize(&v),
        ProviderConfig::Razorpay(_) => razorpay::normalize(&v),
    }
    .map(Ok)
}

/// The status a new, verified, mapped callback is answered with.
fn success_status(route: Route, cfg: &ProviderConfig) -> u16 {
    match (route, cfg) {
        (Route::TwilioStatus, _) => 204,
        (Route::ExotelIncoming, ProviderConfig::Exotel(c)) => c.passthru_status,
        _ => 200,
    }
}

/// The answer to a verified callback (new or duplicate: the same both times).
fn success_response(
    route: Route,
    cfg: &ProviderConfig,
    status: u16,
    event_id: Option<String>,
) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    if let (Route::TwilioIncoming, ProviderConfig::Twilio(c)) = (route, cfg) {
        let mut resp = (code, c.voice_twiml.clone()).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/xml; charset=utf-8"),
        );
        return resp;
    }
    if code == StatusCode::NO_CONTENT {
        return code.into_response();
    }
    (code, axum::Json(json!({"event_id": event_id}))).into_response()
}
