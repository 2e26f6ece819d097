//! Real gateway processes (the `hookgate` binary), for crash and scale-out tests.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A gateway process, SIGKILLed and reaped when dropped (also when a test fails midway).
pub struct Gateway {
    child: std::sync::Mutex<Child>,
    pub base: String,
}

impl Gateway {
    /// Starts `hookgate serve` on a free port with the test settings and `db`.
    pub fn spawn(db: &str, extra: &[(&str, &str)]) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_hookgate"));
        cmd.arg("serve")
            .env("HOOKGATE_LISTEN", format!("127.0.0.1:{port}"))
            .env("HOOKGATE_DATABASE_URL", db)
            .env("HOOKGATE_ADMIN_TOKEN", super::ADMIN)
            .env("HOOKGATE_ALLOW_HTTP_TARGETS", "true")
            .env("HOOKGATE_ALLOW_PRIVATE_TARGETS", "127.0.0.0/8")
            .env(
                "HOOKGATE_RETRY_SCHEDULE",
                "100ms,200ms,300ms,500ms,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s",
            )
            .env("HOOKGATE_POLL_INTERVAL", "100ms")
            .env("RUST_LOG", "hookgate=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for (k, v) in extra {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("start hookgate");
        Self {
            child: std::sync::Mutex::new(child),
            base: format!("http://127.0.0.1:{port}"),
        }
    }

    /// SIGKILL: no graceful shutdown, no flushing.
    pub fn kill(&self) {
        let mut child = self.child.lock().unwrap_or_else(|p| p.into_inner());
        let _ = child.kill();
        let _ = child.wait();
    }

    /// SIGTERM, as a supervisor stops it; returns whether it exited successfully within `limit`.
    pub async fn terminate(&self, limit: Duration) -> bool {
        let pid = self
            .child
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .id()
            .to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status();
        assert!(sent.is_ok_and(|s| s.success()), "kill -TERM {pid}");
        let deadline = Instant::now() + limit;
        loop {
            let exited = self
                .child
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .try_wait()
                .unwrap();
            if let Some(status) = exited {
                return status.success();
            }
            if Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until `/readyz` answers 200.
    pub async fn ready(&self, client: &reqwest::Client) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while client
            .get(format!("{}/readyz", self.base))
            .send()
            .await
            .map(|r| r.status() != 200)
            .unwrap_or(true)
        {
            assert!(Instant::now() < deadline, "gateway did not become ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sends a signed callback; true when it was acknowledged (2xx).
    pub async fn send(&self, client: &reqwest::Client, req: &hookgate::cli::SignedRequest) -> bool {
        let mut b = client
            .request(
                req.method.clone(),
                format!("{}{}", self.base, req.path_and_query),
            )
            .body(req.body.clone());
        for (k, v) in &req.headers {
            b = b.header(k, v);
        }
        b.send()
            .await
            .map(|r| r.status().is_success())
            .unwrap_or(false)
    }

    /// An admin request with a JSON body.
    pub async fn admin(
        &self,
        client: &reqwest::Client,
        method: reqwest::Method,
        path: &str,
        body: serde_json::Value,
    ) -> reqwest::Response {
        client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(super::ADMIN)
            .json(&body)
            .send()
            .await
            .unwrap()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Sends Twilio `completed` callbacks for calls `{prefix}{n:05}` eight at a time, spread
/// round-robin over `gateways`; once `kill_after` are acknowledged, SIGKILLs `gateways[victim]`
/// while the next eight are in flight. Returns every acknowledged call id.
pub async fn stream_and_kill(
    client: &reqwest::Client,
    gateways: &[Gateway],
    victim: usize,
    (tenant, token): (&str, &str),
    prefix: &str,
    kill_after: usize,
) -> Vec<String> {
    let mut acked = Vec::new();
    for n in (0..).step_by(8) {
        let sends = (n..n + 8).map(|i| {
            let gw = &gateways[i % gateways.len()];
            let sid = format!("{prefix}{i:05}");
            let req = hookgate::cli::twilio_request(
                hookgate::providers::Route::TwilioStatus,
                tenant,
                token,
                &gw.base,
                "completed",
                &sid,
            );
            async move { (gw.send(client, &req).await, sid) }
        });
        let kill_now = acked.len() >= kill_after;
        let kill = async {
            if kill_now {
                tokio::time::sleep(Duration::from_millis(2)).await;
                gateways[victim].kill();
            }
        };
        let (results, ()) = tokio::join!(futures_util::future::join_all(sends), kill);
        acked.extend(results.into_iter().filter(|r| r.0).map(|r| r.1));
        if kill_now {
            return acked;
        }
    }
    unreachable!()
}

/// Sets up tenant `acme` with a Twilio token and one subscription to `receiver_url`.
pub async fn setup_tenant(client: &reqwest::Client, gw: &Gateway, token: &str, receiver_url: &str) {
    use reqwest::Method;
    use serde_json::json;
    let r = gw
        .admin(client, Method::POST, "/v1/tenants", json!({"id": "acme"}))
        .await;
    assert_eq!(r.status(), 201);
    let r = gw
        .admin(
            client,
            Method::PUT,
            "/v1/tenants/acme/providers/twilio",
            json!({"auth_tokens": [token]}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let r = gw
        .admin(
            client,
            Method::POST,
            "/v1/tenants/acme/subscriptions",
            json!({"url": receiver_url}),
        )
        .await;
    assert_eq!(r.status(), 201);
}

/// Asserts that every acknowledged call has exactly one event in tenant `acme`'s feed (read
/// through `gw`), and that every event reaches `rx` within 60 s. Returns the event ids.
pub async fn assert_all_delivered(
    client: &reqwest::Client,
    gw: &Gateway,
    rx: &super::receiver::Receiver,
    acked: &[String],
) -> std::collections::HashSet<String> {
    use std::collections::{HashMap, HashSet};
    let feed: serde_json::Value = client
        .get(format!("{}/v1/tenants/acme/events?limit=1000", gw.base))
        .bearer_auth(super::ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let events = feed["data"].as_array().unwrap();
    let mut per_call: HashMap<String, usize> = HashMap::new();
    for e in events {
        *per_call
            .entry(e["data"]["call_id"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    for sid in acked {
        assert!(
            per_call.contains_key(sid),
            "acknowledged callback {sid} was lost"
        );
    }
    assert!(
        per_call.values().all(|&n| n == 1),
        "a callback became two events"
    );
    let ids: HashSet<String> = events
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let delivered: HashSet<String> = rx
            .received()
            .iter()
            .filter(|r| r.status == 200)
            .map(|r| r.header("webhook-id"))
            .collect();
        if ids.is_subset(&delivered) {
            return ids;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} events delivered",
            ids.intersection(&delivered).count(),
            ids.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
