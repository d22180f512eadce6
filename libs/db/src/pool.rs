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
                    diesel::ConnectionError::BadConnection(format!("{statement} failed: {error}; grant the login role membership in it"))
                })?;
                Ok(conn)
            }
            .boxed()
        });
    }
    let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(url, config);
    bb8::Pool::builder()
        .max_size(options.max_connections)
        .connection_timeout(options.acquire_timeout)
        .test_on_check_out(true)
        .build_unchecked(manager)
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
