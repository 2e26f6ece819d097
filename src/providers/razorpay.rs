//! Razorpay: `X-Razorpay-Signature` verification (hex HMAC-SHA256 of the exact body bytes, keyed
//! with the webhook secret) and normalization of payment, order and refund events.
//!
//! Razorpay may report a failed attempt (`payment.failed`) and later capture the same payment:
//! both are emitted, because `payment.failed` ranks below `payment.completed` for a payment.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::payment::{self, first_str, int_at, missing, str_at, unix_at, Payment};
use super::signing::{any_secret_matches, hmac_sha256_hex, validate_secrets};
use super::{params, Inbound, Normalized, Rejection, Verified};
use crate::crypto::redact;
use crate::error::ApiError;
use crate::event::EventType;

/// A tenant's Razorpay credentials.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RazorpayConfig {
    /// Webhook secrets; any of them may sign.
    pub webhook_secrets: Vec<String>,
}

impl RazorpayConfig {
    pub fn validate(&self) -> Result<(), ApiError> {
        validate_secrets("webhook_secrets", &self.webhook_secrets)
    }

    pub fn redacted(&self) -> Value {
        json!({
            "webhook_secrets": self.webhook_secrets.iter().map(|s| redact(s)).collect::<Vec<_>>(),
        })
    }
}

/// `X-Razorpay-Signature` for a body.
pub fn sign(secret: &str, body: &[u8]) -> String {
    hmac_sha256_hex(secret.as_bytes(), &[body])
}

/// Does any secret sign `body` to `signature`?
pub fn signature_matches(secrets: &[String], body: &[u8], signature: &str) -> bool {
    any_secret_matches(secrets, &[signature.trim()], |s| sign(s, body))
}

/// Verifies a Razorpay webhook over the raw body (content type first: 415 before anything else).
pub fn verify(req: Inbound, cfg: &RazorpayConfig) -> Result<Result<Verified, Rejection>, ApiError> {
    payment::require_json(&req, "Razorpay")?;
    let Some(sig) = req
        .headers
        .get("x-razorpay-signature")
        .and_then(|v| v.to_str().ok())
        .filter(|s| !s.trim().is_empty())
    else {
        return Ok(Err(Rejection::new(
            "missing_signature",
            "X-Razorpay-Signature header is missing",
        )));
    };
    if !signature_matches(&cfg.webhook_secrets, &req.body, sig) {
        return Ok(Err(Rejection::new(
            "bad_signature",
            "X-Razorpay-Signature does not match the body",
        )));
    }
    Ok(Ok(Verified::new(req)))
}

fn map_type(event: &str) -> Option<EventType> {
    match event {
        "payment.captured" | "order.paid" => Some(EventType::PaymentCompleted),
        "payment.failed" => Some(EventType::PaymentFailed),
        "refund.processed" => Some(EventType::PaymentRefunded),
        _ => None,
    }
}

/// The dedup key: the `X-Razorpay-Event-Id` header, else event + entity id + `created_at`.
fn dedup_key(req: &Inbound, ev: &Value, event: &str) -> String {
    if let Some(id) = req
        .headers
        .get("x-razorpay-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        return id.to_owned();
    }
    // The entity the event is about is named by its prefix: `payment.captured` → payment.
    let entity = event.split('.').next().unwrap_or_default();
    let entity_id = str_at(ev, &format!("/payload/{entity}/entity/id")).unwrap_or_default();
    let created = ev
        .get("created_at")
        .map(Value::to_string)
        .unwrap_or_default();
    format!("{event}:{entity_id}:{created}")
}

/// Turns a verified Razorpay webhook into its dedup key and normalized event.
pub fn normalize(v: &Verified) -> Result<Normalized, ApiError> {
    let req = v.request();
    let ev = params::parse_json_object(&req.body)?;
    let event = str_at(&ev, "/event").ok_or_else(|| missing("event"))?;
    let key = dedup_key(req, &ev, event);
    let Some(mapped) = map_type(event) else {
        return Ok(Normalized::ignored(key));
    };
    let int = |pointers: &[&str]| pointers.iter().find_map(|p| int_at(&ev, p));
    let payment_id = first_str(
        &ev,
        &[
            "/payload/payment/entity/id",
            "/payload/refund/entity/payment_id",
        ],
    )
    .ok_or_else(|| missing("payload.payment.entity.id"))?;
    let refunded_amount = (mapped == EventType::PaymentRefunded)
        .then(|| {
            int(&[
                "/payload/refund/entity/amount",
                "/payload/payment/entity/amount_refunded",
            ])
        })
        .flatten();
    let failure_reason = (mapped == EventType::PaymentFailed)
        .then(|| {
            first_str(
                &ev,
                &[
                    "/payload/payment/entity/error_description",
                    "/payload/payment/entity/error_reason",
                    "/payload/payment/entity/error_code",
                ],
            )
        })
        .flatten();
    Ok(Payment {
        event_type: mapped,
        payment_id,
        amount: int(&[
            "/payload/payment/entity/amount",
            "/payload/order/entity/amount",
        ]),
        currency: first_str(
            &ev,
            &[
                "/payload/payment/entity/currency",
                "/payload/refund/entity/currency",
                "/payload/order/entity/currency",
            ],
        ),
        order_id: first_str(
            &ev,
            &[
                "/payload/payment/entity/order_id",
                "/payload/order/entity/id",
            ],
        ),
        refunded_amount,
        email: str_at(&ev, "/payload/payment/entity/email"),
        phone: str_at(&ev, "/payload/payment/entity/contact"),
        failure_reason,
        provider_data: ev.get("payload").cloned().unwrap_or(Value::Null),
    }
    .normalized(req, key, unix_at(&ev, "/created_at")))
}
