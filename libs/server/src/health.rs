//! gRPC health that follows the database: SERVING while a probe query succeeds.

use std::time::Duration;

use diesel_async::RunQueryDsl;
use docket_db::Pool;
use tonic_health::server::HealthReporter;
use tonic_health::ServingStatus;

/// Interval between database probes.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(2);

/// Runs `SELECT 1` through the pool and reports whether it succeeded.
pub async fn database_answers(pool: &Pool) -> bool {
    let Ok(mut conn) = pool.get().await else {
        return false;
    };
    diesel::sql_query("SELECT 1").execute(&mut *conn).await.is_ok()
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
        let status = if database_answers(&pool).await {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        if last != Some(status) {
            match status {
                ServingStatus::Serving => tracing::info!(service = service_name, "database reachable, serving"),
                _ => tracing::warn!(service = service_name, "database unreachable, not serving"),
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
