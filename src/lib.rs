//! hookgate: an inbound provider webhook gateway. Telephony and payment providers call
//! tenant-routed URLs; each callback is verified with the provider's own scheme, deduplicated,
//! normalized into one event, stored durably, and delivered as a signed webhook.
//!
//! [`run`] is the entry point used by the binary and by the tests: it takes a bound listener and
//! a cancellation token, so tests start the real server on port 0.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub mod cli;
pub mod config;
pub mod crypto;
pub mod delivery;
pub mod error;
pub mod event;
pub mod http;
pub mod metrics;
pub mod providers;
pub mod store;

use config::Config;

/// Installs the tracing subscriber (`RUST_LOG`, default `hookgate=info`; JSON lines when
/// `HOOKGATE_LOG_FORMAT=json`).
pub fn init_tracing(log_format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("hookgate=info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if log_format.eq_ignore_ascii_case("json") {
        let _ = builder.json().try_init();
    } else {
        let _ = builder.try_init();
    }
}

/// Resolves the admin token's hash: the configured token, or one generated at first start and
/// printed once (only its hash is stored).
async fn admin_hash(config: &Config, store: &store::DynStore) -> anyhow::Result<String> {
    if let Some(token) = &config.admin_token {
        return Ok(crypto::sha256_hex(token.as_bytes()));
    }
    let candidate = crypto::random_token("hgadm_");
    let hash = crypto::sha256_hex(candidate.as_bytes());
    let stored = store.setting_or_insert("admin_token_hash", &hash).await?;
    if stored == hash {
        // First start: the only time this token is ever shown.
        println!("hookgate: generated admin token (shown once, store it now): {candidate}");
    }
    Ok(stored)
}

/// Runs the gateway on `listener` until `shutdown` is cancelled, then stops taking requests,
/// lets in-flight requests and writes finish, and returns.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let store = store::open(&config).await?;
    let admin_hash = admin_hash(&config, &store).await?;
    store.release_own_leases().await?;
    let metrics = Arc::new(metrics::Metrics::new());
    let worker_stop = CancellationToken::new();
    let (delivery, delivery_done) = delivery::Delivery::start(
        store.clone(),
        delivery::DeliverySettings {
            policy: delivery::retry::RetryPolicy::new(config.retry_schedule.clone()),
            targets: http::target_policy(&config),
            timeout: config.delivery_timeout,
            poll_interval: config.poll_interval,
            sealer: crypto::Sealer::new(config.master_key),
            metrics: metrics.clone(),
        },
        worker_stop.clone(),
    );
    let waker = delivery.clone();
    store.watch_pending(Arc::new(move || waker.wake()), worker_stop.clone());
    let (to_worker, held) = (delivery.clone(), delivery.clone());
    let (batcher, writer) = store::batcher::Batcher::spawn(
        store.clone(),
        metrics.clone(),
        move |jobs| to_worker.submit(jobs),
        move || held.spilled(),
    );
    let retention = spawn_retention(store.clone(), config.retention, shutdown.clone());
    let state = Arc::new(http::AppState::new(
        config, store, batcher, admin_hash, delivery, metrics,
    ));
    let app = http::router(state.clone());
    tracing::info!(addr = %listener.local_addr()?, "hookgate listening");
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown.clone().cancelled_owned())
    .await?;
    // Every handler has returned; dropping the last batcher handle lets the writer drain.
    drop(state);
    let _ = writer.await;
    // Then the worker stops claiming and lets in-flight attempts finish and be recorded.
    worker_stop.cancel();
    let _ = delivery_done.await;
    retention.abort();
    tracing::info!("hookgate stopped");
    Ok(())
}

/// Deletes what is older than the retention period, hourly.
fn spawn_retention(
    store: store::DynStore,
    retention: std::time::Duration,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(3600));
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {
                    let before = store::now_ms() - retention.as_millis() as i64;
                    match store.purge(before).await {
                        Ok(n) if n > 0 => tracing::info!(rows = n, "retention purge"),
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = %e, "retention purge failed"),
                    }
                }
            }
        }
    })
}
