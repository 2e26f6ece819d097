//! Liveness and readiness.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use super::SharedState;
use crate::error::ApiResult;

pub fn router() -> Router<SharedState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}

async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Ready when the database answers.
async fn readyz(State(app): State<SharedState>) -> ApiResult<Json<Value>> {
    app.store.ping().await?;
    Ok(Json(json!({"status": "ready"})))
}

/// Prometheus text exposition.
async fn metrics(State(app): State<SharedState>) -> ApiResult<impl IntoResponse> {
    let (pending, disabled) = app.store.gauges().await?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        app.metrics.render(pending, disabled),
    ))
}
