//! Liveness and readiness.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use super::SharedState;
use crate::error::ApiResult;

pub fn router() -> Router<SharedState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}

async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Ready when the database answers.
async fn readyz(State(app): State<SharedState>) -> ApiResult<Json<Value>> {
    app.store.ping().await?;
    Ok(Json(json!({"status": "ready"})))
}
