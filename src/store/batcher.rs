//! Group commit: callbacks arriving together are written in one transaction, and each is answered
//! only after that transaction has committed. Under load this turns many fsyncs into one without
//! giving up durability; when idle, a lone callback is committed at once (no waiting window).

use std::collections::HashSet;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::metrics::Metrics;

use crate::store::{DynStore, IngestItem, IngestResult, Job, StoreError};

/// The most callbacks written in one transaction.
pub const MAX_BATCH: usize = 256;

type Reply = oneshot::Sender<Result<IngestResult, String>>;

/// Handle to the single ingest writer task.
#[derive(Clone)]
pub struct Batcher {
    tx: mpsc::Sender<(IngestItem, Reply)>,
}

impl Batcher {
    /// Starts the writer. Committed deliveries are passed to `on_deliveries` (the in-process
    /// delivery worker) after each commit, except those to the subscriptions `held` names at
    /// the time (their backlog waits in the database; the worker claims them in order).
    pub fn spawn(
        store: DynStore,
        metrics: Arc<Metrics>,
        on_deliveries: impl Fn(Vec<Job>) + Send + 'static,
        held: impl Fn() -> HashSet<String> + Send + 'static,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, mut rx) = mpsc::channel::<(IngestItem, Reply)>(4 * MAX_BATCH);
        let handle = tokio::spawn(async move {
            let mut buf = Vec::with_capacity(MAX_BATCH);
            while rx.recv_many(&mut buf, MAX_BATCH).await > 0 {
                let (items, replies): (Vec<_>, Vec<_>) = buf.drain(..).unzip();
                match store.ingest_batch_holding(&items, &held()).await {
                    Ok(res) => {
                        for (item, r) in items.iter().zip(&res.results) {
                            metrics.ingested(item.provider, &item.kind, r);
                        }
                        for (reply, r) in replies.into_iter().zip(res.results) {
                            let _ = reply.send(Ok(r));
                        }
                        if !res.jobs.is_empty() {
                            on_deliveries(res.jobs);
                        }
                    }
                    Err(e) => {
                        let msg = format!("{e:#}");
                        tracing::warn!(error = %msg, batch = items.len(), "ingest batch failed; nothing committed");
                        for reply in replies {
                            let _ = reply.send(Err(msg.clone()));
                        }
                    }
                }
            }
        });
        (Self { tx }, handle)
    }

    /// Writes one item and waits for its commit.
    pub async fn ingest(&self, item: IngestItem) -> Result<IngestResult, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send((item, tx))
            .await
            .map_err(|_| StoreError::Unavailable(anyhow::anyhow!("ingest writer stopped")))?;
        rx.await
            .map_err(|_| StoreError::Unavailable(anyhow::anyhow!("ingest writer stopped")))?
            .map_err(|m| StoreError::Unavailable(anyhow::anyhow!(m)))
    }
}
