//! The response-time statistics, computed from a copy of `incidents` that the service
//! keeps in memory.
//!
//! Exact percentiles need every duration of a sample, so computing them in PostgreSQL
//! read and sorted the whole projection on every call. Before each query, the copy reads
//! only the rows written since its previous refresh (see `storage::changes`). So a query
//! includes every event committed before it arrived, in this replica or any other. It then
//! runs in memory without touching the database.

mod stats;
mod table;

use std::sync::{Arc, RwLock};
use std::time::Instant;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::Mutex;

use crate::Error;
use crate::domain::query::{Metric, MetricResult, MetricsQuery, TicketCount};
use crate::storage::changes::{self, Horizon};
use table::{KeyDictionary, Table};

/// Gauges and counters of the copy, registered with the service's other metrics.
#[derive(Clone, Debug, Default)]
pub struct MirrorMetrics {
    pub tickets: Gauge,
    pub rows_read: Counter,
    pub refreshes: Counter,
}

/// State of the refreshes: the horizon the next one reads from and the key dictionary.
/// It is locked for the whole refresh, so refreshes run one at a time and in snapshot order.
#[derive(Default)]
struct RefreshState {
    horizon: Horizon,
    dictionary: KeyDictionary,
    /// Keys per field that the table has received, a prefix of the dictionary's.
    applied_names: [usize; 5],
    /// When the latest successful refresh started, before its snapshot was taken.
    last_started: Option<Instant>,
}

/// The in-memory copy and the state of its refreshes.
pub struct Mirror {
    table: Arc<RwLock<Table>>,
    refresh: Mutex<RefreshState>,
    metrics: MirrorMetrics,
}

impl Mirror {
    pub fn new(metrics: MirrorMetrics) -> Mirror {
        Mirror {
            table: Arc::default(),
            refresh: Mutex::default(),
            metrics,
        }
    }

    /// Brings the copy up to date with every transaction committed before `requested`.
    ///
    /// The refresh runs in a task of its own, so a caller that gives up, such as a call
    /// whose deadline passed, does not throw away a long refresh that later calls need.
    pub async fn refresh(self: &Arc<Self>, pool: &docket_db::Pool, requested: Instant) -> Result<(), Error> {
        let mirror = Arc::clone(self);
        let pool = pool.clone();
        tokio::spawn(async move { mirror.refresh_in_order(&pool, requested).await })
            .await
            .map_err(|error| Error::Internal(format!("the refresh of the in-memory projection failed: {error}")))?
    }

    /// Runs one refresh after those already waiting. A caller that waited while another
    /// refresh ran skips its own when that refresh started after `requested`, because its
    /// snapshot already contains every commit the caller must see. So a burst of queries
    /// shares a few refreshes.
    async fn refresh_in_order(&self, pool: &docket_db::Pool, requested: Instant) -> Result<(), Error> {
        let mut state = self.refresh.lock().await;
        if state.last_started.is_some_and(|started| started >= requested) {
            return Ok(());
        }
        let started = Instant::now();
        let since = state.horizon;
        let mut changed = Vec::new();
        let dictionary = &mut state.dictionary;
        let summary = changes::read_changes(pool, since, |rows| {
            changed.extend(rows.iter().map(|row| dictionary.compact(row)));
        })
        .await?;
        let read = summary.rows;

        if summary.reset {
            tracing::warn!("the projection table was truncated; reloading the in-memory copy");
            state.applied_names = [0; 5];
        }
        // Most refreshes find nothing, and they leave the table and its lock alone.
        if read > 0 || summary.reset || !summary.deleted.is_empty() {
            let added_names = state.dictionary.names_after(state.applied_names);
            let table = self.table.clone();
            let (reset, deleted) = (summary.reset, summary.deleted);
            let tickets = tokio::task::spawn_blocking(move || {
                let mut table = table.write().unwrap_or_else(std::sync::PoisonError::into_inner);
                if reset {
                    *table = Table::default();
                }
                table.apply(&deleted, changed, added_names);
                table.len()
            })
            .await
            .map_err(|error| Error::Internal(format!("applying {read} changed rows to the in-memory projection failed: {error}")))?;
            state.applied_names = state.dictionary.counts();
            self.metrics.tickets.set(i64::try_from(tickets).unwrap_or(i64::MAX));
            if since == Horizon::default() || read >= 10_000 {
                tracing::info!(rows = read, tickets, elapsed_ms = started.elapsed().as_millis() as u64, "loaded projection rows into memory");
            }
        }

        state.horizon = summary.horizon;
        state.last_started = Some(started);
        self.metrics.rows_read.inc_by(read as u64);
        self.metrics.refreshes.inc();
        Ok(())
    }

    /// Computes the figures of `query` from the copy after refreshing it.
    pub async fn query(
        self: &Arc<Self>,
        pool: &docket_db::Pool,
        query: &MetricsQuery,
    ) -> Result<(Vec<TicketCount>, [(Metric, MetricResult); 4]), Error> {
        self.refresh(pool, Instant::now()).await?;
        let table = self.table.clone();
        let query = query.clone();
        // A query over a large projection takes tens of milliseconds of CPU, which must
        // not hold up the runtime's other calls.
        tokio::task::spawn_blocking(move || {
            let table = table.read().unwrap_or_else(std::sync::PoisonError::into_inner);
            table.compute(&query)
        })
        .await
        .map_err(|error| Error::Internal(format!("computing response metrics in memory failed: {error}")))
    }
}
