//! The persistent verdict cache's write-behind queue, one for both engines: judge calls
//! hand their answers to a background task that writes whatever is queued (up to
//! `CACHE_BATCH`) in one batch, instead of paying a write each.

use std::future::Future;

use super::{StoreError, StoreResult};

enum CacheWrite {
    Put([u8; 32], String),
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// The most entries one batch writes.
const CACHE_BATCH: usize = 512;

/// The sending side; the task ends when this is dropped.
pub(super) struct CacheWrites {
    tx: tokio::sync::mpsc::Sender<CacheWrite>,
}

impl CacheWrites {
    /// Starts the task; `write` stores one batch (keys in arrival order, so an engine
    /// can keep the first of a key written twice).
    pub(super) fn start<W, F>(write: W) -> CacheWrites
    where
        W: Fn(Vec<([u8; 32], String)>) -> F + Send + 'static,
        F: Future<Output = Result<(), sqlx::Error>> + Send,
    {
        let (tx, mut rx) = tokio::sync::mpsc::channel(8 * CACHE_BATCH);
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut puts = Vec::new();
                let mut acks = Vec::new();
                let mut next = Some(first);
                while let Some(m) = next.take() {
                    match m {
                        CacheWrite::Put(k, v) => puts.push((k, v)),
                        CacheWrite::Flush(ack) => acks.push(ack),
                    }
                    if puts.len() < CACHE_BATCH {
                        next = rx.try_recv().ok();
                    }
                }
                if !puts.is_empty() {
                    let entries = puts.len();
                    if let Err(e) = write(puts).await {
                        // The persistent tier is an optimisation: losing a batch costs
                        // only a repeated judge call later, never a wrong grade.
                        tracing::warn!(error = %e, entries, "verdict cache batch write failed");
                    }
                }
                for ack in acks {
                    let _ = ack.send(());
                }
            }
        });
        CacheWrites { tx }
    }

    pub(super) async fn put(&self, key: &[u8; 32], answer: &str) -> StoreResult<()> {
        self.tx
            .send(CacheWrite::Put(*key, answer.to_owned()))
            .await
            .map_err(|_| StoreError::Db("the verdict cache writer has stopped".into()))
    }

    /// Waits until every write queued so far is committed.
    pub(super) async fn flush(&self) {
        let (ack, done) = tokio::sync::oneshot::channel();
        if self.tx.send(CacheWrite::Flush(ack)).await.is_ok() {
            let _ = done.await;
        }
    }
}
