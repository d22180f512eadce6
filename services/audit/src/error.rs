use std::net::SocketAddr;

use diesel::result::{DatabaseErrorKind, Error as DieselError};
use docket_db::DbError;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, FieldViolation, StatusExt};

use crate::domain::Violations;

/// Failures of the audit service.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Database(#[from] DbError),

    #[error("database query failed: {0}")]
    Query(#[from] DieselError),

    #[error("{0}")]
    InvalidArgument(#[from] Violations),

    /// The stored ledger contradicts what the service itself writes, for example a
    /// missing head row. Verification reports such states; appends stop on them.
    #[error("the ledger is inconsistent: {0}")]
    Inconsistent(String),

    #[error("verification task failed: {0}")]
    Task(#[from] tokio::task::JoinError),

    #[error("could not listen on {address}: {source}")]
    Bind {
        address: SocketAddr,
        source: std::io::Error,
    },

    #[error(transparent)]
    AuthConfig(#[from] docket_server::auth::AuthConfigError),

    #[error("gRPC server failed: {0}")]
    Serve(tonic::transport::Error),
}

impl From<Error> for Status {
    fn from(error: Error) -> Self {
        match error {
            Error::InvalidArgument(violations) => invalid_argument(&violations),
            Error::Database(DbError::Connect(_) | DbError::PoolTimeout(_)) => unavailable(&error),
            Error::Database(DbError::Query(ref query)) | Error::Query(ref query)
                if docket_db::is_unavailable(query) =>
            {
                unavailable(&error)
            }
            Error::Database(DbError::Query(DieselError::DatabaseError(DatabaseErrorKind::SerializationFailure, _)))
            | Error::Query(DieselError::DatabaseError(DatabaseErrorKind::SerializationFailure, _)) => {
                tracing::warn!(%error, "transaction conflict");
                Status::aborted("the call conflicted with a concurrent one; retry it")
            }
            other => {
                tracing::error!(error = %other, "internal error");
                Status::internal("internal error in the audit service; see its log")
            }
        }
    }
}

fn invalid_argument(violations: &Violations) -> Status {
    let details: Vec<FieldViolation> = violations
        .reported()
        .iter()
        .map(|violation| FieldViolation::new(&violation.field, &violation.description))
        .collect();
    Status::with_error_details(
        Code::InvalidArgument,
        violations.to_string(),
        ErrorDetails::with_bad_request(details),
    )
}

fn unavailable(error: &Error) -> Status {
    tracing::warn!(%error, "database unavailable");
    Status::unavailable("the audit database is unavailable; retry later")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn violations_map_to_invalid_argument_with_details() {
        let status = Status::from(Error::from(Violations::single("events[3].event_id", "is required")));
        assert_eq!(status.code(), Code::InvalidArgument);
        let fields: Vec<String> = status
            .get_details_bad_request()
            .map(|details| details.field_violations.into_iter().map(|v| v.field).collect())
            .unwrap_or_default();
        assert_eq!(fields, ["events[3].event_id"]);
    }

    #[test]
    fn pool_timeout_maps_to_unavailable() {
        let status = Status::from(Error::Database(DbError::PoolTimeout(
            "no connection became free".into(),
        )));
        assert_eq!(status.code(), Code::Unavailable);
    }

    #[test]
    fn closed_connection_maps_to_unavailable() {
        let closed = DieselError::DatabaseError(
            DatabaseErrorKind::ClosedConnection,
            Box::new("connection closed".to_owned()),
        );
        assert_eq!(Status::from(Error::Query(closed)).code(), Code::Unavailable);
    }

    #[test]
    fn other_query_errors_map_to_internal_without_detail() {
        let status = Status::from(Error::Query(DieselError::NotFound));
        assert_eq!(status.code(), Code::Internal);
        assert!(!status.message().contains("NotFound"), "{}", status.message());
    }
}
