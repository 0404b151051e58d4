//! One worker per backend: applies compacted writes in order, retries with growing
//! backoff while the backend is down, and acknowledges batch sequences once durable.
//! Each backend progresses on its own, so one being down never stops the other.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, warn};

use super::pending::PendingWrites;
use crate::metrics::{BackendErrorLabels, BackendLabels, Metrics};

/// A failed write, with a short label for metrics.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct BackendWriteError {
    pub label: &'static str,
    pub message: String,
}

/// A backend that can make compacted writes durable.
pub trait Backend: Send + 'static {
    /// Stable backend name for logs, metrics and conditions.
    const NAME: &'static str;

    /// Applies every write. On error nothing is acknowledged and the same writes, with
    /// newer ones merged in, are applied again later, so implementations must be idempotent.
    fn apply(
        &mut self,
        writes: &PendingWrites,
    ) -> impl Future<Output = Result<(), BackendWriteError>> + Send;

    /// Runs the backend's periodic work (liveness sweep, anti-entropy) on the pod that
    /// holds the registry's lease. Called between writes, never concurrently with them.
    fn maintain(&mut self) -> impl Future<Output = Result<(), BackendWriteError>> + Send {
        async { Ok(()) }
    }
}

/// When and whether a worker runs [`Backend::maintain`].
#[derive(Clone)]
pub struct Maintenance {
    pub interval: Duration,
    /// True while this pod holds the registry's lease.
    pub leader: Arc<std::sync::atomic::AtomicBool>,
}

/// Writes of one sealed batch, sent to every backend worker.
pub type BatchWrites = (u64, PendingWrites);

/// Acknowledgement that a backend made every batch up to the sequence durable.
pub type Ack = (&'static str, u64);

/// Shared view of a backend's progress, read by status and readiness.
#[derive(Debug, Default)]
pub struct BackendHealth {
    pub failing_since: std::sync::Mutex<Option<(Instant, String)>>,
    pub pending: std::sync::atomic::AtomicUsize,
    /// Start of the current backlog in wall-clock time, or `None` while the backend is
    /// caught up.
    pending_since: std::sync::Mutex<Option<DateTime<Utc>>>,
}

impl BackendHealth {
    /// Records the number of pending writes, starting the backlog clock on the first one
    /// and stopping it when the backlog is empty.
    pub fn set_pending(&self, count: usize) {
        self.pending
            .store(count, std::sync::atomic::Ordering::Relaxed);
        if let Ok(mut since) = self.pending_since.lock() {
            match (count, since.is_some()) {
                (0, _) => *since = None,
                (_, false) => *since = Some(Utc::now()),
                (_, true) => {}
            }
        }
    }

    /// Returns when the current backlog started, if writes are pending.
    pub fn pending_since(&self) -> Option<DateTime<Utc>> {
        self.pending_since.lock().ok().and_then(|since| *since)
    }

    /// Returns the error of the current outage, if the last write failed.
    pub fn last_error(&self) -> Option<String> {
        self.failing_since
            .lock()
            .ok()
            .and_then(|guard| guard.as_ref().map(|(_, message)| message.clone()))
    }
}

/// Writes applied in one call to a backend.
const MAX_CHUNK: usize = 1000;

const MIN_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// Runs the worker until `cancel` fires, then makes one last attempt to flush.
#[allow(clippy::too_many_arguments)]
pub async fn run_worker<B: Backend>(
    mut backend: B,
    mut batches: mpsc::UnboundedReceiver<BatchWrites>,
    acks: mpsc::UnboundedSender<Ack>,
    health: Arc<BackendHealth>,
    metrics: Arc<Metrics>,
    registry_id: String,
    maintenance: Maintenance,
    cancel: CancellationToken,
) {
    let labels = BackendLabels {
        registry: registry_id.clone(),
        backend: B::NAME,
    };
    let mut pending = PendingWrites::default();
    let mut last_sequence = 0;
    let mut acknowledged = 0;
    let mut backoff = MIN_BACKOFF;
    let mut ticks = tokio::time::interval(maintenance.interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    loop {
        if pending.is_empty() && last_sequence == acknowledged {
            tokio::select! {
                received = batches.recv() => match received {
                    Some((sequence, writes)) => {
                        pending.merge(writes);
                        last_sequence = last_sequence.max(sequence);
                    }
                    None => return,
                },
                _ = ticks.tick() => {
                    if maintenance.leader.load(std::sync::atomic::Ordering::Relaxed) {
                        let span = tracing::debug_span!("maintain", backend = B::NAME, registry = %registry_id);
                        if let Err(error) = backend.maintain().instrument(span).await {
                            warn!(backend = B::NAME, registry = %registry_id, %error, "periodic backend work failed; retrying on the next tick");
                        }
                    }
                    continue;
                }
                _ = cancel.cancelled() => return,
            }
        }
        // Sequence 0 carries writes that no Kafka batch covers (liveness sweep results).
        while let Ok((sequence, writes)) = batches.try_recv() {
            pending.merge(writes);
            last_sequence = last_sequence.max(sequence);
        }
        health.set_pending(pending.len());
        metrics
            .backend_pending_writes
            .get_or_create(&labels)
            .set(pending.len() as i64);

        // Applying a bounded chunk, then draining the channel again, keeps memory at one
        // compacted write per node even while a slow backend works through a long backlog.
        let chunk = pending.take_chunk(MAX_CHUNK);
        let started = Instant::now();
        let span = tracing::debug_span!("backend_write", backend = B::NAME, registry = %registry_id, writes = chunk.len(), sequence = last_sequence);
        let result = backend.apply(&chunk).instrument(span).await;
        metrics
            .backend_write_seconds
            .get_or_create(&labels)
            .observe(started.elapsed().as_secs_f64());

        match result {
            Ok(()) => {
                backoff = MIN_BACKOFF;
                // Batches are acknowledged once nothing they carried is pending any more.
                if pending.is_empty() {
                    acknowledged = last_sequence;
                    let _ = acks.send((B::NAME, last_sequence));
                    health.set_pending(0);
                    metrics.backend_pending_writes.get_or_create(&labels).set(0);
                }
                let recovered = health
                    .failing_since
                    .lock()
                    .map(|mut guard| guard.take())
                    .ok()
                    .flatten();
                if let Some((since, _)) = recovered {
                    info!(backend = B::NAME, registry = %registry_id, outage_seconds = since.elapsed().as_secs(), "backend caught up");
                    metrics.backend_circuit_open.get_or_create(&labels).set(0);
                }
            }
            Err(error) => {
                pending.restore(chunk);
                metrics
                    .backend_errors
                    .get_or_create(&BackendErrorLabels {
                        registry: registry_id.clone(),
                        backend: B::NAME,
                        error: error.label,
                    })
                    .inc();
                metrics.backend_circuit_open.get_or_create(&labels).set(1);
                if let Ok(mut guard) = health.failing_since.lock() {
                    let since = guard
                        .as_ref()
                        .map(|(since, _)| *since)
                        .unwrap_or_else(Instant::now);
                    *guard = Some((since, error.to_string()));
                }
                warn!(
                    backend = B::NAME,
                    registry = %registry_id,
                    pending_writes = pending.len(),
                    error = %error,
                    retry_in_ms = backoff.as_millis() as u64,
                    "backend write failed; this backend is behind and will retry"
                );
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = cancel.cancelled() => return,
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
        if cancel.is_cancelled() {
            return;
        }
    }
}
