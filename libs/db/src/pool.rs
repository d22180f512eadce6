use std::time::Duration;

use diesel_async::AsyncPgConnection;
use diesel_async::pooled_connection::AsyncDieselConnectionManager;
use diesel_async::pooled_connection::bb8;

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
}

impl Default for PoolOptions {
    fn default() -> Self {
        Self {
            max_connections: 16,
            acquire_timeout: Duration::from_secs(5),
        }
    }
}

/// Builds a pool without opening a connection yet, so a service can start while the
/// database is still down and report NOT_SERVING until it accepts connections.
pub fn connect(url: &str, options: &PoolOptions) -> Pool {
    let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new(url);
    bb8::Pool::builder()
        .max_size(options.max_connections)
        .connection_timeout(options.acquire_timeout)
        .test_on_check_out(true)
        .build_unchecked(manager)
}

impl From<diesel_async::pooled_connection::bb8::RunError> for DbError {
    fn from(error: diesel_async::pooled_connection::bb8::RunError) -> Self {
        match error {
            bb8::RunError::User(inner) => DbError::Connect(inner.to_string()),
            bb8::RunError::TimedOut => DbError::PoolTimeout("no connection became free".into()),
        }
    }
}
