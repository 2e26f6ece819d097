//! Shared test harness: starts the real gateway on port 0 with a fresh database (a SQLite file,
//! or a PostgreSQL schema inside [`dual!`] tests), and offers typed helpers over real HTTP.
#![allow(dead_code)]

pub mod backend;
pub mod process;
pub mod receiver;

use std::collections::BTreeMap;
use std::time::Duration;

use hookgate::config::Config;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

pub const ADMIN: &str = "test-admin-token";

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub config: Config,
    pub shutdown: CancellationToken,
    pub handle: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    pub dir: tempfile::TempDir,
}

/// Starts a gateway with default test settings.
pub async fn spawn_app() -> TestApp {
    spawn_with(|_| {}).await
}

/// Starts a gateway; `tweak` may set any config key (as in `hookgate::config::KEYS`).
pub async fn spawn_with(tweak: impl FnOnce(&mut BTreeMap<String, String>)) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let mut map = BTreeMap::new();
    map.insert(
        "database_url".to_owned(),
        backend::fresh_database_url(dir.path()).await,
    );
    map.insert("admin_token".to_owned(), ADMIN.to_owned());
    map.insert("allow_http_targets".to_owned(), "true".to_owned());
    map.insert("allow_private_targets".to_owned(), "127.0.0.0/8".to_owned());
    map.insert("retry_schedule".to_owned(), "100ms,200ms".to_owned());
    map.insert("poll_interval".to_owned(), "100ms".to_owned());
    tweak(&mut map);
    start(map, dir).await
}

/// Starts a gateway with tenant `acme` configured for `provider` with `cfg`.
pub async fn spawn_tenant(
    provider: &str,
    cfg: Value,
    tweak: impl FnOnce(&mut BTreeMap<String, String>),
) -> TestApp {
    let app = spawn_with(tweak).await;
    app.create_tenant("acme").await;
    app.put_provider("acme", provider, cfg).await;
    app
}

/// Starts a gateway on an explicit config map and directory (used to restart on the same DB).
pub async fn start(mut map: BTreeMap<String, String>, dir: tempfile::TempDir) -> TestApp {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    map.insert("listen".to_owned(), addr.to_string());
    map.entry("public_url".to_owned())
        .or_insert_with(|| format!("http://{addr}"));
    let config = Config::from_map(&map).unwrap();
    let shutdown = CancellationToken::new();
    let handle = tokio::spawn(hookgate::run(config.clone(), listener, shutdown.clone()));
    let app = TestApp {
        base: format!("http://{addr}"),
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        config,
        shutdown,
        handle: Some(handle),
        dir,
    };
    for _ in 0..200 {
        if app.client.get(app.url("/healthz")).send().await.is_ok() {
            return app;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("gateway did not start");
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Stops the gateway gracefully and waits for it.
    pub async fn stop(mut self) -> tempfile::TempDir {
        self.shutdown.cancel();
        if let Some(h) = self.handle.take() {
            h.await.unwrap().unwrap();
        }
        self.dir
    }

    pub async fn admin_get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap()
    }

    pub async fn admin_json(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Value,
    ) -> reqwest::Response {
        self.client
            .request(method, self.url(path))
            .bearer_auth(ADMIN)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// Creates a tenant; returns its API key.
    pub async fn create_tenant(&self, id: &str) -> String {
        let r = self
            .admin_json(
                reqwest::Method::POST,
                "/v1/tenants",
                json!({"id": id, "name": id}),
            )
            .await;
        assert_eq!(r.status(), 201, "creating tenant {id}");
        r.json::<Value>().await.unwrap()["api_key"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Sets a provider's credentials for a tenant; returns the answer's JSON.
    pub async fn put_provider(&self, tenant: &str, provider: &str, cfg: Value) -> Value {
        let r = self
            .admin_json(
                reqwest::Method::PUT,
                &format!("/v1/tenants/{tenant}/providers/{provider}"),
                cfg,
            )
            .await;
        assert_eq!(r.status(), 200, "configuring {provider} for {tenant}");
        r.json().await.unwrap()
    }

    /// A tenant with Twilio configured with `token`.
    pub async fn twilio_tenant(&self, id: &str, token: &str) -> String {
        let key = self.create_tenant(id).await;
        self.put_provider(id, "twilio", json!({"auth_tokens": [token]}))
            .await;
        key
    }

    /// Every event of the tenant's feed, oldest first.
    pub async fn events(&self, tenant: &str) -> Vec<Value> {
        let r = self
            .admin_get(&format!("/v1/tenants/{tenant}/events?limit=1000"))
            .await;
        assert_eq!(r.status(), 200);
        r.json::<Value>().await.unwrap()["data"]
            .as_array()
            .unwrap()
            .clone()
    }

    /// The tenant's inbound log, newest first.
    pub async fn inbound(&self, tenant: &str) -> Vec<Value> {
        let r = self
            .admin_get(&format!("/v1/tenants/{tenant}/inbound?limit=1000"))
            .await;
        assert_eq!(r.status(), 200);
        r.json::<Value>().await.unwrap()["data"]
            .as_array()
            .unwrap()
            .clone()
    }

    /// Sends a signed request built by `hookgate::cli` helpers.
    pub async fn send(&self, req: &hookgate::cli::SignedRequest) -> reqwest::Response {
        let mut b = self
            .client
            .request(req.method.clone(), self.url(&req.path_and_query))
            .body(req.body.clone());
        for (k, v) in &req.headers {
            b = b.header(k, v);
        }
        b.send().await.unwrap()
    }

    /// Sends signed `completed` status callbacks for calls `{prefix}0` … `{prefix}{n-1}`, 50 at
    /// a time, and asserts each was acknowledged.
    pub async fn completed_calls(&self, tenant: &str, token: &str, prefix: &str, n: usize) {
        let calls: Vec<String> = (0..n).map(|i| format!("{prefix}{i}")).collect();
        for chunk in calls.chunks(50) {
            futures_util::future::join_all(
                chunk
                    .iter()
                    .map(|c| self.twilio_status(tenant, token, c, "completed")),
            )
            .await;
        }
    }

    /// POSTs `body` to `path` with exactly these headers, as a provider (or a forger) would.
    pub async fn post(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<reqwest::Body>,
    ) -> reqwest::Response {
        let mut b = self.client.post(self.url(path)).body(body);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.send().await.unwrap()
    }
}

/// Reads a JSON file from `../shared/vectors` (next to the repository) or `tests/vectors`.
pub fn vector(name: &str) -> Value {
    let here = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for dir in [here.join("../shared/vectors"), here.join("tests/vectors")] {
        if let Ok(text) = std::fs::read_to_string(dir.join(name)) {
            return serde_json::from_str(&text).unwrap();
        }
    }
    panic!("vector file {name} not found");
}

impl TestApp {
    /// Subscribes `url` for `types`; returns (id, secret).
    pub async fn subscribe(&self, tenant: &str, url: &str, types: &[&str]) -> (String, String) {
        let r = self
            .admin_json(
                reqwest::Method::POST,
                &format!("/v1/tenants/{tenant}/subscriptions"),
                json!({"url": url, "event_types": types}),
            )
            .await;
        assert_eq!(r.status(), 201);
        let v: Value = r.json().await.unwrap();
        (
            v["id"].as_str().unwrap().to_owned(),
            v["secret"].as_str().unwrap().to_owned(),
        )
    }

    /// PATCHes a subscription, asserts 200, and returns the answer (the changed subscription).
    pub async fn patch_subscription(&self, tenant: &str, id: &str, body: Value) -> Value {
        let r = self
            .admin_json(
                reqwest::Method::PATCH,
                &format!("/v1/tenants/{tenant}/subscriptions/{id}"),
                body,
            )
            .await;
        assert_eq!(r.status(), 200, "PATCH subscription {id}");
        r.json().await.unwrap()
    }

    /// Sends a signed Twilio status callback and asserts it was acknowledged.
    pub async fn twilio_status(&self, tenant: &str, token: &str, call: &str, status: &str) {
        let req = hookgate::cli::twilio_request(
            hookgate::providers::Route::TwilioStatus,
            tenant,
            token,
            &self.config.public_url,
            status,
            call,
        );
        let r = self.send(&req).await;
        assert!(r.status().is_success(), "callback answered {}", r.status());
    }

    /// Waits until the tenant's deliveries with `status` number at least `n`.
    pub async fn wait_deliveries(&self, tenant: &str, status: &str, n: usize) -> Vec<Value> {
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        loop {
            let r: Value = self
                .admin_get(&format!(
                    "/v1/tenants/{tenant}/deliveries?status={status}&limit=1000"
                ))
                .await
                .json()
                .await
                .unwrap();
            let rows = r["data"].as_array().unwrap().clone();
            if rows.len() >= n {
                return rows;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting for {n} {status} deliveries, have {}",
                rows.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// `(status, error code)` of an error answer.
pub async fn error_code(r: reqwest::Response) -> (u16, String) {
    let status = r.status().as_u16();
    let body: Value = r.json().await.unwrap();
    (
        status,
        body["error"]["code"].as_str().unwrap_or("").to_owned(),
    )
}

impl TestApp {
    /// The tenant's inbound log as `(outcome, reason)`, newest first.
    pub async fn inbound_reasons(&self, tenant: &str) -> Vec<(String, String)> {
        self.inbound(tenant)
            .await
            .iter()
            .map(|e| {
                (
                    e["outcome"].as_str().unwrap_or("").to_owned(),
                    e["reason"].as_str().unwrap_or("").to_owned(),
                )
            })
            .collect()
    }

    /// Sends `req` `n` times at once; returns every `(status, body)`.
    pub async fn send_concurrently(
        &self,
        req: &hookgate::cli::SignedRequest,
        n: usize,
    ) -> Vec<(u16, String)> {
        let sends = (0..n).map(|_| async {
            let r = self.send(req).await;
            (r.status().as_u16(), r.text().await.unwrap())
        });
        futures_util::future::join_all(sends).await
    }

    /// Runs `hookgate simulate ARGS --tenant TENANT --url BASE` against this gateway's database;
    /// returns (exit success, stdout, stderr).
    pub async fn simulate(&self, args: &[&str]) -> (bool, String, String) {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_hookgate"))
            .arg("simulate")
            .args(args)
            .args(["--url", &self.base])
            .env("HOOKGATE_DATABASE_URL", &self.config.database_url)
            .env("HOOKGATE_PUBLIC_URL", &self.config.public_url)
            .env("RUST_LOG", "hookgate=debug")
            .kill_on_drop(true)
            .output()
            .await
            .expect("run hookgate simulate");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

/// An event's `data` without `provider_data`, and `provider_data`: the normalized fields are
/// compared whole, the provider's own data separately.
pub fn split_provider_data(data: &Value) -> (Value, Value) {
    let mut d = data.clone();
    let provider_data = d
        .as_object_mut()
        .and_then(|m| m.remove("provider_data"))
        .expect("data has provider_data");
    (d, provider_data)
}

/// The API's time format of a unix-seconds JSON number.
pub fn rfc3339_of(unix: &Value) -> String {
    hookgate::event::rfc3339(chrono::DateTime::from_timestamp(unix.as_i64().unwrap(), 0).unwrap())
}

impl TestApp {
    /// Runs `hookgate simulate` expecting success; returns what it printed on stdout (asserting
    /// that neither stream shows `secret`).
    pub async fn simulate_ok(&self, args: &[&str], secret: &str) -> String {
        let (ok, out, err) = self.simulate(args).await;
        assert!(ok, "simulate {args:?} failed\nstdout: {out}\nstderr: {err}");
        assert!(
            !out.contains(secret) && !err.contains(secret),
            "simulate printed a secret"
        );
        out
    }
}

impl TestApp {
    /// Sends `req`, expects `status` and an answer naming a new event; returns that event (the
    /// newest of the tenant's feed).
    pub async fn send_for_event(
        &self,
        tenant: &str,
        req: &hookgate::cli::SignedRequest,
        status: u16,
    ) -> Value {
        let r = self.send(req).await;
        assert_eq!(r.status(), status);
        let answer: Value = r.json().await.unwrap();
        let events = self.events(tenant).await;
        let newest = events.last().expect("an event was emitted").clone();
        assert_eq!(answer, json!({"event_id": newest["id"]}));
        newest
    }
}
