//! Sample provider callbacks built from `fixtures/` and signed exactly as each provider signs
//! them: what `hookgate simulate` sends, and what the tests send.

use rand::distributions::Alphanumeric;
use rand::Rng;

use crate::providers::{razorpay, stripe, twilio, Route};

/// A callback ready to send.
pub struct SignedRequest {
    pub method: reqwest::Method,
    /// Path and query.
    pub path_and_query: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl SignedRequest {
    /// The same request sent to another path (tests use it to aim a signed request elsewhere).
    pub fn clone_with_path(&self, path_and_query: &str) -> Self {
        Self {
            method: self.method.clone(),
            path_and_query: path_and_query.to_owned(),
            headers: self.headers.clone(),
            body: self.body.clone(),
        }
    }

    /// The same request with header `name` set to `value`, or removed when `None`.
    pub fn with_header(&self, name: &str, value: Option<&str>) -> Self {
        let mut out = self.clone_with_path(&self.path_and_query);
        out.headers.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
        out.headers
            .extend(value.map(|v| (name.to_owned(), v.to_owned())));
        out
    }
}

/// A random id with `prefix` and 32 hex digits, like Twilio's and Exotel's call ids.
pub fn random_sid(prefix: &str) -> String {
    format!("{prefix}{:032x}", rand::thread_rng().gen::<u128>())
}

/// `prefix` + `n` random letters and digits, like Stripe's and Razorpay's ids.
pub fn random_id(prefix: &str, n: usize) -> String {
    let tail: String = rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(n)
        .map(char::from)
        .collect();
    format!("{prefix}{tail}")
}

const FORM: &str = "application/x-www-form-urlencoded";

fn form_body(form: &[(String, String)]) -> Vec<u8> {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish()
        .into_bytes()
}

/// The pairs of a form fixture, with `from` replaced by `to` in every value (the fixture's call
/// id also stands inside its recording URL).
fn form_fixture(fixture: &str, replace: &[(&str, &str)]) -> Vec<(String, String)> {
    form_urlencoded::parse(fixture.trim().as_bytes())
        .into_owned()
        .map(|(k, v)| {
            let v = replace.iter().fold(v, |v, (from, to)| v.replace(from, to));
            (k, v)
        })
        .collect()
}

// ---- Twilio -------------------------------------------------------------------------------

fn twilio_status_fixture(status: &str) -> &'static str {
    match status {
        "ringing" => include_str!("../../fixtures/twilio/status_ringing.form"),
        "in-progress" | "answered" => {
            include_str!("../../fixtures/twilio/status_in-progress.form")
        }
        "busy" => include_str!("../../fixtures/twilio/status_busy.form"),
        "no-answer" => include_str!("../../fixtures/twilio/status_no-answer.form"),
        _ => include_str!("../../fixtures/twilio/status_completed.form"),
    }
}

const TWILIO_FIXTURE_CALL_SID: &str = "CA5f1c3a9e2b7d4f6a8c0e1b3d5f7a9c2e";

/// Builds a signed Twilio callback from the fixtures. `public_url` is the gateway's public base.
pub fn twilio_request(
    route: Route,
    tenant: &str,
    auth_token: &str,
    public_url: &str,
    status: &str,
    call_sid: &str,
) -> SignedRequest {
    let fixture = match route {
        Route::TwilioIncoming => include_str!("../../fixtures/twilio/incoming.form"),
        _ => twilio_status_fixture(status),
    };
    let mut form = form_fixture(fixture, &[(TWILIO_FIXTURE_CALL_SID, call_sid)]);
    if route == Route::TwilioStatus {
        for (k, v) in form.iter_mut() {
            if k == "CallStatus" {
                v.clone_from(&status.to_owned());
            }
        }
    }
    let path_and_query = format!("{}?tenant_id={tenant}", route.path());
    let signature = twilio::sign(auth_token, &format!("{public_url}{path_and_query}"), &form);
    SignedRequest {
        method: reqwest::Method::POST,
        path_and_query,
        headers: vec![
            ("content-type".into(), FORM.into()),
            ("x-twilio-signature".into(), signature),
        ],
        body: form_body(&form),
    }
}

// ---- Exotel -------------------------------------------------------------------------------

/// The call id used in every Exotel fixture.
pub const EXOTEL_FIXTURE_CALL_SID: &str = "b6cfaf0e5b7d53b02ad4ea2f5d7b6ae5";

/// An Exotel callback as Exotel sends it to the URL pasted into its console: the Passthru
/// applet's GET (Exotel appends its parameters, its own `tenant_id` among them) or a status
/// callback form POST reporting `status`.
pub fn exotel_request(
    route: Route,
    tenant: &str,
    token: &str,
    status: &str,
    call_sid: &str,
) -> SignedRequest {
    let base = format!("{}?tenant_id={tenant}&token={token}", route.path());
    if route == Route::ExotelIncoming {
        let fixture = include_str!("../../fixtures/exotel/passthru.query");
        let query = form_fixture(fixture, &[(EXOTEL_FIXTURE_CALL_SID, call_sid)]);
        return SignedRequest {
            method: reqwest::Method::GET,
            path_and_query: format!("{base}&{}", String::from_utf8_lossy(&form_body(&query))),
            headers: vec![("user-agent".into(), "Exotel".into())],
            body: Vec::new(),
        };
    }
    let fixture = include_str!("../../fixtures/exotel/status_completed.form");
    let mut form = form_fixture(fixture, &[(EXOTEL_FIXTURE_CALL_SID, call_sid)]);
    for (k, v) in form.iter_mut() {
        if k == "Status" || k.ends_with("[Status]") {
            v.clone_from(&status.to_owned());
        }
    }
    SignedRequest {
        method: reqwest::Method::POST,
        path_and_query: base,
        headers: vec![("content-type".into(), FORM.into())],
        body: form_body(&form),
    }
}

// ---- Stripe and Razorpay ------------------------------------------------------------------

/// Stripe fixtures by event type.
pub const STRIPE_FIXTURES: [(&str, &str); 7] = [
    (
        "payment_intent.succeeded",
        include_str!("../../fixtures/stripe/payment_intent.succeeded.json"),
    ),
    (
        "payment_intent.payment_failed",
        include_str!("../../fixtures/stripe/payment_intent.payment_failed.json"),
    ),
    (
        "charge.refunded",
        include_str!("../../fixtures/stripe/charge.refunded.json"),
    ),
    (
        "charge.failed",
        include_str!("../../fixtures/stripe/charge.failed.json"),
    ),
    (
        "checkout.session.completed",
        include_str!("../../fixtures/stripe/checkout.session.completed.json"),
    ),
    (
        "refund.updated",
        include_str!("../../fixtures/stripe/refund.updated.json"),
    ),
    (
        "payment_intent.created",
        include_str!("../../fixtures/stripe/payment_intent.created.json"),
    ),
];

/// Razorpay fixtures by event.
pub const RAZORPAY_FIXTURES: [(&str, &str); 5] = [
    (
        "payment.captured",
        include_str!("../../fixtures/razorpay/payment.captured.json"),
    ),
    (
        "payment.failed",
        include_str!("../../fixtures/razorpay/payment.failed.json"),
    ),
    (
        "refund.processed",
        include_str!("../../fixtures/razorpay/refund.processed.json"),
    ),
    (
        "order.paid",
        include_str!("../../fixtures/razorpay/order.paid.json"),
    ),
    (
        "payment.authorized",
        include_str!("../../fixtures/razorpay/payment.authorized.json"),
    ),
];

/// The payment id in every Stripe fixture.
pub const STRIPE_FIXTURE_PAYMENT_ID: &str = "pi_3PqFixtureIntent00001";
/// The payment id in every Razorpay fixture.
pub const RAZORPAY_FIXTURE_PAYMENT_ID: &str = "pay_PqFixture00001";

/// Picks a fixture by event type, or by the normalized word (`completed`, `failed`,
/// `refunded`) mapped to the first three entries.
fn payment_fixture(
    provider: &str,
    fixtures: &[(&'static str, &'static str)],
    kind: &str,
) -> anyhow::Result<&'static str> {
    let by_word = match kind {
        "completed" | "succeeded" => Some(0),
        "failed" => Some(1),
        "refunded" => Some(2),
        _ => None,
    };
    by_word
        .map(|i| fixtures[i])
        .or_else(|| fixtures.iter().copied().find(|(name, _)| *name == kind))
        .map(|(_, text)| text)
        .ok_or_else(|| {
            let names: Vec<&str> = fixtures.iter().map(|(n, _)| *n).collect();
            anyhow::anyhow!(
                "no {provider} sample for `{kind}`: use completed, failed, refunded or one of {}",
                names.join(", ")
            )
        })
}

/// A payment fixture with its payment id replaced and its event time set.
fn payment_event(
    text: &str,
    fixture_id: &str,
    payment_id: &str,
    time_field: &str,
    now: i64,
) -> serde_json::Value {
    let mut event: serde_json::Value =
        serde_json::from_str(&text.replace(fixture_id, payment_id)).expect("fixtures are JSON");
    event[time_field] = now.into();
    event
}

/// A Stripe event of `kind` for `payment_id`, sent at `t` (unix seconds) with a fresh event id,
/// signed with `secret`.
pub fn stripe_request(
    tenant: &str,
    secret: &str,
    kind: &str,
    payment_id: &str,
    t: i64,
) -> anyhow::Result<SignedRequest> {
    let text = payment_fixture("Stripe", &STRIPE_FIXTURES, kind)?;
    let mut event = payment_event(text, STRIPE_FIXTURE_PAYMENT_ID, payment_id, "created", t);
    event["id"] = random_id("evt_1", 23).into();
    let body = serde_json::to_string_pretty(&event)?.into_bytes();
    Ok(SignedRequest {
        method: reqwest::Method::POST,
        path_and_query: format!("{}?tenant_id={tenant}", Route::Stripe.path()),
        headers: vec![
            (
                "content-type".into(),
                "application/json; charset=utf-8".into(),
            ),
            (
                "user-agent".into(),
                "Stripe/1.0 (+https://stripe.com/docs/webhooks)".into(),
            ),
            ("stripe-signature".into(), stripe::header(secret, t, &body)),
        ],
        body,
    })
}

/// A Razorpay webhook of `kind` for `payment_id` with a fresh `X-Razorpay-Event-Id`, signed
/// with `secret`.
pub fn razorpay_request(
    tenant: &str,
    secret: &str,
    kind: &str,
    payment_id: &str,
) -> anyhow::Result<SignedRequest> {
    let text = payment_fixture("Razorpay", &RAZORPAY_FIXTURES, kind)?;
    let now = chrono::Utc::now().timestamp();
    let event = payment_event(
        text,
        RAZORPAY_FIXTURE_PAYMENT_ID,
        payment_id,
        "created_at",
        now,
    );
    let body = serde_json::to_vec(&event)?;
    Ok(SignedRequest {
        method: reqwest::Method::POST,
        path_and_query: format!("{}?tenant_id={tenant}", Route::Razorpay.path()),
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("x-razorpay-event-id".into(), random_id("", 14)),
            ("x-razorpay-signature".into(), razorpay::sign(secret, &body)),
        ],
        body,
    })
}
