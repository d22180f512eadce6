//! gRPC health that follows the database: SERVING while a probe query succeeds.

use std::time::Duration;

use diesel_async::RunQueryDsl;
use docket_db::Pool;
use tonic_health::server::HealthReporter;
use tonic_health::ServingStatus;

/// Interval between database probes.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(2);

/// Runs `SELECT 1` through the pool, returning why it failed when it did.
pub async fn probe_database(pool: &Pool) -> Result<(), String> {
    let mut conn = pool.get().await.map_err(|error| docket_db::DbError::from(error).to_string())?;
    diesel::sql_query("SELECT 1").execute(&mut *conn).await.map(|_| ()).map_err(|error| error.to_string())
}

/// Sets the overall status and `service_name` to SERVING or NOT_SERVING after each probe
/// until `stop` fires, logging each change once.
pub async fn follow_database(
    reporter: HealthReporter,
    pool: Pool,
    service_name: &'static str,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut last = None;
    loop {
        let probe = probe_database(&pool).await;
        let status = if probe.is_ok() { ServingStatus::Serving } else { ServingStatus::NotServing };
        if last != Some(status) {
            match probe {
                Ok(()) => tracing::info!(service = service_name, "database reachable, serving"),
                Err(error) => tracing::warn!(service = service_name, %error, "database unreachable, not serving"),
            }
            reporter.set_service_status("", status).await;
            reporter.set_service_status(service_name, status).await;
            last = Some(status);
        }
        tokio::select! {
            _ = tokio::time::sleep(PROBE_INTERVAL) => {}
            _ = stop.changed() => break,
        }
    }
    reporter.set_service_status("", ServingStatus::NotServing).await;
    reporter.set_service_status(service_name, ServingStatus::NotServing).await;
}

/// Sets the overall status and `service_name` to NOT_SERVING, for use before the server starts.
pub async fn mark_not_serving(reporter: &HealthReporter, service_name: &'static str) {
    reporter.set_service_status("", ServingStatus::NotServing).await;
    reporter.set_service_status(service_name, ServingStatus::NotServing).await;
}

/// Maximum pause between two attempts to prepare the database.
const MAX_PREPARE_DELAY: Duration = Duration::from_secs(10);

/// Prepares the database with `prepare` (creation and migrations), retrying with a doubling
/// pause of at most 10 s until it succeeds or `stop` fires, then follows the database as
/// [`follow_database`] does. Health stays NOT_SERVING until the preparation succeeded, and
/// `ready` fires once it did, so work that needs the schema can start.
pub async fn prepare_then_follow<F, Fut>(
    reporter: HealthReporter,
    pool: Pool,
    service_name: &'static str,
    mut stop: tokio::sync::watch::Receiver<bool>,
    mut prepare: F,
    ready: tokio::sync::oneshot::Sender<()>,
) where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<usize, docket_db::DbError>>,
{
    let mut delay = Duration::from_millis(250);
    loop {
        match prepare().await {
            Ok(applied) => {
                tracing::info!(service = service_name, applied, "database ready, migrations applied");
                break;
            }
            Err(error) => {
                tracing::warn!(service = service_name, %error, retry_in_ms = delay.as_millis() as u64, "database not ready, retrying");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.changed() => return,
        }
        delay = (delay * 2).min(MAX_PREPARE_DELAY);
    }
    let _ = ready.send(());
    follow_database(reporter, pool, service_name, stop).await;
}
