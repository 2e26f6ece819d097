//! The management API (SPEC §2): tenants, provider credentials, the event feed and the inbound
//! log. Every route needs a bearer token: the admin token, or the tenant's own API key.

use axum::extract::{FromRequestParts, Path, RawQuery, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::extract::{Caller, JsonBody};
use super::inbound::valid_tenant_id;
use super::SharedState;
use crate::crypto::{random_token, sha256_hex};
use crate::error::{ApiError, ApiResult};
use crate::event::rfc3339;
use crate::providers::config::ProviderConfig;
use crate::providers::{params, Route, PROVIDERS};
use crate::store::{from_ms, now_ms, Page, Tenant};

pub fn router() -> Router<SharedState> {
    Router::new()
        .route("/v1/tenants", post(create_tenant))
        .route("/v1/tenants/{tenant}", get(get_tenant))
        .route(
            "/v1/tenants/{tenant}/providers/{provider}",
            get(get_provider).put(put_provider),
        )
        .route("/v1/tenants/{tenant}/events", get(list_events))
        .route("/v1/tenants/{tenant}/events/{event_id}", get(get_event))
        .route("/v1/tenants/{tenant}/inbound", get(list_inbound))
}

/// Path parameters whose rejection is a hookgate error.
pub struct PathParams<T>(pub T);

impl<T: serde::de::DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for PathParams<T> {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(v)| Self(v))
            .map_err(|e| ApiError::bad_request("invalid_path", e.body_text()))
    }
}

/// Checks the caller may act on `tenant` and that it exists (404 otherwise).
pub async fn tenant_of(app: &SharedState, caller: &Caller, tenant: &str) -> ApiResult<Tenant> {
    caller.check_tenant(tenant)?;
    if !valid_tenant_id(tenant) {
        return Err(ApiError::tenant_not_found());
    }
    app.store
        .get_tenant(tenant)
        .await?
        .ok_or_else(ApiError::tenant_not_found)
}

/// The exact URLs to paste into each provider's console.
fn inbound_urls(app: &SharedState, tenant: &str, exotel_token: Option<&str>) -> Value {
    let base = &app.config.public_url;
    let mut urls = serde_json::Map::new();
    for route in Route::ALL {
        let mut url = format!("{base}{}?tenant_id={tenant}", route.path());
        if route.provider() == "exotel" {
            url.push_str("&token=");
            url.push_str(exotel_token.unwrap_or("{exotel_token}"));
        }
        urls.insert(route.name().to_owned(), Value::String(url));
    }
    Value::Object(urls)
}

fn tenant_json(app: &SharedState, t: &Tenant) -> Value {
    json!({
        "id": t.id,
        "name": t.name,
        "inbound_urls": inbound_urls(app, &t.id, None),
        "created_at": rfc3339(from_ms(t.created_at)),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateTenant {
    id: Option<String>,
    name: Option<String>,
}

async fn create_tenant(
    State(app): State<SharedState>,
    caller: Caller,
    JsonBody(body): JsonBody<CreateTenant>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    caller.require_admin()?;
    let id = match body.id {
        Some(id) if valid_tenant_id(&id) => id,
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid_tenant_id",
                "id must match [a-z0-9_-]{1,64}",
            ))
        }
        None => crate::event::prefixed_id("t_").to_ascii_lowercase(),
    };
    let name = body.name.unwrap_or_else(|| id.clone());
    if name.len() > 200 {
        return Err(ApiError::bad_request(
            "invalid_name",
            "name is longer than 200 bytes",
        ));
    }
    let api_key = random_token("hk_");
    let tenant = Tenant {
        id,
        name,
        created_at: now_ms(),
    };
    app.store
        .create_tenant(&tenant, &sha256_hex(api_key.as_bytes()))
        .await
        .map_err(|e| match e {
            crate::store::StoreError::Conflict(_) => {
                ApiError::Conflict("tenant_exists", "a tenant with this id exists".into())
            }
            other => other.into(),
        })?;
    let mut out = tenant_json(&app, &tenant);
    out["api_key"] = Value::String(api_key);
    Ok((StatusCode::CREATED, Json(out)))
}

async fn get_tenant(
    State(app): State<SharedState>,
    caller: Caller,
    PathParams(tenant): PathParams<String>,
) -> ApiResult<Json<Value>> {
    let t = tenant_of(&app, &caller, &tenant).await?;
    Ok(Json(tenant_json(&app, &t)))
}

fn provider_name(p: &str) -> ApiResult<&'static str> {
    PROVIDERS
        .into_iter()
        .find(|k| *k == p)
        .ok_or_else(|| ApiError::not_found("unknown_provider", format!("unknown provider `{p}`")))
}

async fn put_provider(
    State(app): State<SharedState>,
    caller: Caller,
    PathParams((tenant, provider)): PathParams<(String, String)>,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Json<Value>> {
    tenant_of(&app, &caller, &tenant).await?;
    let provider = provider_name(&provider)?;
    let previous = app.provider_config(&tenant, provider).await?;
    let cfg = ProviderConfig::from_request(provider, body, previous.as_deref())?;
    let out = provider_json(&app, &tenant, provider, &cfg, true);
    app.put_provider_config(&tenant, provider, cfg).await?;
    Ok(Json(out))
}

/// The provider config as answered: secrets redacted, plus the inbound URLs of the provider
/// (with the real Exotel token only in the answer to the `PUT` that set it).
fn provider_json(
    app: &SharedState,
    tenant: &str,
    provider: &str,
    cfg: &ProviderConfig,
    reveal: bool,
) -> Value {
    let token = if reveal { cfg.url_token() } else { None };
    let urls = inbound_urls(app, tenant, token);
    let mine: serde_json::Map<String, Value> = urls
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, _)| k.starts_with(provider))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    json!({"provider": provider, "config": cfg.redacted(), "inbound_urls": mine})
}

async fn get_provider(
    State(app): State<SharedState>,
    caller: Caller,
    PathParams((tenant, provider)): PathParams<(String, String)>,
) -> ApiResult<Json<Value>> {
    tenant_of(&app, &caller, &tenant).await?;
    let provider = provider_name(&provider)?;
    let cfg = app
        .provider_config(&tenant, provider)
        .await?
        .ok_or_else(|| {
            ApiError::not_found(
                "provider_not_configured",
                format!("{provider} is not configured"),
            )
        })?;
    Ok(Json(provider_json(&app, &tenant, provider, &cfg, false)))
}

/// `limit` and `after` of a list request.
pub fn page_of(query: &params::Params, max: i64) -> ApiResult<Page> {
    let limit = match params::first(query, "limit") {
        None => 100,
        Some(l) => match l.parse::<i64>() {
            Ok(n) if (1..=max).contains(&n) => n,
            _ => {
                return Err(ApiError::bad_request(
                    "invalid_limit",
                    format!("limit must be between 1 and {max}"),
                ))
            }
        },
    };
    let after = match params::first(query, "after").filter(|c| !c.is_empty()) {
        None => None,
        Some(c) => Some(c.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| {
            ApiError::bad_request("invalid_cursor", "after is not a cursor from this API")
        })?),
    };
    Ok(Page { after, limit })
}

/// `{"data": [...], "next_cursor": …}`: the cursor is set when the page is full.
pub fn list_json(data: Vec<Value>, last_seq: Option<i64>, limit: i64) -> Json<Value> {
    let next = (data.len() as i64 == limit)
        .then(|| last_seq.map(|s| s.to_string()))
        .flatten();
    Json(json!({"data": data, "next_cursor": next}))
}

async fn list_events(
    State(app): State<SharedState>,
    caller: Caller,
    PathParams(tenant): PathParams<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<Json<Value>> {
    tenant_of(&app, &caller, &tenant).await?;
    let query = params::parse_query(q.as_deref());
    let page = page_of(&query, 1000)?;
    let event_type = params::first(&query, "type").filter(|t| !t.is_empty());
    let events = app.store.list_events(&tenant, event_type, page).await?;
    let last = events.last().map(|e| e.seq);
    let data = events
        .into_iter()
        .map(|e| serde_json::from_str(&e.body).unwrap_or(Value::Null))
        .collect();
    Ok(list_json(data, last, page.limit))
}

async fn get_event(
    State(app): State<SharedState>,
    caller: Caller,
    PathParams((tenant, event_id)): PathParams<(String, String)>,
) -> ApiResult<Json<Value>> {
    tenant_of(&app, &caller, &tenant).await?;
    let ev = app
        .store
        .get_event(&tenant, &event_id)
        .await?
        .ok_or_else(|| ApiError::not_found("event_not_found", "no such event"))?;
    Ok(Json(serde_json::from_str(&ev.body).unwrap_or(Value::Null)))
}

async fn list_inbound(
    State(app): State<SharedState>,
    caller: Caller,
    PathParams(tenant): PathParams<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<Json<Value>> {
    tenant_of(&app, &caller, &tenant).await?;
    let query = params::parse_query(q.as_deref());
    let page = page_of(&query, 1000)?;
    let outcome = params::first(&query, "outcome").filter(|t| !t.is_empty());
    if let Some(o) = outcome {
        if !["accepted", "duplicate", "rejected"].contains(&o) {
            return Err(ApiError::bad_request(
                "invalid_outcome",
                "outcome is accepted, duplicate or rejected",
            ));
        }
    }
    let entries = app.store.list_inbound(&tenant, outcome, page).await?;
    let last = entries.last().map(|e| e.seq);
    let data = entries
        .into_iter()
        .map(|e| serde_json::to_value(e).unwrap_or(Value::Null))
        .collect();
    Ok(list_json(data, last, page.limit))
}
