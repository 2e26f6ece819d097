//! One error type for every HTTP answer hookgate gives: each variant has a stable machine code
//! (`{"error": {"code": …, "message": …}}`) and a status. Causes are logged once, here.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// An error answered to an HTTP client.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{1}")]
    BadRequest(&'static str, String),
    #[error("missing or invalid bearer token")]
    Unauthorized,
    #[error("this route needs the admin token")]
    Forbidden,
    #[error("{1}")]
    NotFound(&'static str, String),
    #[error("{1}")]
    Conflict(&'static str, String),
    #[error("request body is larger than the configured limit of {0} bytes")]
    PayloadTooLarge(usize),
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// An inbound callback failed verification: 401 with a stable reason code.
    #[error("{1}")]
    Rejected(&'static str, String),
    #[error("{1}")]
    Unprocessable(&'static str, String),
    /// Storage is unavailable or failed before commit: the provider should retry.
    #[error("storage unavailable, retry later")]
    Unavailable(#[source] anyhow::Error),
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl ApiError {
    pub fn bad_request(code: &'static str, msg: impl Into<String>) -> Self {
        Self::BadRequest(code, msg.into())
    }
    pub fn not_found(code: &'static str, msg: impl Into<String>) -> Self {
        Self::NotFound(code, msg.into())
    }
    pub fn tenant_not_found() -> Self {
        Self::NotFound("tenant_not_found", "no such tenant".into())
    }

    /// The stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadRequest(c, _)
            | Self::NotFound(c, _)
            | Self::Conflict(c, _)
            | Self::Rejected(c, _)
            | Self::Unprocessable(c, _) => c,
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::PayloadTooLarge(_) => "payload_too_large",
            Self::UnsupportedMediaType(_) => "unsupported_media_type",
            Self::Unavailable(_) => "storage_unavailable",
            Self::Internal(_) => "internal_error",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(..) => StatusCode::BAD_REQUEST,
            Self::Unauthorized | Self::Rejected(..) => StatusCode::UNAUTHORIZED,
            Self::Forbidden => StatusCode::FORBIDDEN,
            Self::NotFound(..) => StatusCode::NOT_FOUND,
            Self::Conflict(..) => StatusCode::CONFLICT,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Unprocessable(..) => StatusCode::UNPROCESSABLE_ENTITY,
            // An internal failure is answered as 503 as well: the caller (a provider) should retry,
            // and nothing was committed. SPEC: no input may produce a 500.
            Self::Unavailable(_) | Self::Internal(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        Self::Unavailable(e.into())
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        match e {
            crate::store::StoreError::Conflict(what) => {
                Self::Conflict("already_exists", format!("{what} already exists"))
            }
            crate::store::StoreError::NotFound(what) => {
                Self::NotFound("not_found", format!("{what} not found"))
            }
            crate::store::StoreError::Unavailable(e) => Self::Unavailable(e),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        match &self {
            Self::Unavailable(e) => {
                tracing::warn!(error = %format!("{e:#}"), "storage unavailable")
            }
            Self::Internal(e) => tracing::error!(error = %format!("{e:#}"), "internal error"),
            _ => {}
        }
        let body = json!({"error": {"code": self.code(), "message": self.to_string()}});
        let mut resp = (status, axum::Json(body)).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        resp
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
