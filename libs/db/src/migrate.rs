use diesel::Connection;
use diesel::RunQueryDsl;
use diesel_async::AsyncPgConnection;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness};
use url::Url;

use crate::DbError;

type SyncPgConnection = AsyncConnectionWrapper<AsyncPgConnection>;

/// Creates the database named in `url` when it does not exist yet, by connecting to the
/// `postgres` maintenance database of the same server.
pub async fn ensure_database(url: &str) -> Result<(), DbError> {
    let parsed = Url::parse(url).map_err(|error| DbError::InvalidUrl {
        url: redact(url),
        reason: error.to_string(),
    })?;
    let name = parsed.path().trim_start_matches('/').to_owned();
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(DbError::InvalidUrl {
            url: redact(url),
            reason: "the database name must be letters, digits and underscores".into(),
        });
    }
    let mut maintenance = parsed.clone();
    maintenance.set_path("/postgres");
    let maintenance = maintenance.to_string();

    let server = describe_server(&parsed).await;
    tokio::task::spawn_blocking(move || {
        let mut conn = SyncPgConnection::establish(&maintenance).map_err(|e| DbError::Connect(format!("{e} ({server})")))?;
        let exists: bool = diesel::select(diesel::dsl::sql::<diesel::sql_types::Bool>(&format!(
            "EXISTS (SELECT 1 FROM pg_database WHERE datname = '{name}')"
        )))
        .get_result(&mut conn)?;
        if !exists {
            let created = diesel::sql_query(format!("CREATE DATABASE \"{name}\"")).execute(&mut conn);
            match created {
                Ok(_) => tracing::info!(database = %name, "created database"),
                // Another replica created it between the check and the statement.
                Err(diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::UniqueViolation, _)) => {}
                Err(error) if error.to_string().contains("already exists") => {}
                Err(error) => return Err(error.into()),
            }
        }
        Ok(())
    })
    .await
    .map_err(|error| DbError::Migration(error.to_string()))?
}

/// Runs the pending embedded migrations while holding a PostgreSQL advisory lock, so
/// replicas that start together apply each migration once.
pub async fn run_migrations(url: &str, migrations: EmbeddedMigrations, lock_key: i64) -> Result<usize, DbError> {
    let url = url.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut conn = SyncPgConnection::establish(&url).map_err(|e| DbError::Connect(e.to_string()))?;
        diesel::sql_query(format!("SELECT pg_advisory_lock({lock_key})")).execute(&mut conn)?;
        let applied = conn
            .run_pending_migrations(migrations)
            .map(|versions| versions.len())
            .map_err(|error| DbError::Migration(error.to_string()));
        let unlocked = diesel::sql_query(format!("SELECT pg_advisory_unlock({lock_key})")).execute(&mut conn);
        let applied = applied?;
        unlocked?;
        Ok(applied)
    })
    .await
    .map_err(|error| DbError::Migration(error.to_string()))?
}

/// Names the server of `url` and, when a TCP connection to it fails, the reason, because
/// the PostgreSQL driver's connect error does not say which host it tried or why it failed.
async fn describe_server(url: &Url) -> String {
    let host = url.host_str().unwrap_or("localhost").to_owned();
    let port = url.port().unwrap_or(5432);
    let address = format!("{host}:{port}");
    let attempt = tokio::time::timeout(std::time::Duration::from_secs(3), tokio::net::TcpStream::connect(&address)).await;
    match attempt {
        Ok(Ok(_)) => format!("server {address}"),
        Ok(Err(error)) => format!("server {address}: {error}"),
        Err(_) => format!("server {address}: no answer within 3 s"),
    }
}

/// Drops the password from a database URL so it can appear in messages.
pub(crate) fn redact(url: &str) -> String {
    match Url::parse(url) {
        Ok(mut parsed) => {
            if parsed.password().is_some() {
                let _ = parsed.set_password(Some("***"));
            }
            parsed.to_string()
        }
        Err(_) => "<unparsable URL>".into(),
    }
}
