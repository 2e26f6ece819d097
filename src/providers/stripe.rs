//! Stripe: `Stripe-Signature` verification as Stripe's SDKs do it, with the replay window, and
//! normalization of payment events.
//!
//! Signature: `t=<unix>,v1=<hex>[,v1=<hex>…]`; each `v1` is the hex HMAC-SHA256 of `"{t}.{raw
//! body}"` keyed with the whole `whsec_…` string as UTF-8 bytes (not its base64 decoding). Any
//! `v1` may match any of the tenant's secrets (rotation, and Stripe's own secret roll). The
//! signature is checked first, then `t`: more than `tolerance_seconds` in the past or in the
//! future is refused.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::payment::{self, first_str, int_at, missing, str_at, unix_at, Payment};
use super::signing::{any_secret_matches, hmac_sha256_hex, validate_secrets};
use super::{params, Inbound, Normalized, Rejection, Verified};
use crate::crypto::redact;
use crate::error::ApiError;
use crate::event::EventType;

/// A tenant's Stripe credentials.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StripeConfig {
    /// Endpoint signing secrets (`whsec_…`); any of them may sign.
    pub signing_secrets: Vec<String>,
    /// How far `t` may be from now, either way.
    #[serde(default = "default_tolerance")]
    pub tolerance_seconds: i64,
}

fn default_tolerance() -> i64 {
    300
}

/// Stripe retries with a fresh `t` each time, so a window wider than a day only widens replays.
const MAX_TOLERANCE: i64 = 86_400;

impl StripeConfig {
    pub fn validate(&self) -> Result<(), ApiError> {
        validate_secrets("signing_secrets", &self.signing_secrets)?;
        if let Some(bad) = self
            .signing_secrets
            .iter()
            .find(|s| !s.starts_with("whsec_"))
        {
            return Err(ApiError::bad_request(
                "invalid_config",
                format!(
                    "signing secrets start with whsec_ (the endpoint's signing secret, not an API key); got one ending {}",
                    redact(bad)
                ),
            ));
        }
        if !(1..=MAX_TOLERANCE).contains(&self.tolerance_seconds) {
            return Err(ApiError::bad_request(
                "invalid_config",
                format!("tolerance_seconds must be between 1 and {MAX_TOLERANCE}"),
            ));
        }
        Ok(())
    }

    pub fn redacted(&self) -> Value {
        json!({
            "signing_secrets": self.signing_secrets.iter().map(|s| redact(s)).collect::<Vec<_>>(),
            "tolerance_seconds": self.tolerance_seconds,
        })
    }
}

/// The hex `v1` signature of `body` sent at `t`.
pub fn sign(secret: &str, t: i64, body: &[u8]) -> String {
    hmac_sha256_hex(secret.as_bytes(), &[t.to_string().as_bytes(), b".", body])
}

/// A whole `Stripe-Signature` header value, as Stripe sends it.
pub fn header(secret: &str, t: i64, body: &[u8]) -> String {
    format!("t={t},v1={}", sign(secret, t, body))
}

/// `t` and every `v1` of a header; `None` when either is missing or `t` is not a number.
/// Other schemes (`v0`, future ones) are ignored, as Stripe's SDKs do.
pub fn parse_header(value: &str) -> Option<(i64, Vec<&str>)> {
    let mut t = None;
    let mut v1 = Vec::new();
    for item in value.split(',') {
        match item.trim().split_once('=') {
            Some(("t", ts)) => t = ts.trim().parse::<i64>().ok(),
            Some(("v1", sig)) => v1.push(sig.trim()),
            _ => {}
        }
    }
    Some((t?, v1)).filter(|(_, v1)| !v1.is_empty())
}

/// Checks a `Stripe-Signature` header against the raw body at time `now` (unix seconds).
pub fn check_signature(
    header: Option<&str>,
    body: &[u8],
    secrets: &[String],
    now: i64,
    tolerance_seconds: i64,
) -> Result<(), Rejection> {
    let Some(header) = header.filter(|h| !h.trim().is_empty()) else {
        return Err(Rejection::new(
            "missing_signature",
            "Stripe-Signature header is missing",
        ));
    };
    let Some((t, signatures)) = parse_header(header) else {
        return Err(Rejection::new(
            "bad_signature",
            "Stripe-Signature needs t=<timestamp> and at least one v1=<signature>",
        ));
    };
    if !any_secret_matches(secrets, &signatures, |s| sign(s, t, body)) {
        return Err(Rejection::new(
            "bad_signature",
            "no v1 signature in Stripe-Signature matches the body",
        ));
    }
    if now.abs_diff(t) > tolerance_seconds.unsigned_abs() {
        return Err(Rejection::new(
            "timestamp_out_of_window",
            format!("Stripe-Signature t={t} is more than {tolerance_seconds}s away from now"),
        ));
    }
    Ok(())
}

/// Verifies a Stripe event over the raw body (content type first: 415 before anything else).
pub fn verify(req: Inbound, cfg: &StripeConfig) -> Result<Result<Verified, Rejection>, ApiError> {
    payment::require_json(&req, "Stripe")?;
    let header = req
        .headers
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok());
    Ok(check_signature(
        header,
        &req.body,
        &cfg.signing_secrets,
        req.received_at.timestamp(),
        cfg.tolerance_seconds,
    )
    .map(|()| Verified::new(req)))
}

/// The normalized type of a Stripe event, if hookgate translates it. Checkout Sessions count
/// only once paid, refunds only once succeeded.
fn map_type(event_type: &str, object: &Value) -> Option<EventType> {
    let field = |name: &str| object.get(name).and_then(Value::as_str);
    match event_type {
        "payment_intent.succeeded" => Some(EventType::PaymentCompleted),
        "checkout.session.completed" | "checkout.session.async_payment_succeeded"
            if field("payment_status") == Some("paid") =>
        {
            Some(EventType::PaymentCompleted)
        }
        "payment_intent.payment_failed"
        | "charge.failed"
        | "checkout.session.async_payment_failed" => Some(EventType::PaymentFailed),
        "charge.refunded" => Some(EventType::PaymentRefunded),
        t if (t.starts_with("refund.") || t == "charge.refund.updated")
            && field("status") == Some("succeeded") =>
        {
            Some(EventType::PaymentRefunded)
        }
        _ => None,
    }
}

/// Turns a verified Stripe event into its dedup key (the event id) and normalized event.
pub fn normalize(v: &Verified) -> Result<Normalized, ApiError> {
    let req = v.request();
    let ev = params::parse_json_object(&req.body)?;
    let id = str_at(&ev, "/id").ok_or_else(|| missing("id"))?.to_owned();
    let event_type = str_at(&ev, "/type").ok_or_else(|| missing("type"))?;
    let object = ev.pointer("/data/object").unwrap_or(&Value::Null);
    let Some(mapped) = map_type(event_type, object) else {
        return Ok(Normalized::ignored(id));
    };
    if !object.is_object() {
        return Err(missing("data.object"));
    }
    // The PaymentIntent is the payment: charges, refunds and sessions point to it.
    let payment_id = first_str(
        object,
        &["/payment_intent", "/payment_intent/id", "/charge", "/id"],
    )
    .ok_or_else(|| missing("data.object.id"))?;
    let is_refund = str_at(object, "/object") == Some("refund");
    let (amount, refunded_amount) = if is_refund {
        // A Refund carries its own amount only; the payment's is not in the event.
        (None, int_at(object, "/amount"))
    } else {
        (
            int_at(object, "/amount").or_else(|| int_at(object, "/amount_total")),
            (mapped == EventType::PaymentRefunded)
                .then(|| int_at(object, "/amount_refunded"))
                .flatten(),
        )
    };
    let failure_reason = (mapped == EventType::PaymentFailed)
        .then(|| {
            first_str(
                object,
                &[
                    "/last_payment_error/message",
                    "/failure_message",
                    "/last_payment_error/code",
                    "/failure_code",
                ],
            )
        })
        .flatten();
    Ok(Payment {
        event_type: mapped,
        payment_id,
        amount,
        currency: str_at(object, "/currency"),
        order_id: first_str(object, &["/client_reference_id", "/metadata/order_id"]),
        refunded_amount,
        email: first_str(
            object,
            &[
                "/receipt_email",
                "/billing_details/email",
                "/customer_details/email",
                "/customer_email",
                "/last_payment_error/payment_method/billing_details/email",
            ],
        ),
        phone: first_str(
            object,
            &[
                "/billing_details/phone",
                "/customer_details/phone",
                "/shipping/phone",
                "/last_payment_error/payment_method/billing_details/phone",
            ],
        ),
        failure_reason,
        provider_data: object.clone(),
    }
    .normalized(req, id.clone(), unix_at(&ev, "/created")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_parse_with_several_v1_and_other_schemes() {
        assert_eq!(
            parse_header("t=12,v0=zz, v1=aa ,v1=bb"),
            Some((12, vec!["aa", "bb"]))
        );
        assert_eq!(parse_header("v1=aa"), None);
        assert_eq!(parse_header("t=x,v1=aa"), None);
        assert_eq!(parse_header("t=12"), None);
        assert_eq!(parse_header(""), None);
    }

    #[test]
    fn the_window_is_checked_both_ways_after_the_signature() {
        let secrets = vec!["whsec_x".to_owned()];
        let h = header("whsec_x", 1000, b"{}");
        assert!(check_signature(Some(&h), b"{}", &secrets, 1300, 300).is_ok());
        assert!(check_signature(Some(&h), b"{}", &secrets, 700, 300).is_ok());
        for now in [1301, 699] {
            assert_eq!(
                check_signature(Some(&h), b"{}", &secrets, now, 300)
                    .unwrap_err()
                    .reason,
                "timestamp_out_of_window"
            );
        }
        // A forged header is a bad signature whatever its timestamp.
        let forged = header("whsec_y", 1, b"{}");
        assert_eq!(
            check_signature(Some(&forged), b"{}", &secrets, 1000, 300)
                .unwrap_err()
                .reason,
            "bad_signature"
        );
    }
}
