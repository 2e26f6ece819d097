//! A real webhook receiver on loopback that records every request and answers as told.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;

/// One received request.
#[derive(Clone, Debug)]
pub struct Received {
    pub headers: HeaderMap,
    pub body: Bytes,
    pub at: Instant,
    pub status: u16,
}

impl Received {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
    pub fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    }
}

/// How the receiver answers request number `n` (0-based) with body JSON `body`.
pub type Behaviour =
    dyn Fn(usize, &serde_json::Value) -> (u16, Vec<(&'static str, String)>, Duration) + Send + Sync;

#[derive(Clone)]
struct Shared {
    log: Arc<Mutex<Vec<Received>>>,
    behaviour: Arc<Mutex<Arc<Behaviour>>>,
}

pub struct Receiver {
    pub url: String,
    shared: Shared,
}

async fn handle(State(s): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let n = s.log.lock().unwrap().len();
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
    let behaviour = s.behaviour.lock().unwrap().clone();
    let (status, extra, delay) = behaviour(n, &json);
    s.log.lock().unwrap().push(Received {
        headers,
        body,
        at: Instant::now(),
        status,
    });
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let mut resp = (StatusCode::from_u16(status).unwrap(), "ok").into_response();
    for (k, v) in extra {
        resp.headers_mut().insert(k, v.parse().unwrap());
    }
    resp
}

impl Receiver {
    /// A receiver answering 200 to everything.
    pub async fn ok() -> Self {
        Self::answering(200).await
    }

    /// A receiver answering `status` to everything (change it later with [`Receiver::set`]).
    pub async fn answering(status: u16) -> Self {
        Self::start(Self::always(status)).await
    }

    /// The behaviour "answer `status` at once".
    pub fn always(status: u16) -> Arc<Behaviour> {
        Arc::new(move |_, _| (status, vec![], Duration::ZERO))
    }

    pub async fn start(behaviour: Arc<Behaviour>) -> Self {
        let shared = Shared {
            log: Arc::default(),
            behaviour: Arc::new(Mutex::new(behaviour)),
        };
        let app = Router::new()
            .route("/hook", post(handle))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { url, shared }
    }

    /// Changes how the receiver answers from now on.
    pub fn set(&self, behaviour: Arc<Behaviour>) {
        *self.shared.behaviour.lock().unwrap() = behaviour;
    }

    pub fn received(&self) -> Vec<Received> {
        self.shared.log.lock().unwrap().clone()
    }

    /// Waits until `pred` holds over the received requests (10 s at most).
    pub async fn wait_for(&self, what: &str, pred: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let got = self.received();
            if pred(&got) {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; got {} requests",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Answers `codes[n]` to request `n`, then 200.
pub fn answers(codes: Vec<u16>) -> Arc<Behaviour> {
    Arc::new(move |n, _| (*codes.get(n).unwrap_or(&200), vec![], Duration::ZERO))
}

/// Standard Webhooks verification written from the spec, not with hookgate's signer.
pub fn verify_standard(secret: &str, r: &Received) -> bool {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine;
    use hmac::{Hmac, Mac};
    let key = STANDARD
        .decode(secret.trim_start_matches("whsec_"))
        .unwrap();
    let id = r.header("webhook-id");
    let ts = r.header("webhook-timestamp");
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{ts}.").as_bytes());
    mac.update(&r.body);
    let expected = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
    r.header("webhook-signature")
        .split(' ')
        .any(|s| s == expected)
}
