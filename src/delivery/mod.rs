//! Outbound delivery. Deliveries are created in the ingest transaction (outbox) and leased to
//! this instance; right after commit they are handed to [`Delivery::submit`], so the first
//! attempt leaves within milliseconds. A poller claims what is due otherwise (retries, work left
//! by a dead instance, chains unblocked) — the fallback, not the hot path.
//!
//! Per subscription at most [`PER_SUBSCRIPTION`] attempts run at once, so a slow or dead
//! receiver only ever occupies its own slots. Per call or payment, at most one delivery is in
//! flight: the store only hands out the head of each chain, and the next one when it finishes.
//! Results are recorded in batches (one transaction for many attempts).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, Notify, RwLock};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::crypto::Sealer;
use crate::store::{now_ms, AttemptRecord, DynStore, Job};

pub mod attempt;
pub mod client;
pub mod retry;
pub mod sign;

use attempt::Target;
use client::TargetPolicy;
use retry::RetryPolicy;

/// Attempts in flight at once for one subscription.
pub const PER_SUBSCRIPTION: usize = 64;
/// Jobs queued in memory behind one subscription's in-flight attempts at most; more are handed
/// back to the database (their leases released) and claimed when the subscription has room.
pub const MAX_WAITING: usize = 4 * PER_SUBSCRIPTION;
/// Jobs held in memory (in flight or queued) at most; the rest wait in the database.
pub const MAX_IN_MEMORY: usize = 20_000;
/// Deliveries claimed per poll.
const CLAIM_BATCH: usize = 500;
/// Attempt results recorded per transaction at most.
const RECORD_BATCH: usize = 512;
/// How long a subscription read from the database is reused.
const TARGET_TTL: Duration = Duration::from_secs(1);

#[derive(Default)]
struct SubQueue {
    inflight: usize,
    waiting: VecDeque<(Job, Instant)>,
    /// Part of this subscription's backlog was handed back to the database: until the poller
    /// has claimed it all, new jobs go there too (first in, first out).
    spilled: bool,
}

/// A resolved subscription target and when it was loaded (`None` = gone).
type CachedTarget = (Instant, Option<Arc<Target>>);

struct Inner {
    store: DynStore,
    client: reqwest::Client,
    targets: Arc<TargetPolicy>,
    policy: RetryPolicy,
    sealer: Sealer,
    lease: Duration,
    cache: RwLock<HashMap<String, CachedTarget>>,
    queues: Mutex<HashMap<String, SubQueue>>,
    in_memory: AtomicUsize,
    /// Taken (closed) at shutdown once every in-flight attempt has reported.
    results: Mutex<Option<mpsc::UnboundedSender<AttemptRecord>>>,
    /// Deliveries handed back to the database, released in batches by one task.
    releases: mpsc::UnboundedSender<String>,
    wake: Notify,
    tracker: TaskTracker,
    shutdown: CancellationToken,
}

/// Handle to this instance's delivery worker.
#[derive(Clone)]
pub struct Delivery {
    inner: Arc<Inner>,
}

/// Settings of the worker, from the configuration.
pub struct DeliverySettings {
    pub policy: RetryPolicy,
    pub targets: TargetPolicy,
    pub timeout: Duration,
    pub poll_interval: Duration,
    pub sealer: Sealer,
    pub metrics: Arc<crate::metrics::Metrics>,
}

impl Delivery {
    /// Starts the poller and the result recorder. Returns the handle and a task that ends when
    /// the worker has stopped (after `shutdown`, once in-flight attempts are recorded).
    pub fn start(
        store: DynStore,
        s: DeliverySettings,
        shutdown: CancellationToken,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let (releases, to_release) = mpsc::unbounded_channel();
        tokio::spawn(release_loop(store.clone(), to_release));
        let targets = Arc::new(s.targets);
        let inner = Arc::new(Inner {
            client: client::build_client(targets.clone(), s.timeout),
            targets,
            store,
            policy: s.policy,
            sealer: s.sealer,
            lease: s.timeout + Duration::from_secs(5),
            cache: RwLock::new(HashMap::new()),
            queues: Mutex::new(HashMap::new()),
            in_memory: AtomicUsize::new(0),
            results: Mutex::new(Some(tx)),
            releases,
            wake: Notify::new(),
            tracker: TaskTracker::new(),
            shutdown,
        });
        let me = Self { inner };
        let poller = tokio::spawn(me.clone().poll_loop(s.poll_interval));
        let recorder = tokio::spawn(record_loop(
            me.inner.store.clone(),
            s.metrics,
            Arc::downgrade(&me.inner),
            rx,
        ));
        let stopper = me.clone();
        let done = tokio::spawn(async move {
            stopper.inner.shutdown.cancelled().await;
            let _ = poller.await;
            stopper.inner.tracker.close();
            stopper.inner.tracker.wait().await;
            // Every attempt has reported: close the channel; the recorder drains it and stops.
            stopper
                .inner
                .results
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take();
            drop(stopper);
            let _ = recorder.await;
        });
        (me, done)
    }

    /// Queues jobs leased to this instance.
    pub fn submit(&self, jobs: Vec<Job>) {
        self.enqueue(jobs, false);
    }

    /// Queues jobs; `claimed` when the poller took them from the database in due order.
    fn enqueue(&self, jobs: Vec<Job>, claimed: bool) {
        if self.inner.shutdown.is_cancelled() {
            return; // their leases expire and the next start sends them
        }
        let mut overflow = Vec::new();
        {
            let mut queues = self.inner.queues.lock().unwrap_or_else(|p| p.into_inner());
            for job in jobs {
                let q = queues.entry(job.subscription_id.clone()).or_default();
                let room = self.inner.in_memory.load(Ordering::Relaxed) < MAX_IN_MEMORY;
                if q.spilled && !claimed {
                    overflow.push(job.delivery_id);
                } else if q.inflight < PER_SUBSCRIPTION {
                    q.inflight += 1;
                    self.inner.in_memory.fetch_add(1, Ordering::Relaxed);
                    self.spawn(job, false);
                } else if q.waiting.len() < MAX_WAITING && room {
                    self.inner.in_memory.fetch_add(1, Ordering::Relaxed);
                    q.waiting.push_back((job, Instant::now()));
                } else {
                    q.spilled = true;
                    overflow.push(job.delivery_id);
                }
            }
        }
        // A slow receiver's backlog waits in the database, not in memory.
        for id in overflow {
            let _ = self.inner.releases.send(id);
        }
    }

    /// Subscriptions whose backlog waits in the database: their new deliveries go there too.
    pub fn spilled(&self) -> std::collections::HashSet<String> {
        let queues = self.inner.queues.lock().unwrap_or_else(|p| p.into_inner());
        queues
            .iter()
            .filter(|(_, q)| q.spilled)
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Wakes the poller (something became due: a recovery, a redelivery, a re-enabled target).
    pub fn wake(&self) {
        self.inner.wake.notify_one();
    }

    /// Forgets a cached subscription after it changed.
    pub async fn invalidate(&self, subscription: &str) {
        self.inner.cache.write().await.remove(subscription);
    }

    /// Runs one attempt now and records it before returning (the `test` route).
    pub async fn attempt_now(&self, job: Job) -> Result<AttemptRecord, crate::store::StoreError> {
        let target = self.target(&job.subscription_id).await?;
        let rec = attempt::attempt(
            &self.inner.client,
            &self.inner.targets,
            &self.inner.policy,
            target,
            job,
        )
        .await;
        let next = self
            .inner
            .store
            .record_attempts(std::slice::from_ref(&rec))
            .await?;
        self.submit(next);
        Ok(rec)
    }

    fn spawn(&self, job: Job, renew: bool) {
        let me = self.clone();
        self.inner.tracker.spawn(async move {
            let sub = job.subscription_id.clone();
            // A job that waited long for a slot may have outlived its lease: renew it, and drop
            // it if another instance has taken it over.
            let owned = !renew
                || me
                    .inner
                    .store
                    .renew_lease(&job.delivery_id)
                    .await
                    .unwrap_or(false);
            if owned {
                let rec = match me.target(&sub).await {
                    Ok(target) => {
                        attempt::attempt(
                            &me.inner.client,
                            &me.inner.targets,
                            &me.inner.policy,
                            target,
                            job,
                        )
                        .await
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot read subscription; retrying later");
                        AttemptRecord {
                            job,
                            status_code: None,
                            error: Some("storage unavailable".into()),
                            response_body: None,
                            latency_ms: 0,
                            at: now_ms(),
                            finish: crate::store::Finish::Retry {
                                next_at: now_ms() + 5_000,
                            },
                        }
                    }
                };
                if let Some(tx) = me
                    .inner
                    .results
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .as_ref()
                {
                    let _ = tx.send(rec);
                }
            }
            me.release_slot(&sub);
        });
    }

    fn release_slot(&self, sub: &str) {
        self.inner.in_memory.fetch_sub(1, Ordering::Relaxed);
        let mut queues = self.inner.queues.lock().unwrap_or_else(|p| p.into_inner());
        let Some(q) = queues.get_mut(sub) else { return };
        q.inflight -= 1;
        if !self.inner.shutdown.is_cancelled() {
            if let Some((job, since)) = q.waiting.pop_front() {
                q.inflight += 1;
                self.spawn(job, since.elapsed() > self.inner.lease / 2);
                return;
            }
        }
        if q.inflight == 0 && q.waiting.is_empty() {
            if q.spilled {
                self.inner.wake.notify_one(); // its backlog in the database is next
            } else {
                queues.remove(sub);
            }
        }
    }

    /// The subscription's URL and signing keys, from a short-lived cache.
    async fn target(&self, id: &str) -> Result<Option<Arc<Target>>, crate::store::StoreError> {
        if let Some((at, t)) = self.inner.cache.read().await.get(id) {
            if at.elapsed() < TARGET_TTL {
                return Ok(t.clone());
            }
        }
        let row = self.inner.store.subscription_by_id(id).await?;
        let target = match row {
            None => None,
            Some(s) => {
                let now = now_ms();
                let mut keys = Vec::new();
                let mut secrets = vec![s.secret.clone()];
                if let (Some(old), Some(until)) = (&s.old_secret, s.old_secret_expires_at) {
                    if until > now {
                        secrets.push(old.clone());
                    }
                }
                for sealed in secrets {
                    let secret = self
                        .inner
                        .sealer
                        .open(&sealed)
                        .map_err(crate::store::StoreError::Unavailable)?;
                    keys.push(
                        sign::secret_key(&secret).map_err(crate::store::StoreError::Unavailable)?,
                    );
                }
                Some(Arc::new(Target {
                    url: s.url,
                    enabled: s.enabled,
                    keys,
                }))
            }
        };
        let mut cache = self.inner.cache.write().await;
        if cache.len() > 50_000 {
            cache.clear();
        }
        cache.insert(id.to_owned(), (Instant::now(), target.clone()));
        Ok(target)
    }

    /// Claims due deliveries: at start, every poll interval, and when woken.
    async fn poll_loop(self, interval: Duration) {
        loop {
            let room = MAX_IN_MEMORY.saturating_sub(self.inner.in_memory.load(Ordering::Relaxed));
            let mut claimed_full = false;
            if room > 0 {
                let saturated: Vec<String> = {
                    let queues = self.inner.queues.lock().unwrap_or_else(|p| p.into_inner());
                    queues
                        .iter()
                        .filter(|(_, q)| !q.waiting.is_empty())
                        .map(|(k, _)| k.clone())
                        .collect()
                };
                let limit = room.min(CLAIM_BATCH);
                match self.inner.store.claim_due(limit as i64, &saturated).await {
                    Ok(jobs) => {
                        claimed_full = jobs.len() == limit;
                        if !claimed_full {
                            // Nothing more is due for a spilled subscription that was asked
                            // for and got nothing: its backlog is back in memory or sent.
                            let got: std::collections::HashSet<&str> =
                                jobs.iter().map(|j| j.subscription_id.as_str()).collect();
                            let mut queues =
                                self.inner.queues.lock().unwrap_or_else(|p| p.into_inner());
                            for (sub, q) in queues.iter_mut() {
                                if q.spilled
                                    && !got.contains(sub.as_str())
                                    && !saturated.contains(sub)
                                {
                                    q.spilled = false;
                                }
                            }
                            queues.retain(|_, q| {
                                q.inflight > 0 || !q.waiting.is_empty() || q.spilled
                            });
                        }
                        self.enqueue(jobs, true);
                    }
                    Err(e) => tracing::warn!(error = %e, "claiming due deliveries failed"),
                }
            }
            if claimed_full {
                tokio::task::yield_now().await;
                if self.inner.shutdown.is_cancelled() {
                    return;
                }
                continue;
            }
            tokio::select! {
                _ = self.inner.shutdown.cancelled() => return,
                _ = self.inner.wake.notified() => {}
                _ = tokio::time::sleep(interval) => {}
            }
        }
    }
}

/// Releases the leases of deliveries handed back to the database, as many per transaction as
/// have gathered (a failure leaves them to expire instead). Ends with the worker.
async fn release_loop(store: DynStore, mut rx: mpsc::UnboundedReceiver<String>) {
    let mut ids = Vec::new();
    while rx.recv_many(&mut ids, 4096).await > 0 {
        if let Err(e) = store.release_leases(&ids).await {
            tracing::warn!(error = %e, "releasing leases failed; they expire instead");
        }
        ids.clear();
    }
}

/// Records finished attempts in batches, then submits the chains' next deliveries.
async fn record_loop(
    store: DynStore,
    metrics: Arc<crate::metrics::Metrics>,
    worker: std::sync::Weak<Inner>,
    mut rx: mpsc::UnboundedReceiver<AttemptRecord>,
) {
    let mut buf = Vec::with_capacity(RECORD_BATCH);
    while rx.recv_many(&mut buf, RECORD_BATCH).await > 0 {
        for r in &buf {
            let accepted = crate::event::id_time_ms(&r.job.event_id).unwrap_or(r.at);
            metrics.attempted(&r.finish, r.latency_ms, r.at, accepted);
        }
        let mut tries = 0;
        loop {
            match store.record_attempts(&buf).await {
                Ok(next) => {
                    if let Some(inner) = worker.upgrade() {
                        Delivery { inner }.submit(next);
                    }
                    break;
                }
                Err(e) if tries < 20 => {
                    tries += 1;
                    tracing::warn!(error = %e, "recording attempts failed; retrying");
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Err(e) => {
                    // The deliveries stay pending; their leases expire and they are sent again
                    // (at least once).
                    tracing::error!(error = %e, batch = buf.len(), "giving up recording attempts");
                    break;
                }
            }
        }
        buf.clear();
    }
}
