//! Benchmarks that run in one process on loopback, each against a baseline in the same run so
//! the figures are ratios on this machine, not absolute numbers from a noisy one.
//!
//! - `inbound`: unique signed Twilio status callbacks over keep-alive connections; acks/s and
//!   p50/p99 ack latency for hookgate (durable, SQLite `synchronous=FULL`) and for a bare axum
//!   handler answering 204, then hookgate's latency at half its measured rate.
//! - `delivery`: callbacks in, signed deliveries out to a local receiver answering 200;
//!   deliveries/s for N subscriptions, and end-to-end latency (ack → receiver) at a steady rate.
//! - `backlog`: memory (RSS) of a gateway holding a large backlog of pending deliveries.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::routing::post;
use clap::{Parser, Subcommand};
use hookgate::cli::twilio_request;
use hookgate::providers::Route;
use serde_json::json;
use tokio_util::sync::CancellationToken;

/// mimalloc: the hot path allocates small buffers across threads, where glibc's allocator spent
/// a sixth of the CPU time in a profile of the delivery benchmark.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(about = "hookgate benchmarks")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Inbound ack rate and latency against a bare handler.
    Inbound {
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        #[arg(long, default_value_t = 64)]
        connections: usize,
        /// `sqlite` (default) or a postgres:// server URL (a fresh database is made on it).
        #[arg(long)]
        database: Option<String>,
        /// Gateways sharing the database (PostgreSQL), load spread over them.
        #[arg(long, default_value_t = 1)]
        instances: usize,
    },
    /// Delivery throughput and end-to-end latency.
    Delivery {
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        #[arg(long, default_value_t = 64)]
        connections: usize,
        /// Steady rate for the latency run (callbacks/s).
        #[arg(long, default_value_t = 1000)]
        rate: u64,
        #[arg(long)]
        database: Option<String>,
        /// Subscription counts for the throughput runs.
        #[arg(long, value_delimiter = ',', default_value = "1,5")]
        subscriptions: Vec<usize>,
    },
    /// Resident memory with a backlog of pending deliveries.
    Backlog {
        #[arg(long, default_value_t = 1_000_000)]
        deliveries: usize,
        #[arg(long)]
        database: Option<String>,
    },
}

const TOKEN: &str = "bench-token";

struct Gateway {
    base: String,
    shutdown: CancellationToken,
    handle: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// A new, empty database: a SQLite file in `dir`, or a fresh database on the PostgreSQL server
/// `database` names.
async fn fresh_database(database: Option<&str>, dir: &std::path::Path) -> String {
    match database {
        Some(server) if server.starts_with("postgres") => {
            let name = format!(
                "hookgate_bench_{}",
                hookgate::event::prefixed_id("").to_lowercase()
            );
            hookgate::store::postgres::create_database(server, &name)
                .await
                .expect("create the benchmark database")
        }
        _ => {
            std::fs::create_dir_all(dir).expect("create the benchmark directory");
            format!("sqlite://{}", dir.join("bench.db").display())
        }
    }
}

async fn start_gateway(db: &str, extra: &[(&str, &str)]) -> Gateway {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut map = BTreeMap::new();
    for (k, v) in [
        ("database_url", db),
        ("admin_token", "bench-admin"),
        ("allow_http_targets", "true"),
        ("allow_private_targets", "127.0.0.0/8"),
    ] {
        map.insert(k.to_owned(), v.to_owned());
    }
    for (k, v) in extra {
        map.insert((*k).to_owned(), (*v).to_owned());
    }
    map.insert("listen".into(), addr.to_string());
    let config = hookgate::config::Config::from_map(&map).unwrap();
    let shutdown = CancellationToken::new();
    let handle = tokio::spawn(hookgate::run(config, listener, shutdown.clone()));
    let base = format!("http://{addr}");
    let client = reqwest::Client::new();
    while client.get(format!("{base}/readyz")).send().await.is_err() {
        if handle.is_finished() {
            panic!("the gateway did not start: {:?}", handle.await);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let admin = |m: reqwest::Method, p: &str, b: serde_json::Value| {
        client
            .request(m, format!("{base}{p}"))
            .bearer_auth("bench-admin")
            .json(&b)
            .send()
    };
    // (A second instance on the same database finds the tenant there: 409, fine.)
    admin(reqwest::Method::POST, "/v1/tenants", json!({"id": "bench"}))
        .await
        .unwrap();
    admin(
        reqwest::Method::PUT,
        "/v1/tenants/bench/providers/twilio",
        json!({"auth_tokens": [TOKEN]}),
    )
    .await
    .unwrap();
    Gateway {
        base,
        shutdown,
        handle,
    }
}

impl Gateway {
    async fn subscribe(&self, url: &str) {
        let r = reqwest::Client::new()
            .post(format!("{}/v1/tenants/bench/subscriptions", self.base))
            .bearer_auth("bench-admin")
            .json(&json!({"url": url}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    async fn stop(self) {
        self.shutdown.cancel();
        let _ = self.handle.await;
    }
}

/// Serves `app` on a loopback port until the token is cancelled; returns its base URL.
async fn serve(app: axum::Router) -> (String, CancellationToken) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let stop = CancellationToken::new();
    let s = stop.clone();
    tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(s.cancelled_owned())
            .await
            .unwrap();
    });
    (base, stop)
}

/// A bare axum server answering 204 on the status route (the baseline).
async fn start_bare() -> (String, CancellationToken) {
    let app = axum::Router::new().route(
        Route::TwilioStatus.path(),
        post(|_body: axum::body::Bytes| async { axum::http::StatusCode::NO_CONTENT }),
    );
    serve(app).await
}

struct Stats {
    count: usize,
    elapsed: Duration,
    lat: Vec<Duration>,
    /// Send and ack time of each callback, by call id (for end-to-end latency).
    acks: Vec<Sent>,
}

impl Stats {
    fn rate(&self) -> f64 {
        self.count as f64 / self.elapsed.as_secs_f64()
    }
    fn pct(&mut self, p: f64) -> Duration {
        pct(&mut self.lat, p)
    }
}

fn pct(v: &mut [Duration], p: f64) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    v.sort_unstable();
    v[((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1]
}

static SEQ: AtomicU64 = AtomicU64::new(0);

/// One acknowledged callback: its call id, when it was sent and when the ack arrived.
struct Sent {
    sid: String,
    sent: Instant,
    acked: Instant,
}

async fn send_one(client: &reqwest::Client, base: &str) -> Option<Sent> {
    let sid = format!(
        "CA{:032x}",
        SEQ.fetch_add(1, Ordering::Relaxed) as u128 | ((std::process::id() as u128) << 64)
    );
    let req = twilio_request(Route::TwilioStatus, "bench", TOKEN, base, "completed", &sid);
    let mut b = client
        .post(format!("{base}{}", req.path_and_query))
        .body(req.body);
    for (k, v) in &req.headers {
        b = b.header(k, v);
    }
    let t = Instant::now();
    let r = b.send().await.ok()?;
    let ok = r.status().is_success();
    let _ = r.bytes().await;
    ok.then(|| Sent {
        sid,
        sent: t,
        acked: Instant::now(),
    })
}

/// As many callbacks as `connections` workers can send in `dur`.
async fn closed_loop(bases: &[String], connections: usize, dur: Duration) -> Stats {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(connections)
        .build()
        .unwrap();
    let start = Instant::now();
    let deadline = start + dur;
    let mut tasks = Vec::new();
    for i in 0..connections {
        let client = client.clone();
        let base = bases[i % bases.len()].clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut acks = Vec::new();
            while Instant::now() < deadline {
                if let Some(sent) = send_one(&client, &base).await {
                    lat.push(sent.acked - sent.sent);
                    acks.push(sent);
                }
            }
            (lat, acks)
        }));
    }
    let mut stats = Stats {
        count: 0,
        elapsed: Duration::ZERO,
        lat: Vec::new(),
        acks: Vec::new(),
    };
    for t in tasks {
        let (l, a) = t.await.unwrap();
        stats.lat.extend(l);
        stats.acks.extend(a);
    }
    stats.elapsed = start.elapsed();
    stats.count = stats.lat.len();
    stats
}

/// A steady `rate` of callbacks for `dur`.
async fn open_loop(base: &str, rate: f64, dur: Duration) -> Stats {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()
        .unwrap();
    let start = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let out = Arc::new(Mutex::new((Vec::new(), Vec::new())));
    let mut tasks = tokio::task::JoinSet::new();
    while start.elapsed() < dur {
        tick.tick().await;
        let client = client.clone();
        let base = base.to_owned();
        let out = out.clone();
        tasks.spawn(async move {
            if let Some(sent) = send_one(&client, &base).await {
                let mut o = out.lock().unwrap();
                o.0.push(sent.acked - sent.sent);
                o.1.push(sent);
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let (lat, acks) = std::mem::take(&mut *out.lock().unwrap());
    Stats {
        count: lat.len(),
        elapsed: start.elapsed(),
        lat,
        acks,
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

async fn inbound(seconds: u64, connections: usize, database: Option<String>, instances: usize) {
    let dur = Duration::from_secs(seconds);
    let (bare, stop) = start_bare().await;
    let bare = [bare];
    let _ = closed_loop(&bare, connections, Duration::from_secs(1)).await; // warm-up
    let mut base_stats = closed_loop(&bare, connections, dur).await;
    stop.cancel();
    let dir = tempfile::tempdir().unwrap();
    let db = fresh_database(database.as_deref(), dir.path()).await;
    let mut gws = Vec::new();
    for _ in 0..instances.max(1) {
        gws.push(start_gateway(&db, &[]).await);
    }
    let bases: Vec<String> = gws.iter().map(|g| g.base.clone()).collect();
    let _ = closed_loop(&bases, connections, Duration::from_secs(1)).await;
    let mut hg = closed_loop(&bases, connections, dur).await;
    let half = hg.rate() / 2.0;
    let mut steady = open_loop(&bases[0], half, dur).await;
    let backend = if db.starts_with("sqlite") {
        "SQLite"
    } else {
        "PostgreSQL"
    };
    println!(
        "inbound benchmark: {backend}, {} instance(s), {connections} keep-alive connections, {seconds} s per run",
        gws.len()
    );
    println!("| run | acks/s | p50 | p99 |\n|---|---|---|---|");
    println!(
        "| bare axum 204 | {:.0} | {} | {} |",
        base_stats.rate(),
        ms(base_stats.pct(0.5)),
        ms(base_stats.pct(0.99))
    );
    println!(
        "| hookgate (durable) | {:.0} | {} | {} |",
        hg.rate(),
        ms(hg.pct(0.5)),
        ms(hg.pct(0.99))
    );
    println!(
        "| hookgate at {half:.0}/s (half) | {:.0} | {} | {} |",
        steady.rate(),
        ms(steady.pct(0.5)),
        ms(steady.pct(0.99))
    );
    println!(
        "ratio hookgate/bare: {:.1}%",
        100.0 * hg.rate() / base_stats.rate()
    );
    for gw in gws {
        gw.stop().await;
    }
}

/// A receiver answering 200 that records when each event arrived (by call id).
async fn start_receiver() -> (String, Arc<Mutex<Vec<(String, Instant)>>>) {
    let seen: Arc<Mutex<Vec<(String, Instant)>>> = Arc::default();
    let s = seen.clone();
    let app = axum::Router::new().route(
        "/hook",
        post(move |body: axum::body::Bytes| {
            let s = s.clone();
            async move {
                let at = Instant::now();
                let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                let id = v["data"]["call_id"].as_str().unwrap_or("").to_owned();
                s.lock().unwrap().push((id, at));
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, seen)
}

async fn wait_count(seen: &Mutex<Vec<(String, Instant)>>, n: usize, limit: Duration) -> Instant {
    let deadline = Instant::now() + limit;
    loop {
        let len = seen.lock().unwrap().len();
        if len >= n || Instant::now() > deadline {
            return seen
                .lock()
                .unwrap()
                .last()
                .map(|l| l.1)
                .unwrap_or_else(Instant::now);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The baseline of the delivery benchmark: answers each callback after POSTing its body to
/// `url` `copies` times (concurrently), with nothing in between.
async fn start_relay(url: String, copies: usize) -> (String, CancellationToken) {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()
        .unwrap();
    let app = axum::Router::new().route(
        Route::TwilioStatus.path(),
        post(move |body: axum::body::Bytes| {
            let (client, url) = (client.clone(), url.clone());
            async move {
                let sends = (0..copies).map(|_| client.post(&url).body(body.clone()).send());
                for r in futures_util::future::join_all(sends).await {
                    if !r.is_ok_and(|r| r.status().is_success()) {
                        return axum::http::StatusCode::BAD_GATEWAY;
                    }
                }
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    serve(app).await
}

/// Waits for every delivery of a closed-loop run, prints its row, and returns (callbacks/s,
/// deliveries/s).
async fn report_deliveries(
    run: &str,
    stats: &Stats,
    copies: usize,
    start: Instant,
    seen: &Mutex<Vec<(String, Instant)>>,
) -> (f64, f64) {
    let expected = stats.count * copies;
    let last = wait_count(seen, expected, Duration::from_secs(120)).await;
    let delivered = seen.lock().unwrap().len();
    let span = last.duration_since(start).max(stats.elapsed);
    let rate = delivered as f64 / span.as_secs_f64();
    println!(
        "| {run} | {:.0} | {rate:.0} | {:.1} s ({delivered}/{expected}) |",
        stats.rate(),
        span.as_secs_f64()
    );
    (stats.rate(), rate)
}

async fn delivery(
    seconds: u64,
    connections: usize,
    rate: u64,
    database: Option<String>,
    subscriptions: Vec<usize>,
) {
    let dur = Duration::from_secs(seconds);
    println!("delivery benchmark: {connections} connections in, {seconds} s per run");
    println!(
        "| run | callbacks/s accepted | deliveries/s | all delivered after |\n|---|---|---|---|"
    );
    let dir = tempfile::tempdir().unwrap();
    for subs in subscriptions {
        // The baseline: the same traffic through a bare relay (no verification, storage,
        // signing or retries), so the ratio says what hookgate's guarantees cost on this machine.
        let (url, seen) = start_receiver().await;
        let (relay, stop) = start_relay(url, subs).await;
        let start = Instant::now();
        let stats = closed_loop(std::slice::from_ref(&relay), connections, dur).await;
        let bare = report_deliveries(
            &format!("bare relay to {subs} URL(s)"),
            &stats,
            subs,
            start,
            &seen,
        )
        .await;
        stop.cancel();

        let db = fresh_database(database.as_deref(), &dir.path().join(format!("s{subs}"))).await;
        let gw = start_gateway(&db, &[]).await;
        let (url, seen) = start_receiver().await;
        for _ in 0..subs {
            gw.subscribe(&url).await;
        }
        let start = Instant::now();
        let stats = closed_loop(std::slice::from_ref(&gw.base), connections, dur).await;
        let hg = report_deliveries(
            &format!("hookgate, {subs} subscription(s)"),
            &stats,
            subs,
            start,
            &seen,
        )
        .await;
        println!(
            "| ratio hookgate/bare, {subs} | {:.1}% | {:.1}% | |",
            100.0 * hg.0 / bare.0,
            100.0 * hg.1 / bare.1
        );
        gw.stop().await;
    }
    let db = fresh_database(database.as_deref(), dir.path()).await;
    let gw = start_gateway(&db, &[]).await;
    let (url, seen) = start_receiver().await;
    gw.subscribe(&url).await;
    let stats = open_loop(&gw.base, rate as f64, dur).await;
    wait_count(&seen, stats.count, Duration::from_secs(30)).await;
    let arrivals: std::collections::HashMap<String, Instant> =
        seen.lock().unwrap().iter().cloned().collect();
    // From the ack: the provider's view (an event may reach the receiver before the ack
    // reaches the provider, which counts as 0). From the send: the whole path, ack included.
    let (mut from_ack, mut from_send, mut before_ack) = (Vec::new(), Vec::new(), 0usize);
    for s in &stats.acks {
        if let Some(a) = arrivals.get(&s.sid) {
            from_ack.push(a.saturating_duration_since(s.acked));
            from_send.push(a.saturating_duration_since(s.sent));
            before_ack += usize::from(*a < s.acked);
        }
    }
    let n = from_ack.len();
    println!(
        "end-to-end at {rate}/s for {seconds} s, {n}/{} events delivered:",
        stats.count
    );
    println!("| measured | p50 | p99 | max |\n|---|---|---|---|");
    println!(
        "| ack → receiver ({before_ack} arrived before the ack) | {} | {} | {} |",
        ms(pct(&mut from_ack, 0.5)),
        ms(pct(&mut from_ack, 0.99)),
        ms(pct(&mut from_ack, 1.0))
    );
    println!(
        "| callback sent → receiver | {} | {} | {} |",
        ms(pct(&mut from_send, 0.5)),
        ms(pct(&mut from_send, 0.99)),
        ms(pct(&mut from_send, 1.0))
    );
    gw.stop().await;
}

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

/// The gateway's own count of pending deliveries (its `/metrics` gauge).
async fn pending_deliveries(client: &reqwest::Client, base: &str) -> String {
    let text = match client.get(format!("{base}/metrics")).send().await {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    };
    text.lines()
        .find_map(|l| l.strip_prefix("hookgate_pending_deliveries "))
        .unwrap_or("?")
        .to_owned()
}

async fn backlog(deliveries: usize, database: Option<String>) {
    // The receiver is down: every delivery fails and is retried (every second for the first
    // minute, then parked for an hour), so the backlog only grows while the worker churns.
    let dir = tempfile::tempdir().unwrap();
    let db = fresh_database(database.as_deref(), dir.path()).await;
    let gw = start_gateway(&db, &[("retry_schedule", "1s,1s,1s,1s,1s,5s,10s,30s,1h")]).await;
    gw.subscribe("http://127.0.0.1:9/hook").await;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()
        .unwrap();
    println!("backlog benchmark: one subscription whose receiver refuses connections; RSS of the whole process (gateway and load generator)");
    println!(
        "| callbacks acknowledged | pending deliveries (gateway gauge) | RSS | elapsed |\n|---|---|---|---|"
    );
    let start = Instant::now();
    let row = |sent: String, pending: String| {
        println!(
            "| {sent} | {pending} | {:.0} MiB | {:.0} s |",
            rss_mib(),
            start.elapsed().as_secs_f64()
        )
    };
    row("0".into(), pending_deliveries(&client, &gw.base).await);
    let mut sent = 0usize;
    let step = (deliveries / 10).max(1);
    let mut next_report = step;
    while sent < deliveries {
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..64 {
            let client = client.clone();
            let base = gw.base.clone();
            set.spawn(async move {
                let mut n = 0;
                for _ in 0..50 {
                    if send_one(&client, &base).await.is_some() {
                        n += 1;
                    }
                }
                n
            });
        }
        while let Some(n) = set.join_next().await {
            sent += n.unwrap_or(0);
        }
        if sent >= next_report {
            row(
                sent.to_string(),
                pending_deliveries(&client, &gw.base).await,
            );
            next_report += step;
        }
    }
    tokio::time::sleep(Duration::from_secs(30)).await;
    row(
        format!("{sent} (after 30 s more of retrying)"),
        pending_deliveries(&client, &gw.base).await,
    );
    gw.stop().await;
}

fn main() {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        match cli.cmd {
            Cmd::Inbound {
                seconds,
                connections,
                database,
                instances,
            } => inbound(seconds, connections, database, instances).await,
            Cmd::Delivery {
                seconds,
                connections,
                rate,
                database,
                subscriptions,
            } => delivery(seconds, connections, rate, database, subscriptions).await,
            Cmd::Backlog {
                deliveries,
                database,
            } => backlog(deliveries, database).await,
        }
    });
}
