//! The PostgreSQL backend: any number of instances share one database. Deliveries are claimed
//! with `FOR UPDATE SKIP LOCKED` and a lease; writes that create or advance a call's delivery
//! chain, or append to a tenant's event feed, hold a transaction-scoped advisory lock on the
//! tenant, so chains have one head at a time and feed order equals commit order.

use std::str::FromStr;
use std::sync::Arc;

use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use sqlx::{Pool, Transaction};
use tokio_util::sync::CancellationToken;

use crate::config::Config;

type Db = sqlx::Postgres;

/// The channel on which instances tell each other that deliveries became due.
const WAKE_CHANNEL: &str = "hookgate_deliveries";

/// The PostgreSQL store.
pub struct PostgresStore {
    read: Pool<Db>,
    write: Pool<Db>,
    instance_id: String,
    lease_ms: i64,
}

type Backend = PostgresStore;

impl PostgresStore {
    pub async fn open(config: &Config) -> anyhow::Result<Self> {
        let opts = PgConnectOptions::from_str(&config.database_url)?;
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(std::time::Duration::from_secs(10))
            .connect_with(opts)
            .await?;
        // sqlx holds a PostgreSQL advisory lock while migrating, so instances starting together
        // take turns and each sees the finished schema.
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        Ok(Self {
            read: pool.clone(),
            write: pool,
            instance_id: crate::event::prefixed_id("ins_"),
            lease_ms: crate::store::lease_ms(config),
        })
    }

    async fn begin_write(&self) -> sqlx::Result<Transaction<'static, Db>> {
        self.write.begin().await
    }

    /// Takes the tenants' advisory locks until the transaction ends, in sorted order (so two
    /// transactions never wait on each other in a cycle).
    async fn lock_tenants<'a>(
        conn: &mut <Db as sqlx::Database>::Connection,
        tenants: impl IntoIterator<Item = &'a str>,
    ) -> sqlx::Result<()> {
        let mut tenants: Vec<&str> = tenants.into_iter().collect();
        tenants.sort_unstable();
        tenants.dedup();
        for t in tenants {
            sqlx::query(
                "SELECT pg_advisory_xact_lock(hashtextextended('hookgate.tenant:' || $1, 0))",
            )
            .bind(t)
            .execute(&mut *conn)
            .await?;
        }
        Ok(())
    }

    /// Tells every instance, at commit, that deliveries became due.
    async fn notify_pending(conn: &mut <Db as sqlx::Database>::Connection) -> sqlx::Result<()> {
        sqlx::query("SELECT pg_notify($1, '')")
            .bind(WAKE_CHANNEL)
            .execute(&mut *conn)
            .await?;
        Ok(())
    }

    /// Listens for [`WAKE_CHANNEL`] and calls `wake` on each notification (and after every
    /// reconnection, in case one was missed) until `stop`.
    fn listen(&self, wake: Arc<dyn Fn() + Send + Sync>, stop: CancellationToken) {
        let pool = self.read.clone();
        tokio::spawn(async move {
            loop {
                let mut listener = match PgListener::connect_with(&pool).await {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot listen for delivery wake-ups; retrying");
                        tokio::select! {
                            _ = stop.cancelled() => return,
                            _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => continue,
                        }
                    }
                };
                if let Err(e) = listener.listen(WAKE_CHANNEL).await {
                    tracing::warn!(error = %e, "LISTEN failed; retrying");
                    continue;
                }
                wake();
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        n = listener.try_recv() => match n {
                            Ok(Some(_)) => wake(),
                            // The connection dropped and was re-established: a notification may
                            // have been missed.
                            Ok(None) => wake(),
                            Err(e) => {
                                tracing::warn!(error = %e, "delivery wake-up listener failed; reconnecting");
                                break;
                            }
                        }
                    }
                }
            }
        });
    }
}

/// Creates database `name` on the PostgreSQL server `server` (a URL naming any database on it)
/// and returns the URL of the new database. For test runs and benchmarks.
pub async fn create_database(server: &str, name: &str) -> anyhow::Result<String> {
    use sqlx::{Connection, Executor};
    let mut conn = sqlx::PgConnection::connect(server).await?;
    conn.execute(format!("CREATE DATABASE \"{name}\"").as_str())
        .await?;
    let mut url = url::Url::parse(server)?;
    url.set_path(name);
    Ok(url.to_string())
}

/// Rows another instance is claiming are skipped, not waited for.
const CLAIM_SUFFIX: &str = "FOR UPDATE OF d SKIP LOCKED";
/// The claim locks the rows it finds (`FOR UPDATE … SKIP LOCKED`): it searches inside the
/// write transaction.
const CLAIM_LOCKS_ROWS: bool = true;
/// Leases in a shared database may belong to live instances; expired ones are taken over.
const RELEASE_LEASES_ON_START: bool = false;

include!("common.rs");
include!("common_delivery.rs");
