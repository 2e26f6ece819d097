//! Storage behind a trait of domain operations. SQL lives only in this module: the statements
//! shared by both backends are in `common.rs` (written with `$N` placeholders, which both SQLite
//! and PostgreSQL accept) and included by each backend, so each backend has concrete types and
//! there is one copy of every statement.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::event::NewEvent;

pub mod batcher;
pub mod postgres;
pub mod sqlite;

/// A subscription whose last this-many deliveries failed for good is disabled.
pub const DISABLE_AFTER_FAILURES: i64 = 10;

/// Milliseconds since the Unix epoch: how times are stored.
pub fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// Converts stored milliseconds to a UTC time.
pub fn from_ms(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} already exists")]
    Conflict(&'static str),
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("storage unavailable: {0:#}")]
    Unavailable(#[from] anyhow::Error),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        Self::Unavailable(e.into())
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

#[derive(Clone, Debug)]
pub struct Tenant {
    pub id: String,
    pub name: String,
    pub created_at: i64,
}

/// What happened to one inbound callback, to be written in the ingest transaction.
#[derive(Clone, Debug)]
pub struct IngestItem {
    pub tenant_id: String,
    pub provider: &'static str,
    pub route: &'static str,
    pub received_at: i64,
    pub remote_addr: Option<String>,
    pub kind: IngestKind,
}

/// The accepted variant carries the event inline: boxing it would add an allocation per
/// callback on the hot path for no gain (items live only until their batch commits).
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum IngestKind {
    /// Failed verification or could not be parsed: logged only.
    Rejected { reason: &'static str },
    /// Verified. Deduplicated on `dedup_key`; `event` is `None` when nothing maps.
    Accepted {
        dedup_key: String,
        /// The status the provider is answered with (replayed to duplicates).
        status: u16,
        event: Option<NewEvent>,
        /// Reason logged when `event` is `None` (e.g. `ignored_event_type`).
        ignored_reason: Option<&'static str>,
        body: Vec<u8>,
    },
}

/// The committed result of one [`IngestItem`].
#[derive(Clone, Debug, PartialEq)]
pub enum IngestResult {
    Rejected,
    /// First time seen. `event_id` is `None` when nothing was emitted.
    New {
        event_id: Option<String>,
        status: u16,
    },
    /// Seen before: answer as the first time was answered.
    Duplicate {
        event_id: Option<String>,
        status: u16,
    },
}

/// A delivery to attempt now, leased to this instance.
#[derive(Clone, Debug)]
pub struct Job {
    pub delivery_id: String,
    pub event_id: String,
    pub tenant_id: String,
    pub subscription_id: String,
    pub ordering_key: String,
    /// The number of the attempt about to be made (1-based).
    pub attempt: u32,
    /// The event JSON (the webhook body).
    pub body: Arc<str>,
    /// The event type (the `x-hookgate-event` header).
    pub event_type: String,
}

/// The results of one committed ingest batch.
#[derive(Debug, Default)]
pub struct IngestBatchResult {
    pub results: Vec<IngestResult>,
    /// Deliveries created at the head of their chain, leased to this instance: send them now.
    pub jobs: Vec<Job>,
}

/// How an attempt ends its delivery.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Finish {
    Succeeded,
    /// Failed for good.
    Failed,
    /// 410 Gone: failed, and the subscription is disabled.
    Gone,
    /// Pending again; due at this time (unix ms).
    Retry {
        next_at: i64,
    },
    /// Not attempted: the subscription is gone or disabled.
    Dropped,
}

/// One finished attempt, to be recorded.
#[derive(Clone, Debug)]
pub struct AttemptRecord {
    pub job: Job,
    pub status_code: Option<u16>,
    pub error: Option<String>,
    pub response_body: Option<String>,
    pub latency_ms: i64,
    pub at: i64,
    pub finish: Finish,
}

/// A subscription as stored (secrets sealed).
#[derive(Clone, Debug)]
pub struct SubscriptionRow {
    pub id: String,
    pub tenant_id: String,
    pub url: String,
    pub event_types: Vec<String>,
    pub description: Option<String>,
    pub enabled: bool,
    pub secret: String,
    pub old_secret: Option<String>,
    pub old_secret_expires_at: Option<i64>,
    pub failed_streak: i64,
    pub disabled_reason: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A delivery as listed.
#[derive(Clone, Debug, serde::Serialize)]
pub struct DeliveryRow {
    #[serde(skip)]
    pub seq: i64,
    pub id: String,
    pub event_id: String,
    pub subscription_id: String,
    pub status: String,
    pub attempts: i64,
    pub next_attempt_at: Option<String>,
    pub last_status_code: Option<i64>,
    pub last_error: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

/// An attempt as listed.
#[derive(Clone, Debug, serde::Serialize)]
pub struct AttemptRow {
    pub id: String,
    pub delivery_id: String,
    pub event_id: String,
    pub subscription_id: String,
    pub attempt: i64,
    pub status_code: Option<i64>,
    pub error: Option<String>,
    pub response_body: Option<String>,
    pub latency_ms: i64,
    pub created_at: String,
}

/// One entry of the inbound request log.
#[derive(Clone, Debug, serde::Serialize)]
pub struct InboundEntry {
    #[serde(skip)]
    pub seq: i64,
    pub id: String,
    pub provider: String,
    pub route: String,
    pub outcome: String,
    pub reason: Option<String>,
    pub remote_addr: Option<String>,
    pub event_id: Option<String>,
    pub received_at: String,
}

/// A stored event: its feed position and its JSON.
#[derive(Clone, Debug)]
pub struct StoredEvent {
    pub seq: i64,
    pub body: String,
}

/// A page request: items strictly after `after` (a feed position), at most `limit`.
#[derive(Clone, Copy, Debug)]
pub struct Page {
    pub after: Option<i64>,
    pub limit: i64,
}

/// The domain operations of hookgate's storage.
#[async_trait]
pub trait Store: DeliveryStore + Send + Sync + 'static {
    /// Is the database reachable?
    async fn ping(&self) -> StoreResult<()>;

    /// Returns the stored setting, inserting `value` first when absent.
    async fn setting_or_insert(&self, key: &str, value: &str) -> StoreResult<String>;

    async fn create_tenant(&self, tenant: &Tenant, api_key_hash: &str) -> StoreResult<()>;
    async fn get_tenant(&self, id: &str) -> StoreResult<Option<Tenant>>;
    async fn tenant_by_key_hash(&self, hash: &str) -> StoreResult<Option<String>>;

    /// Stores a provider config (already sealed).
    async fn put_provider_config(
        &self,
        tenant: &str,
        provider: &str,
        sealed: &str,
    ) -> StoreResult<()>;
    async fn get_provider_config(
        &self,
        tenant: &str,
        provider: &str,
    ) -> StoreResult<Option<String>>;

    /// Commits every item in one transaction: inbound log, dedup key, subject state, event and
    /// its deliveries. All or nothing.
    async fn ingest_batch(&self, items: &[IngestItem]) -> StoreResult<IngestBatchResult> {
        self.ingest_batch_holding(items, &std::collections::HashSet::new())
            .await
    }
    /// As [`Store::ingest_batch`], but deliveries to the `held` subscriptions (whose backlog
    /// waits in the database) are stored unleased, for the poller to claim in order, instead of
    /// being returned as jobs.
    async fn ingest_batch_holding(
        &self,
        items: &[IngestItem],
        held: &std::collections::HashSet<String>,
    ) -> StoreResult<IngestBatchResult>;

    /// The event feed, oldest first.
    async fn list_events(
        &self,
        tenant: &str,
        event_type: Option<&str>,
        page: Page,
    ) -> StoreResult<Vec<StoredEvent>>;
    async fn get_event(&self, tenant: &str, id: &str) -> StoreResult<Option<StoredEvent>>;

    /// The inbound log, newest first.
    async fn list_inbound(
        &self,
        tenant: &str,
        outcome: Option<&str>,
        page: Page,
    ) -> StoreResult<Vec<InboundEntry>>;

    /// The gauges of `/metrics`: pending deliveries and disabled subscriptions.
    async fn gauges(&self) -> StoreResult<(i64, i64)>;

    /// Deletes events, inbound records and dedup keys older than `before_ms`.
    async fn purge(&self, before_ms: i64) -> StoreResult<u64>;
}

/// Subscriptions and the delivery queue.
#[async_trait]
pub trait DeliveryStore: Send + Sync + 'static {
    /// Calls `wake` whenever another instance sharing the database makes deliveries due, until
    /// `stop`. Does nothing where one process owns the database.
    fn watch_pending(
        &self,
        _wake: Arc<dyn Fn() + Send + Sync>,
        _stop: tokio_util::sync::CancellationToken,
    ) {
    }

    async fn create_subscription(&self, s: &SubscriptionRow) -> StoreResult<()>;
    async fn get_subscription(
        &self,
        tenant: &str,
        id: &str,
    ) -> StoreResult<Option<SubscriptionRow>>;
    /// A subscription by id alone (the delivery worker's view).
    async fn subscription_by_id(&self, id: &str) -> StoreResult<Option<SubscriptionRow>>;
    async fn list_subscriptions(
        &self,
        tenant: &str,
        page: Page,
    ) -> StoreResult<Vec<(i64, SubscriptionRow)>>;
    /// Writes every mutable field of the subscription.
    async fn update_subscription(&self, s: &SubscriptionRow) -> StoreResult<()>;
    /// Deletes it and fails its pending deliveries; false when there was none.
    async fn delete_subscription(&self, tenant: &str, id: &str) -> StoreResult<bool>;

    /// Leases up to `limit` due deliveries that head their chain (no earlier pending delivery of
    /// the same call or payment to the same subscription), skipping `skip_subscriptions`.
    async fn claim_due(&self, limit: i64, skip_subscriptions: &[String]) -> StoreResult<Vec<Job>>;
    /// At start-up of the embedded (single-process) database, frees leases a previous run held
    /// so that deliveries in flight at a crash are sent again at once. A shared database keeps
    /// them until they expire (another instance may still hold them).
    async fn release_own_leases(&self) -> StoreResult<()>;
    /// Extends the lease of a delivery still owned by (or free for) this instance.
    async fn renew_lease(&self, delivery_id: &str) -> StoreResult<bool>;
    /// Gives up this instance's leases on these deliveries (it will not send them now); they are
    /// claimed again when due.
    async fn release_leases(&self, delivery_ids: &[String]) -> StoreResult<()>;
    /// Records attempts in one transaction; returns the next deliveries of the finished chains,
    /// leased to this instance (and of any `subscription.disabled` event emitted).
    async fn record_attempts(&self, records: &[AttemptRecord]) -> StoreResult<Vec<Job>>;
    /// New deliveries of a stored event (to one subscription, or every matching enabled one):
    /// the jobs to send now (those not queued behind an earlier delivery of the same call) and
    /// the ids of every delivery made.
    async fn redeliver(
        &self,
        tenant: &str,
        event_id: &str,
        subscription: Option<&str>,
    ) -> StoreResult<(Vec<Job>, Vec<String>)>;
    /// Stores an event with one delivery to `subscription`, leased here (the `test` route).
    async fn insert_event_for(&self, ev: &NewEvent, subscription: &str) -> StoreResult<Job>;
    /// Re-queues the subscription's deliveries that failed since `since_ms`; returns how many.
    async fn recover(&self, tenant: &str, subscription: &str, since_ms: i64) -> StoreResult<u64>;
    /// Deliveries, newest first.
    async fn list_deliveries(
        &self,
        tenant: &str,
        status: Option<&str>,
        subscription: Option<&str>,
        page: Page,
    ) -> StoreResult<Vec<DeliveryRow>>;
    /// Every attempt of an event, oldest first.
    async fn list_attempts(&self, tenant: &str, event_id: &str) -> StoreResult<Vec<AttemptRow>>;
}

pub type DynStore = Arc<dyn Store>;

/// Opens the store named by `database_url` and runs its migrations.
/// How long a claimed delivery stays with the instance that claimed it: room for a wait in the
/// instance's queue (renewed past half of it), one attempt and its recording. An instance that
/// dies has its deliveries taken over once this has passed.
pub fn lease_ms(config: &crate::config::Config) -> i64 {
    2 * config.delivery_timeout.as_millis() as i64 + 10_000
}

pub async fn open(config: &crate::config::Config) -> anyhow::Result<DynStore> {
    let url = &config.database_url;
    if url.starts_with("sqlite:") {
        Ok(Arc::new(sqlite::SqliteStore::open(config).await?))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(postgres::PostgresStore::open(config).await?))
    } else {
        anyhow::bail!("HOOKGATE_DATABASE_URL must start with sqlite:// or postgres://")
    }
}
