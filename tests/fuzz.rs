//! Property tests over real HTTP: random bytes, random headers, and random (correctly signed)
//! forms, multipart bodies and JSON on every inbound route never make the gateway answer 5xx,
//! panic, or stop serving. One gateway per test; case counts stay modest because every case is
//! a real request committed to a real SQLite file.

mod common;

use common::*;
use hookgate::providers::{razorpay, stripe, Route};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{json, Value};

const TWILIO: &str = "fuzz-twilio-token";
const EXOTEL: &str = "fuzz-exotel-token-0123456789";
const STRIPE: &str = "whsec_fuzz_secret";
const RAZORPAY: &str = "fuzz-razorpay-secret";

/// A request to send: route, method, extra query, headers, body, and whether to sign it.
#[derive(Debug, Clone)]
struct Case {
    route: Route,
    method: reqwest::Method,
    query: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    sign: bool,
}

struct Harness {
    rt: tokio::runtime::Runtime,
    app: TestApp,
}

impl Harness {
    fn new() -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let app = rt.block_on(async {
            let app = spawn_app().await;
            app.create_tenant("acme").await;
            for (provider, cfg) in [
                ("twilio", json!({"auth_tokens": [TWILIO]})),
                ("exotel", json!({"tokens": [EXOTEL]})),
                ("stripe", json!({"signing_secrets": [STRIPE]})),
                ("razorpay", json!({"webhook_secrets": [RAZORPAY]})),
            ] {
                app.put_provider("acme", provider, cfg).await;
            }
            app
        });
        Self { rt, app }
    }

    /// Sends a case (signed with the tenant's credentials when asked) and returns the status.
    fn send(&self, c: &Case) -> u16 {
        let mut path = format!("{}?tenant_id=acme", c.route.path());
        if c.sign && matches!(c.route, Route::ExotelIncoming | Route::ExotelStatus) {
            path.push_str(&format!("&token={EXOTEL}"));
        }
        if !c.query.is_empty() {
            path.push('&');
            path.push_str(&c.query);
        }
        let mut headers = c.headers.clone();
        if c.sign {
            let signature = match c.route {
                Route::Stripe => Some((
                    "stripe-signature",
                    stripe::header(STRIPE, chrono::Utc::now().timestamp(), &c.body),
                )),
                Route::Razorpay => {
                    Some(("x-razorpay-signature", razorpay::sign(RAZORPAY, &c.body)))
                }
                Route::TwilioIncoming | Route::TwilioStatus => {
                    let url = format!("{}{path}", self.app.config.public_url);
                    let form = if c.method == reqwest::Method::POST {
                        form_urlencoded::parse(&c.body).into_owned().collect()
                    } else {
                        Vec::new()
                    };
                    Some((
                        "x-twilio-signature",
                        hookgate::providers::twilio::sign(TWILIO, &url, &form),
                    ))
                }
                _ => None,
            };
            if let Some((k, v)) = signature {
                headers.push((k.to_owned(), v));
            }
        }
        self.rt.block_on(async {
            let mut b = self
                .app
                .client
                .request(c.method.clone(), self.app.url(&path))
                .body(c.body.clone());
            for (k, v) in &headers {
                b = b.header(k.as_str(), v.as_str());
            }
            match b.send().await {
                Ok(r) => r.status().as_u16(),
                // A request reqwest itself refuses to build never reached the gateway.
                Err(e) if e.is_builder() => 0,
                Err(e) => panic!("the gateway did not answer: {e}"),
            }
        })
    }

    /// Runs `cases` random cases; every answer must be below 500, and the gateway still healthy.
    fn check(&self, cases: u32, strategy: impl Strategy<Value = Case>) {
        let mut runner = TestRunner::new(Config {
            cases,
            failure_persistence: None,
            ..Config::default()
        });
        let answered = std::cell::RefCell::new(std::collections::BTreeMap::new());
        runner
            .run(&strategy, |c| {
                let status = self.send(&c);
                *answered.borrow_mut().entry(status).or_insert(0u32) += 1;
                prop_assert!(status < 500, "{c:?} answered {status}");
                Ok(())
            })
            .unwrap();
        let health = self
            .rt
            .block_on(async { self.app.client.get(self.app.url("/healthz")).send().await });
        let answered = answered.into_inner();
        assert_eq!(health.unwrap().status(), 200, "answers: {answered:?}");
        assert!(!answered.is_empty());
    }
}

fn route() -> impl Strategy<Value = Route> {
    prop::sample::select(Route::ALL.to_vec())
}

fn method() -> impl Strategy<Value = reqwest::Method> {
    prop::sample::select(vec![
        reqwest::Method::POST,
        reqwest::Method::POST,
        reqwest::Method::GET,
        reqwest::Method::PUT,
    ])
}

fn content_type() -> impl Strategy<Value = Option<String>> {
    prop::option::of(prop_oneof![
        Just("application/x-www-form-urlencoded".to_owned()),
        Just("application/json".to_owned()),
        Just("application/json; charset=utf-8".to_owned()),
        Just("multipart/form-data; boundary=FuzzBoundary".to_owned()),
        Just("multipart/form-data".to_owned()),
        Just("text/plain".to_owned()),
        "[ -~]{0,40}",
    ])
}

/// One of `list`.
fn word(list: &[&'static str]) -> impl Strategy<Value = String> {
    prop::sample::select(list.to_vec()).prop_map(str::to_owned)
}

/// Names providers send, and some that are not.
fn param_name() -> impl Strategy<Value = String> {
    prop_oneof![
        word(&[
            "CallSid",
            "CallStatus",
            "Status",
            "EventType",
            "CallType",
            "SequenceNumber",
            "CallDuration",
            "ConversationDuration",
            "Direction",
            "From",
            "To",
            "Timestamp",
            "DateUpdated",
            "tenant_id",
            "token",
            "Legs[0][Status]",
            "bodySHA256",
        ]),
        "[ -~]{0,12}",
    ]
}

fn param_value() -> impl Strategy<Value = String> {
    prop_oneof![
        word(&[
            "completed",
            "ringing",
            "in-progress",
            "busy",
            "queued",
            "CA1",
            "",
            "-1",
            "99999999999999999999999",
            "2026-05-07 19:55:12",
            "outbound-api",
        ]),
        any::<String>(),
    ]
}

fn pairs() -> impl Strategy<Value = Vec<(String, String)>> {
    vec((param_name(), param_value()), 0..8)
}

/// Random pairs that often carry a call id and a status, so they get past "missing field".
fn callback_pairs() -> impl Strategy<Value = Vec<(String, String)>> {
    let status = prop::sample::select(vec!["CallStatus", "Status", "EventType"]);
    (
        prop::option::of(param_value()),
        prop::option::of((status, param_value())),
        pairs(),
    )
        .prop_map(|(sid, status, rest)| {
            let mut out: Vec<(String, String)> = Vec::new();
            out.extend(sid.map(|v| ("CallSid".to_owned(), format!("CA{v}"))));
            out.extend(status.map(|(k, v)| (k.to_owned(), v)));
            out.extend(rest);
            out
        })
}

const EVENT_TYPES: [&str; 10] = [
    "payment_intent.succeeded",
    "payment_intent.payment_failed",
    "charge.refunded",
    "refund.updated",
    "checkout.session.completed",
    "payment.captured",
    "payment.failed",
    "refund.processed",
    "order.paid",
    "payment.authorized",
];

/// Stripe- and Razorpay-shaped events with random insides.
fn payment_event() -> impl Strategy<Value = Value> {
    (
        prop::sample::select(EVENT_TYPES.to_vec()),
        json_value(),
        json_value(),
        any::<i64>(),
    )
        .prop_map(|(t, object, entity, created)| {
            json!({
                "id": format!("evt_{created}"),
                "type": t,
                "event": t,
                "created": created,
                "created_at": created,
                "data": {"object": object},
                "payload": {"payment": {"entity": entity.clone()}, "refund": {"entity": entity}},
            })
        })
}

fn urlencode(pairs: &[(String, String)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

fn multipart(pairs: &[(String, String)]) -> Vec<u8> {
    let mut out = String::new();
    for (k, v) in pairs {
        let k = k.replace(['"', '\r', '\n'], "");
        out.push_str(&format!(
            "--FuzzBoundary\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n"
        ));
    }
    out.push_str("--FuzzBoundary--\r\n");
    out.into_bytes()
}

/// JSON values with the shapes the payment normalizers look into.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        param_value().prop_map(Value::from),
        word(&EVENT_TYPES).prop_map(Value::from),
        word(&["paid", "succeeded", "usd"]).prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(Value::from),
            vec(
                (
                    prop::sample::select(vec![
                        "id",
                        "type",
                        "event",
                        "data",
                        "object",
                        "payload",
                        "payment",
                        "refund",
                        "order",
                        "entity",
                        "amount",
                        "currency",
                        "created",
                        "created_at",
                        "payment_intent",
                        "payment_status",
                        "status",
                        "CallSid",
                        "Status",
                    ]),
                    inner
                ),
                0..6
            )
            .prop_map(|kv| Value::Object(kv.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())),
        ]
    })
}

#[test]
fn random_bytes_on_every_route_never_answer_5xx() {
    let h = Harness::new();
    let strategy = (
        route(),
        method(),
        content_type(),
        vec(any::<u8>(), 0..600),
        any::<bool>(),
    )
        .prop_map(|(route, method, ct, body, sign)| Case {
            route,
            method,
            query: String::new(),
            headers: ct
                .map(|c| ("content-type".to_owned(), c))
                .into_iter()
                .collect(),
            body,
            sign,
        });
    h.check(96, strategy);
}

#[test]
fn random_headers_and_queries_never_answer_5xx() {
    let h = Harness::new();
    let header = (
        prop_oneof![
            word(&[
                "content-type",
                "stripe-signature",
                "x-razorpay-signature",
                "x-razorpay-event-id",
                "x-twilio-signature",
                "x-forwarded-for",
                "x-forwarded-proto",
                "x-forwarded-host",
                "transfer-encoding",
                "content-encoding",
            ]),
            "[a-z][a-z0-9-]{0,15}",
        ],
        "[ -~]{0,80}",
    );
    let strategy = (
        route(),
        method(),
        vec(header, 0..6),
        pairs(),
        "[ -~]{0,200}",
        any::<bool>(),
    )
        .prop_map(|(route, method, headers, query, body, sign)| Case {
            route,
            method,
            query: urlencode(&query),
            headers,
            body: body.into_bytes(),
            sign,
        });
    h.check(96, strategy);
}

#[test]
fn random_signed_forms_multipart_and_json_never_answer_5xx() {
    let h = Harness::new();
    #[derive(Debug, Clone)]
    enum Body {
        Form(Vec<(String, String)>),
        Multipart(Vec<(String, String)>),
        Json(Value),
    }
    let body = prop_oneof![
        callback_pairs().prop_map(Body::Form),
        callback_pairs().prop_map(Body::Multipart),
        callback_pairs().prop_map(|p| Body::Json(Value::Object(
            p.into_iter().map(|(k, v)| (k, Value::from(v))).collect()
        ))),
        json_value().prop_map(Body::Json),
        payment_event().prop_map(Body::Json),
        payment_event().prop_map(Body::Json),
    ];
    let strategy =
        (route(), callback_pairs(), body, any::<bool>()).prop_map(|(route, query, body, get)| {
            let (ct, bytes) = match body {
                Body::Form(p) => (
                    "application/x-www-form-urlencoded",
                    urlencode(&p).into_bytes(),
                ),
                Body::Multipart(p) => ("multipart/form-data; boundary=FuzzBoundary", multipart(&p)),
                Body::Json(v) => ("application/json", serde_json::to_vec(&v).unwrap()),
            };
            let get = get && !matches!(route, Route::Stripe | Route::Razorpay);
            Case {
                route,
                method: if get {
                    reqwest::Method::GET
                } else {
                    reqwest::Method::POST
                },
                query: urlencode(&query),
                headers: vec![("content-type".to_owned(), ct.to_owned())],
                body: if get { Vec::new() } else { bytes },
                sign: true,
            }
        });
    h.check(160, strategy);
    // Signed cases got through verification: something was accepted.
    let log = h.rt.block_on(h.app.inbound("acme"));
    assert!(
        log.iter().any(|e| e["outcome"] != "rejected"),
        "no random signed callback was accepted: the test would not reach the normalizers"
    );
}
