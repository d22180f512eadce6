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
        // diesel-async 0.10 reports every tokio-postgres error that carries no SQLSTATE
        // with this kind, and those are failures of the connection itself: "connection
        // closed" once the server is gone, or an I/O error on the socket.
        DieselError::DatabaseError(DatabaseErrorKind::UnableToSendCommand, _) => true,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn database_error(kind: DatabaseErrorKind, message: &str) -> DieselError {
        DieselError::DatabaseError(kind, Box::new(message.to_owned()))
    }

    #[test]
    fn closed_connection_is_unavailable() {
        // The error diesel-async returns for a query on a connection whose server stopped.
        assert!(is_unavailable(&database_error(DatabaseErrorKind::UnableToSendCommand, "connection closed")));
        assert!(is_unavailable(&database_error(
            DatabaseErrorKind::UnableToSendCommand,
            "error communicating with the server: Connection reset by peer (os error 104)"
        )));
        assert!(is_unavailable(&database_error(DatabaseErrorKind::ClosedConnection, "server closed the connection")));
    }

    #[test]
    fn server_shutdown_messages_are_unavailable() {
        assert!(is_unavailable(&database_error(
            DatabaseErrorKind::Unknown,
            "terminating connection due to immediate shutdown command"
        )));
        assert!(is_unavailable(&database_error(DatabaseErrorKind::Unknown, "the database system is starting up")));
    }

    #[test]
    fn rejected_statements_are_not_unavailable() {
        assert!(!is_unavailable(&database_error(DatabaseErrorKind::UniqueViolation, "duplicate key value")));
        assert!(!is_unavailable(&database_error(DatabaseErrorKind::Unknown, "syntax error at or near \"SELEC\"")));
        assert!(!is_unavailable(&DieselError::NotFound));
    }
}
