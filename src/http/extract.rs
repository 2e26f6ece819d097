//! Extractors that answer with hookgate's JSON errors: bearer auth, JSON bodies, and the size
//! limited raw body of inbound callbacks.

use axum::body::Body;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use http_body_util::{BodyExt, Limited};
use serde::de::DeserializeOwned;

use super::SharedState;
use crate::crypto::{ct_eq, sha256_hex};
use crate::error::ApiError;

/// Who is calling the management API.
#[derive(Clone, Debug, PartialEq)]
pub enum Caller {
    Admin,
    Tenant(String),
}

impl Caller {
    /// May this caller act on `tenant`? A tenant key for another tenant gets 404, never 403, so
    /// tenants cannot be enumerated.
    pub fn check_tenant(&self, tenant: &str) -> Result<(), ApiError> {
        match self {
            Caller::Admin => Ok(()),
            Caller::Tenant(t) if t == tenant => Ok(()),
            Caller::Tenant(_) => Err(ApiError::tenant_not_found()),
        }
    }

    pub fn require_admin(&self) -> Result<(), ApiError> {
        match self {
            Caller::Admin => Ok(()),
            Caller::Tenant(_) => Err(ApiError::Forbidden),
        }
    }
}

impl FromRequestParts<SharedState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &SharedState) -> Result<Self, ApiError> {
        let token = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(ApiError::Unauthorized)?;
        let hash = sha256_hex(token.as_bytes());
        if ct_eq(hash.as_bytes(), state.admin_hash.as_bytes()) {
            return Ok(Caller::Admin);
        }
        match state.store.tenant_by_key_hash(&hash).await? {
            Some(t) => Ok(Caller::Tenant(t)),
            None => Err(ApiError::Unauthorized),
        }
    }
}

/// A JSON request body whose rejections are hookgate errors.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Self(v)),
            Err(JsonRejection::MissingJsonContentType(_)) => Err(ApiError::UnsupportedMediaType(
                "expected Content-Type: application/json".into(),
            )),
            Err(JsonRejection::JsonDataError(e)) => {
                Err(ApiError::bad_request("invalid_body", e.body_text()))
            }
            Err(JsonRejection::JsonSyntaxError(e)) => {
                Err(ApiError::bad_request("malformed_json", e.body_text()))
            }
            Err(JsonRejection::BytesRejection(_)) => Err(ApiError::PayloadTooLarge(2 << 20)),
            Err(e) => Err(ApiError::bad_request("invalid_body", e.body_text())),
        }
    }
}

/// Reads a whole body, refusing more than `limit` bytes (also when sent chunked) with 413.
pub async fn read_body_limited(body: Body, limit: usize) -> Result<bytes::Bytes, ApiError> {
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            Err(ApiError::PayloadTooLarge(limit))
        }
        Err(e) => Err(ApiError::bad_request(
            "body_read_failed",
            format!("could not read the request body: {e}"),
        )),
    }
}

/// A JSON body that may be absent (an empty body reads as `None`).
pub struct OptionalJson<T>(pub Option<T>);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for OptionalJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = bytes::Bytes::from_request(req, state)
            .await
            .map_err(|_| ApiError::PayloadTooLarge(2 << 20))?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self(None));
        }
        serde_json::from_slice(&bytes)
            .map(|v| Self(Some(v)))
            .map_err(|e| {
                let code = if e.is_data() {
                    "invalid_body"
                } else {
                    "malformed_json"
                };
                ApiError::bad_request(code, e.to_string())
            })
    }
}
