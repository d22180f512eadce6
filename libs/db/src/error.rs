use diesel::result::{DatabaseErrorKind, Error as DieselError};

/// Failures of the shared database layer.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("invalid database URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },

    #[error("could not connect to the database: {0}")]
    Connect(String),

    #[error("timed out waiting for a database connection: {0}")]
    PoolTimeout(String),

    #[error("database migration failed: {0}")]
    Migration(String),

    #[error(transparent)]
    Query(#[from] DieselError),
}

/// Returns whether a diesel error means the database could not be reached, as opposed to a
/// statement it rejected. Callers map the first to UNAVAILABLE so clients retry.
pub fn is_unavailable(error: &DieselError) -> bool {
    match error {
        DieselError::DatabaseError(DatabaseErrorKind::ClosedConnection, _) => true,
        DieselError::DatabaseError(DatabaseErrorKind::Unknown, info) => {
            let message = info.message();
            message.contains("connection closed")
                || message.contains("terminating connection")
                || message.contains("the database system is")
        }
        DieselError::BrokenTransactionManager => true,
        _ => false,
    }
}
