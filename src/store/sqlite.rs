//! The embedded SQLite backend: WAL, `synchronous=FULL` (a 2xx was promised), `busy_timeout`,
//! one writer connection with `BEGIN IMMEDIATE`, and a pool of readers.

use std::str::FromStr;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Pool, Transaction};

use crate::config::Config;

type Db = sqlx::Sqlite;

/// The SQLite store.
pub struct SqliteStore {
    read: Pool<Db>,
    write: Pool<Db>,
    instance_id: String,
    lease_ms: i64,
}

type Backend = SqliteStore;

impl SqliteStore {
    pub async fn open(config: &Config) -> anyhow::Result<Self> {
        let opts = SqliteConnectOptions::from_str(&config.database_url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(config.sqlite_busy_timeout)
            .foreign_keys(true);
        // One writer: SQLite allows one write transaction at a time anyway, and queueing in the
        // pool is cheaper than spinning on the file lock.
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(config.sqlite_busy_timeout + std::time::Duration::from_secs(5))
            .connect_with(opts.clone())
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&write).await?;
        let read = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(opts.read_only(true))
            .await?;
        Ok(Self {
            read,
            write,
            instance_id: crate::event::prefixed_id("ins_"),
            lease_ms: crate::store::lease_ms(config),
        })
    }

    async fn begin_write(&self) -> sqlx::Result<Transaction<'static, Db>> {
        self.write.begin_with("BEGIN IMMEDIATE").await
    }

    /// One writer at a time already serializes every write transaction.
    async fn lock_tenants<'a>(
        _conn: &mut <Db as sqlx::Database>::Connection,
        _tenants: impl IntoIterator<Item = &'a str>,
    ) -> sqlx::Result<()> {
        Ok(())
    }

    /// One process owns the file: nobody else makes deliveries due.
    fn listen(
        &self,
        _wake: std::sync::Arc<dyn Fn() + Send + Sync>,
        _stop: tokio_util::sync::CancellationToken,
    ) {
    }

    /// Deliveries made due outside the hot path are found by this process's own worker.
    async fn notify_pending(_conn: &mut <Db as sqlx::Database>::Connection) -> sqlx::Result<()> {
        Ok(())
    }
}

/// SQLite has one writer at a time, so the claim needs no row locks.
const CLAIM_SUFFIX: &str = "";
/// The claim searches on a reader, outside the one writer's transaction, and leases after.
const CLAIM_LOCKS_ROWS: bool = false;
/// One process owns an SQLite file, so leases left in it belong to a run that has ended.
const RELEASE_LEASES_ON_START: bool = true;

include!("common.rs");
include!("common_delivery.rs");
