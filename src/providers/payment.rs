//! What Stripe and Razorpay share once verified: reading a JSON event body, picking fields out of
//! it, and building the one `payment.*` event shape (SPEC §4) whose subject is the payment, so
//! that a payment yields at most one event of each type and never goes back.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::{params, EventDraft, Inbound, Normalized};
use crate::error::ApiError;
use crate::event::{EventType, Subject};

/// Refuses a body that is not declared as JSON (415), before anything else is looked at.
pub fn require_json(req: &Inbound, provider: &str) -> Result<(), ApiError> {
    match params::media_type(&req.headers).as_deref() {
        Some("application/json") => Ok(()),
        Some(other) => Err(ApiError::UnsupportedMediaType(format!(
            "{provider} events are application/json, not `{other}`"
        ))),
        None => Err(ApiError::UnsupportedMediaType(
            "a Content-Type: application/json header is required".into(),
        )),
    }
}

/// A 400 for a field a mapped event cannot do without.
pub fn missing(field: &str) -> ApiError {
    ApiError::bad_request("missing_field", format!("{field} is required"))
}

/// A non-empty string at a JSON pointer.
pub fn str_at<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
}

/// The first non-empty string among several JSON pointers.
pub fn first_str<'a>(v: &'a Value, pointers: &[&str]) -> Option<&'a str> {
    pointers.iter().find_map(|p| str_at(v, p))
}

/// An integer at a JSON pointer (amounts are minor units, so integers).
pub fn int_at(v: &Value, pointer: &str) -> Option<i64> {
    v.pointer(pointer).and_then(Value::as_i64)
}

/// Unix seconds at a JSON pointer, as a time.
pub fn unix_at(v: &Value, pointer: &str) -> Option<DateTime<Utc>> {
    int_at(v, pointer).and_then(|s| DateTime::from_timestamp(s, 0))
}

/// One normalized payment event, before it gets its envelope.
pub struct Payment<'a> {
    pub event_type: EventType,
    /// The payment the event belongs to (`pi_…`, `pay_…`), also for refunds and failures.
    pub payment_id: &'a str,
    pub amount: Option<i64>,
    pub currency: Option<&'a str>,
    pub order_id: Option<&'a str>,
    pub refunded_amount: Option<i64>,
    pub email: Option<&'a str>,
    pub phone: Option<&'a str>,
    pub failure_reason: Option<&'a str>,
    /// The provider's own object(s), as received.
    pub provider_data: Value,
}

impl Payment<'_> {
    /// The normalized `status` word of each payment event type.
    fn status(&self) -> &'static str {
        match self.event_type {
            EventType::PaymentFailed => "failed",
            EventType::PaymentRefunded => "refunded",
            _ => "succeeded",
        }
    }

    /// The event, deduplicated on `dedup_key` (the provider's event id), its subject the payment.
    pub fn normalized(
        self,
        req: &Inbound,
        dedup_key: String,
        occurred_at: Option<DateTime<Utc>>,
    ) -> Normalized {
        let provider = req.route.provider();
        let data = json!({
            "payment_id": self.payment_id,
            "provider": provider,
            "status": self.status(),
            "amount": self.amount,
            "currency": self.currency.map(str::to_ascii_uppercase),
            "order_id": self.order_id,
            "refunded_amount": self.refunded_amount,
            "customer": {"email": self.email, "phone": self.phone},
            "failure_reason": self.failure_reason,
            "provider_data": self.provider_data,
        });
        EventDraft {
            req,
            event_type: self.event_type,
            subject: Subject {
                kind: "payment",
                id: format!("{provider}:{}", self.payment_id),
            },
            occurred_at,
            provider_event_id: dedup_key,
            data,
        }
        .normalized()
    }
}
