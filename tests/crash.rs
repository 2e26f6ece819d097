//! Crash safety with real processes: hundreds of callbacks are acknowledged while the receiver
//! fails, the gateway is killed with SIGKILL, restarted on the same database, and every
//! acknowledged event still reaches the receiver (at least once; `webhook-id` deduplicates).

mod common;

use std::collections::HashSet;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::receiver::Receiver;
use hookgate::cli::twilio_request;
use hookgate::providers::Route;
use serde_json::{json, Value};

const TOKEN: &str = "crash-token";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A gateway process, SIGKILLed and reaped when dropped (also when a test fails midway).
struct Gateway(Child);

impl Gateway {
    fn kill(&mut self) {
        let _ = self.0.kill(); // SIGKILL
        let _ = self.0.wait();
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.kill();
    }
}

fn spawn_gateway(db: &str, port: u16) -> Gateway {
    let child = Command::new(env!("CARGO_BIN_EXE_hookgate"))
        .arg("serve")
        .env("HOOKGATE_LISTEN", format!("127.0.0.1:{port}"))
        .env("HOOKGATE_DATABASE_URL", db)
        .env("HOOKGATE_ADMIN_TOKEN", common::ADMIN)
        .env("HOOKGATE_ALLOW_HTTP_TARGETS", "true")
        .env("HOOKGATE_ALLOW_PRIVATE_TARGETS", "127.0.0.0/8")
        .env(
            "HOOKGATE_RETRY_SCHEDULE",
            "100ms,200ms,300ms,500ms,1s,1s,1s,1s,1s,1s,1s,1s",
        )
        .env("HOOKGATE_POLL_INTERVAL", "100ms")
        .env("RUST_LOG", "hookgate=warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start hookgate");
    Gateway(child)
}

async fn wait_ready(client: &reqwest::Client, base: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while client
        .get(format!("{base}/readyz"))
        .send()
        .await
        .map(|r| r.status() != 200)
        .unwrap_or(true)
    {
        assert!(Instant::now() < deadline, "gateway did not become ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn sigkill_loses_no_acknowledged_callback() {
    let failing = Arc::new(AtomicBool::new(true));
    let rx = Receiver::start(Arc::new({
        let failing = failing.clone();
        move |_, _| {
            (
                if failing.load(Ordering::SeqCst) {
                    500
                } else {
                    200
                },
                vec![],
                Duration::ZERO,
            )
        }
    }))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("crash.db").display());
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let mut gw = spawn_gateway(&db, port);
    wait_ready(&client, &base).await;
    let admin = |m: reqwest::Method, path: &str, body: Value| {
        client
            .request(m, format!("{base}{path}"))
            .bearer_auth(common::ADMIN)
            .json(&body)
            .send()
    };
    assert_eq!(
        admin(reqwest::Method::POST, "/v1/tenants", json!({"id": "acme"}))
            .await
            .unwrap()
            .status(),
        201
    );
    admin(
        reqwest::Method::PUT,
        "/v1/tenants/acme/providers/twilio",
        json!({"auth_tokens": [TOKEN]}),
    )
    .await
    .unwrap();
    admin(
        reqwest::Method::POST,
        "/v1/tenants/acme/subscriptions",
        json!({"url": rx.url}),
    )
    .await
    .unwrap();

    // Send callbacks 8 at a time; kill the gateway once 200 are acknowledged, mid-stream.
    let mut acked: Vec<String> = Vec::new();
    let mut i = 0;
    'send: loop {
        let batch: Vec<String> = (i..i + 8).map(|n| format!("CAcrash{n:05}")).collect();
        i += 8;
        let sends = batch.iter().map(|sid| {
            let req = twilio_request(Route::TwilioStatus, "acme", TOKEN, &base, "completed", sid);
            let client = client.clone();
            let url = format!("{base}{}", req.path_and_query);
            async move {
                let mut b = client.post(url).body(req.body.clone());
                for (k, v) in &req.headers {
                    b = b.header(k, v);
                }
                b.send()
                    .await
                    .map(|r| r.status().is_success())
                    .unwrap_or(false)
            }
        });
        let results = futures_util::future::join_all(sends).await;
        for (sid, ok) in batch.into_iter().zip(results) {
            if ok {
                acked.push(sid);
            }
        }
        if acked.len() >= 200 {
            // Kill while the next batch is in flight.
            let next: Vec<_> = (i..i + 8)
                .map(|n| {
                    let req = twilio_request(
                        Route::TwilioStatus,
                        "acme",
                        TOKEN,
                        &base,
                        "completed",
                        &format!("CAcrash{n:05}"),
                    );
                    let mut b = client
                        .post(format!("{base}{}", req.path_and_query))
                        .body(req.body.clone());
                    for (k, v) in &req.headers {
                        b = b.header(k, v);
                    }
                    (n, tokio::spawn(b.send()))
                })
                .collect();
            tokio::time::sleep(Duration::from_millis(2)).await;
            gw.kill();
            for (n, h) in next {
                if let Ok(Ok(r)) = h.await {
                    if r.status().is_success() {
                        acked.push(format!("CAcrash{n:05}"));
                    }
                }
            }
            break 'send;
        }
    }
    assert!(
        rx.received().iter().all(|r| r.status == 500),
        "nothing succeeded before the crash"
    );

    // Restart on the same database with a healthy receiver.
    failing.store(false, Ordering::SeqCst);
    let mut gw = spawn_gateway(&db, port);
    wait_ready(&client, &base).await;
    let feed: Value = client
        .get(format!("{base}/v1/tenants/acme/events?limit=1000"))
        .bearer_auth(common::ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let events = feed["data"].as_array().unwrap();
    let stored: HashSet<String> = events
        .iter()
        .map(|e| e["data"]["call_id"].as_str().unwrap().to_owned())
        .collect();
    for sid in &acked {
        assert!(stored.contains(sid), "acknowledged callback {sid} was lost");
    }
    assert_eq!(events.len(), stored.len(), "one event per callback");
    let ids: HashSet<String> = events
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let delivered: HashSet<String> = rx
            .received()
            .iter()
            .filter(|r| r.status == 200)
            .map(|r| r.header("webhook-id"))
            .collect();
        if ids.is_subset(&delivered) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} events delivered",
            ids.intersection(&delivered).count(),
            ids.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    gw.kill();
}
