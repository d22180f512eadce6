use std::time::Duration;

use diesel_async::pooled_connection::bb8;
use diesel_async::pooled_connection::{AsyncDieselConnectionManager, ManagerConfig};
use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use futures::FutureExt;

use crate::DbError;

/// Connection pool of one service.
pub type Pool = bb8::Pool<AsyncPgConnection>;

/// Connection checked out of a [`Pool`].
pub type Conn<'a> = bb8::PooledConnection<'a, AsyncPgConnection>;

/// Sizing and timeouts of a pool.
#[derive(Clone, Debug)]
pub struct PoolOptions {
    /// Upper bound on open connections, which protects the database from a burst of calls.
    pub max_connections: u32,
    /// How long a caller waits for a free connection before the call fails.
    pub acquire_timeout: Duration,
    /// Role that every pooled connection switches to with `SET ROLE` right after it opens,
    /// so the service works with that role's privileges rather than the login role's.
    pub session_role: Option<String>,
}

impl Default for PoolOptions {
    fn default() -> Self {
        Self {
            max_connections: 16,
            acquire_timeout: Duration::from_secs(5),
            session_role: None,
        }
    }
}

/// Builds a pool without opening a connection yet, so a service can start while the
/// database is still down and report NOT_SERVING until it accepts connections.
pub fn connect(url: &str, options: &PoolOptions) -> Pool {
    let mut config = ManagerConfig::<AsyncPgConnection>::default();
    if let Some(role) = options.session_role.clone() {
        config.custom_setup = Box::new(move |url| {
            let statement = format!("SET ROLE {}", quote_identifier(&role));
            async move {
                let mut conn = AsyncPgConnection::establish(url).await?;
                conn.batch_execute(&statement).await.map_err(|error| {
                    diesel::ConnectionError::BadConnection(format!("{statement} failed: {error}; check that the role exists and that the login role is a member of it"))
                })?;
                Ok(conn)
            }
            .boxed()
        });
    }
    let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(url, config);
    bb8::Pool::builder()
        .error_sink(Box::new(ConnectErrorLog::default()))
        .max_size(options.max_connections)
        .connection_timeout(options.acquire_timeout)
        .test_on_check_out(true)
        .build_unchecked(manager)
}

/// Minimum time between two logged connection failures of one pool.
const CONNECT_ERROR_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Logs why the pool could not open a connection, because a caller waiting in `get` gets
/// only a timeout. It logs at most once per [`CONNECT_ERROR_LOG_INTERVAL`], with the count
/// of failures since the previous line.
#[derive(Clone, Debug, Default)]
struct ConnectErrorLog {
    state: std::sync::Arc<std::sync::Mutex<(Option<std::time::Instant>, u64)>>,
}

impl ::bb8::ErrorSink<diesel_async::pooled_connection::PoolError> for ConnectErrorLog {
    fn sink(&self, error: diesel_async::pooled_connection::PoolError) {
        let mut state = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (last_logged, failures) = &mut *state;
        *failures += 1;
        if last_logged.is_some_and(|at| at.elapsed() < CONNECT_ERROR_LOG_INTERVAL) {
            return;
        }
        tracing::warn!(%error, failures = *failures, "cannot open a database connection");
        *last_logged = Some(std::time::Instant::now());
        *failures = 0;
    }

    fn boxed_clone(&self) -> Box<dyn ::bb8::ErrorSink<diesel_async::pooled_connection::PoolError>> {
        Box::new(self.clone())
    }
}

/// Quotes a PostgreSQL identifier, doubling any embedded quote.
fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

impl From<diesel_async::pooled_connection::bb8::RunError> for DbError {
    fn from(error: diesel_async::pooled_connection::bb8::RunError) -> Self {
        match error {
            bb8::RunError::User(inner) => DbError::Connect(inner.to_string()),
            bb8::RunError::TimedOut => DbError::PoolTimeout("no connection became free".into()),
        }
    }
}
