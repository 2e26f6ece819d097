//! Subscriptions, deliveries and attempts (SPEC §2, §5): CRUD, secret reveal and rotation, the
//! `test` send, `recover`, redelivery, and the delivery and attempt logs.

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::admin::{as_json, filter_of, list_json, page_of, tenant_of, PathParams};
use super::extract::{Caller, JsonBody, OptionalJson};
use super::SharedState;
use crate::crypto::new_webhook_secret;
use crate::error::{ApiError, ApiResult};
use crate::event::{rfc3339, EventType};
use crate::providers::params;
use crate::store::{from_ms, now_ms, Finish, SubscriptionRow};

pub fn router() -> Router<SharedState> {
    let base = "/v1/tenants/{tenant}/subscriptions";
    Router::new()
        .route(base, post(create).get(list))
        .route(
            &format!("{base}/{{id}}"),
            get(read).patch(update).delete(remove),
        )
        .route(&format!("{base}/{{id}}/secret"), get(secret))
        .route(&format!("{base}/{{id}}/rotate-secret"), post(rotate))
        .route(&format!("{base}/{{id}}/test"), post(test))
        .route(&format!("{base}/{{id}}/recover"), post(recover))
        .route(
            "/v1/tenants/{tenant}/events/{event_id}/attempts",
            get(attempts),
        )
        .route(
            "/v1/tenants/{tenant}/events/{event_id}/redeliver",
            post(redeliver),
        )
        .route("/v1/tenants/{tenant}/deliveries", get(deliveries))
}

fn sub_json(s: &SubscriptionRow) -> Value {
    json!({
        "id": s.id,
        "url": s.url,
        "event_types": s.event_types,
        "description": s.description,
        "enabled": s.enabled,
        "disabled_reason": s.disabled_reason,
        "created_at": rfc3339(from_ms(s.created_at)),
        "updated_at": rfc3339(from_ms(s.updated_at)),
    })
}

/// `*`, a known type, or `prefix.*` for a prefix of known types.
fn check_event_types(types: &[String]) -> ApiResult<()> {
    let bad = |t: &str| {
        ApiError::bad_request(
            "invalid_event_types",
            format!("`{t}` is not `*`, an event type, or `prefix.*`"),
        )
    };
    if types.is_empty() {
        return Err(ApiError::bad_request(
            "invalid_event_types",
            "event_types must not be empty",
        ));
    }
    for t in types {
        let known = t == "*"
            || EventType::parse(t).is_some()
            || t.strip_suffix(".*").is_some_and(|p| {
                EventType::ALL.iter().any(|k| {
                    k.as_str()
                        .strip_prefix(p)
                        .is_some_and(|r| r.starts_with('.'))
                })
            });
        if !known || !crate::event::valid_filter(t) {
            return Err(bad(t));
        }
    }
    Ok(())
}

fn check_url(app: &SharedState, url: &str) -> ApiResult<String> {
    app.target_policy()
        .check_url(url)
        .map(|u| u.to_string())
        .map_err(|m| ApiError::bad_request("invalid_url", m))
}

fn check_secret(secret: &str) -> ApiResult<()> {
    let ok = secret.starts_with("whsec_")
        && crate::delivery::sign::secret_key(secret).is_ok_and(|k| (24..=64).contains(&k.len()));
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "invalid_secret",
            "secret must be whsec_ followed by base64 of 24 to 64 bytes",
        ))
    }
}

async fn sub_of(
    app: &SharedState,
    caller: &Caller,
    tenant: &str,
    id: &str,
) -> ApiResult<SubscriptionRow> {
    tenant_of(app, caller, tenant).await?;
    app.store
        .get_subscription(tenant, id)
        .await?
        .ok_or_else(|| ApiError::not_found("subscription_not_found", "no such subscription"))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateSub {
    url: String,
    event_types: Option<Vec<String>>,
    description: Option<String>,
    secret: Option<String>,
}

async fn create(
    State(app): State<SharedState>,
    caller: Caller,
    PathParams(tenant): PathParams<String>,
    JsonBody(body): JsonBody<CreateSub>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    tenant_of(&app, &caller, &tenant).await?;
    let url = check_url(&app, &body.url)?;
    let event_types = body.event_types.unwrap_or_else(|| vec!["*".to_owned()]);
    check_event_types(&event_types)?;
    let secret = match body.secret {
        Some(s) => {
            check_secret(&s)?;
            s
        }
        None => new_webhook_secret(),
    };
    let now = now_ms();
    let row = SubscriptionRow {
        id: crate::event::prefixed_id("sub_"),
        tenant_id: tenant,
        url,
        event_types,
        description: body.description,
        enabled: true,
        secret: app.sealer.seal(&secret),
        old_secret: None,
        old_secret_expires_at: None,
        failed_streak: 0,
        disabled_reason: None,
        created_at: now,
        updated_at: now,
    };
    app.store.create_subscription(&row).await?;
    let mut out = sub_json(&row);
    out["secret"] = Value::String(secret);
    Ok((StatusCode::CREATED, Json(out)))
}

async fn list(
    State(app): State<SharedState>,
    caller: Caller,
    PathParams(tenant): PathParams<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<Json<Value>> {
    tenant_of(&app, &caller, &tenant).await?;
    let page = page_of(&params::parse_query(q.as_deref()), 1000)?;
    let rows = app.store.list_subscriptions(&tenant, page).await?;
    Ok(list_json(
        rows,
        page,
        |(seq, _)| *seq,
        |(_, s)| sub_json(&s),
    ))
}

async fn read(
    State(app): State<SharedState>,
    caller: Caller,
    PathParams((tenant, id)): PathParams<(String, String)>,
) -> ApiResult<Json<Value>> {
    Ok(Json(sub_json(&sub_of(&app, &caller, &tenant, &id).await?)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PatchSub {
    url: Option<String>,
    event_types: Option<Vec<String>>,
    enabled: Option<bool>,
    /// Absent: unchanged; `null`: cleared.
    #[serde(default, deserialize_with = "present")]
    description: Option<Option<String>>,
}

/// Reads a field that is present (even as `null`) as `Some(value)`; an absent one stays `None`
/// through `#[serde(default)]`.
fn present<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}

async fn update(
    State(app): State<SharedState>,
    caller: Caller,
    PathParams((tenant, id)): PathParams<(String, String)>,
    JsonBody(body): JsonBody<PatchSub>,
) -> ApiResult<Json<Value>> {
    let mut s = sub_of(&app, &caller, &tenant, &id).await?;
    if let Some(url) = body.url {
        s.url = check_url(&app, &url)?;
    }
    if let Some(types) = body.event_types {
        check_event_types(&types)?;
        s.event_types = types;
    }
    if let Some(d) = body.description {
        s.description = d;
    }
    if let Some(enabled) = body.enabled {
        if enabled && !s.enabled {
            s.failed_streak = 0;
            s.disabled_reason = None;
        }
        if !enabled && s.enabled {
            s.disabled_reason = Some("disabled through the API".into());
        }
        s.enabled = enabled;
    }
    s.updated_at = now_ms();
    app.store.update_subscription(&s).await?;
    app.delivery.invalidate(&s.id).await;
    Ok(Json(sub_json(&s)))
}

async fn remove(
    State(app): State<SharedState>,
    caller: Caller,
    PathParams((tenant, id)): PathParams<(String, String)>,
) -> ApiResult<StatusCode> {
    tenant_of(&app, &caller, &tenant).await?;
    if !app.store.delete_subscription(&tenant, &id).await? {
        return Err(ApiError::not_found(
            "subscription_not_found",
            "no such subscription",
        ));
    }
    app.delivery.invalidate(&id).await;
    Ok(StatusCode::NO_CONTENT)
}

async fn secret(
    State(app): State<SharedState>,
    caller: Caller,
    PathParams((tenant, id)): PathParams<(String, String)>,
) -> ApiResult<Json<Value>> {
    let s = sub_of(&app, &caller, &tenant, &id).await?;
    let secret = app.sealer.open(&s.secret).map_err(ApiError::Internal)?;
    Ok(Json(json!({"secret": secret})))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Rotate {
    grace_seconds: Option<i64>,
    secret: Option<String>,
}

async fn rotate(
    State(app): State<SharedState>,
    caller: Caller,
    PathParams((tenant, id)): PathParams<(String, String)>,
    OptionalJson(body): OptionalJson<Rotate>,
) -> ApiResult<Json<Value>> {
    let body = body.unwrap_or_default();
    let grace = body.grace_seconds.unwrap_or(86_400);
    if !(0..=30 * 86_400).contains(&grace) {
        return Err(ApiError::bad_request(
            "invalid_grace_seconds",
            "grace_seconds is between 0 and 2592000",
        ));
    }
    let mut s = sub_of(&app, &caller, &tenant, &id).await?;
    let new = match body.secret {
        Some(sec) => {
            check_secret(&sec)?;
            sec
        }
        None => new_webhook_secret(),
    };
    let now = now_ms();
    s.old_secret = Some(std::mem::replace(&mut s.secret, app.sealer.seal(&new)));
    s.old_secret_expires_at = Some(now + grace * 1000);
    s.updated_at = now;
    app.store.update_subscription(&s).await?;
    app.delivery.invalidate(&s.id).await;
    Ok(Json(
        json!({"secret": new, "previous_secret_expires_at": rfc3339(from_ms(now + grace * 1000))}),
    ))
}

async fn test(
    State(app): State<SharedState>,
    caller: Caller,
    PathParams((tenant, id)): PathParams<(String, String)>,
) -> ApiResult<Json<Value>> {
    let s = sub_of(&app, &caller, &tenant, &id).await?;
    if !s.enabled {
        return Err(ApiError::Conflict(
            "subscription_disabled",
            "the subscription is disabled".into(),
        ));
    }
    let now = chrono::Utc::now();
    let ev = crate::event::NewEvent {
        event: crate::event::Event {
            id: crate::event::new_event_id(),
            event_type: EventType::WebhookTest.as_str().to_owned(),
            timestamp: rfc3339(now),
            tenant_id: tenant.clone(),
            data: json!({"subscription_id": s.id, "message": "hookgate test event"}),
            source: crate::event::Source {
                provider: "hookgate".into(),
                provider_event_id: None,
                received_at: rfc3339(now),
            },
        },
        event_type: EventType::WebhookTest,
        subject: None,
    };
    let job = app.store.insert_event_for(&ev, &s.id).await?;
    let rec = app.delivery.attempt_now(job).await?;
    Ok(Json(json!({
        "event_id": ev.event.id,
        "success": rec.finish == Finish::Succeeded,
        "status_code": rec.status_code,
        "error": rec.error,
        "latency_ms": rec.latency_ms,
        "will_retry": matches!(rec.finish, Finish::Retry { .. }),
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Recover {
    since: String,
}

async fn recover(
    State(app): State<SharedState>,
    caller: Caller,
    PathParams((tenant, id)): PathParams<(String, String)>,
    JsonBody(body): JsonBody<Recover>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let s = sub_of(&app, &caller, &tenant, &id).await?;
    if !s.enabled {
        // Re-queued deliveries of a disabled subscription would only fail again.
        return Err(ApiError::Conflict(
            "subscription_disabled",
            "the subscription is disabled; enable it (PATCH enabled: true) first".into(),
        ));
    }
    let since = chrono::DateTime::parse_from_rfc3339(&body.since)
        .map_err(|_| ApiError::bad_request("invalid_since", "since must be an RFC 3339 time"))?;
    let n = app
        .store
        .recover(&tenant, &s.id, since.timestamp_millis())
        .await?;
    app.delivery.wake();
    Ok((StatusCode::ACCEPTED, Json(json!({"requeued": n}))))
}

async fn attempts(
    State(app): State<SharedState>,
    caller: Caller,
    PathParams((tenant, event_id)): PathParams<(String, String)>,
) -> ApiResult<Json<Value>> {
    tenant_of(&app, &caller, &tenant).await?;
    if app.store.get_event(&tenant, &event_id).await?.is_none() {
        return Err(ApiError::not_found("event_not_found", "no such event"));
    }
    let rows = app.store.list_attempts(&tenant, &event_id).await?;
    let data: Vec<Value> = rows.into_iter().map(as_json).collect();
    Ok(Json(json!({"data": data, "next_cursor": null})))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Redeliver {
    subscription_id: Option<String>,
}

async fn redeliver(
    State(app): State<SharedState>,
    caller: Caller,
    PathParams((tenant, event_id)): PathParams<(String, String)>,
    OptionalJson(body): OptionalJson<Redeliver>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    tenant_of(&app, &caller, &tenant).await?;
    let body = body.unwrap_or_default();
    if app.store.get_event(&tenant, &event_id).await?.is_none() {
        return Err(ApiError::not_found("event_not_found", "no such event"));
    }
    if let Some(id) = &body.subscription_id {
        if !sub_of(&app, &caller, &tenant, id).await?.enabled {
            return Err(ApiError::Conflict(
                "subscription_disabled",
                "the subscription is disabled".into(),
            ));
        }
    }
    let (jobs, ids) = app
        .store
        .redeliver(&tenant, &event_id, body.subscription_id.as_deref())
        .await
        .map_err(|e| match e {
            crate::store::StoreError::NotFound("event") => {
                ApiError::not_found("event_not_found", "no such event")
            }
            crate::store::StoreError::NotFound(_) => {
                // Disabled or deleted between the check above and the redelivery.
                ApiError::Conflict(
                    "subscription_disabled",
                    "the subscription is disabled".into(),
                )
            }
            other => other.into(),
        })?;
    app.delivery.submit(jobs);
    app.delivery.wake();
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"event_id": event_id, "deliveries": ids})),
    ))
}

async fn deliveries(
    State(app): State<SharedState>,
    caller: Caller,
    PathParams(tenant): PathParams<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<Json<Value>> {
    tenant_of(&app, &caller, &tenant).await?;
    let query = params::parse_query(q.as_deref());
    let page = page_of(&query, 1000)?;
    let status = filter_of(
        &query,
        "status",
        &["pending", "succeeded", "failed"],
        "invalid_status",
    )?;
    let sub = params::first(&query, "subscription_id").filter(|s| !s.is_empty());
    let rows = app
        .store
        .list_deliveries(&tenant, status, sub, page)
        .await?;
    Ok(list_json(rows, page, |r| r.seq, as_json))
}
