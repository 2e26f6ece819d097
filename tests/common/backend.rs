//! Which database a test's gateway runs on. Every black-box test runs on SQLite; wrapped in
//! [`dual!`](crate::dual) it runs a second time on PostgreSQL when `HOOKGATE_TEST_POSTGRES_URL`
//! is set (as `.ci/run` does), each test in a fresh schema of a database made for this run.

use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::{Connection, Executor, PgConnection};
use tokio::sync::OnceCell;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

tokio::task_local! {
    /// The backend of the test running in this task (SQLite when unset).
    pub static BACKEND: Backend;
}

pub fn current() -> Backend {
    BACKEND.try_with(|b| *b).unwrap_or(Backend::Sqlite)
}

/// The server to run PostgreSQL tests against, if any.
pub fn postgres_url() -> Option<String> {
    std::env::var("HOOKGATE_TEST_POSTGRES_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
}

/// Test databases older than this were left by finished runs and are dropped.
const STALE_SECS: u64 = 3600;

static RUN_DATABASE: OnceCell<String> = OnceCell::const_new();

/// URL of the database made for this test process (created on first use; stale databases of
/// earlier runs are dropped then).
async fn run_database() -> String {
    RUN_DATABASE
        .get_or_init(|| async {
            let server = postgres_url().expect("HOOKGATE_TEST_POSTGRES_URL");
            let mut conn = PgConnection::connect(&server)
                .await
                .expect("connect to HOOKGATE_TEST_POSTGRES_URL");
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_secs();
            let stale: Vec<(String,)> = sqlx::query_as(
                "SELECT datname FROM pg_database WHERE datname LIKE 'hookgate\\_test\\_%'",
            )
            .fetch_all(&mut conn)
            .await
            .unwrap();
            for (name,) in stale {
                let born: Option<u64> = name.split('_').nth(2).and_then(|t| t.parse().ok());
                if born.is_some_and(|b| b + STALE_SECS < now) {
                    let _ = conn
                        .execute(format!("DROP DATABASE IF EXISTS \"{name}\"").as_str())
                        .await;
                }
            }
            let name = format!("hookgate_test_{now}_{}", std::process::id());
            hookgate::store::postgres::create_database(&server, &name)
                .await
                .expect("create the test database")
        })
        .await
        .clone()
}

/// A database URL for one gateway: a new SQLite file in `dir`, or a new PostgreSQL schema.
pub async fn fresh_database_url(dir: &std::path::Path) -> String {
    match current() {
        Backend::Sqlite => format!("sqlite://{}", dir.join("hookgate.db").display()),
        Backend::Postgres => {
            let db = run_database().await;
            let schema = hookgate::event::prefixed_id("t_").to_lowercase();
            let mut conn = PgConnection::connect(&db).await.unwrap();
            conn.execute(format!("CREATE SCHEMA \"{schema}\"").as_str())
                .await
                .unwrap();
            let mut url = url::Url::parse(&db).unwrap();
            url.query_pairs_mut()
                .append_pair("options", &format!("-c search_path={schema}"));
            url.to_string()
        }
    }
}

/// Declares async tests that run on SQLite and, when a PostgreSQL server is configured, again
/// on PostgreSQL (as `postgres::NAME`).
#[macro_export]
macro_rules! dual {
    ($(async fn $name:ident() $body:block)*) => {
        $(
            #[tokio::test]
            async fn $name() $body
        )*
        mod postgres {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test]
                async fn $name() {
                    if $crate::common::backend::postgres_url().is_none() {
                        eprintln!("HOOKGATE_TEST_POSTGRES_URL unset: PostgreSQL pass skipped");
                        return;
                    }
                    $crate::common::backend::BACKEND
                        .scope($crate::common::backend::Backend::Postgres, async $body)
                        .await
                }
            )*
        }
    };
}
