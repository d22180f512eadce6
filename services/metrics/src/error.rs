use std::net::SocketAddr;

use docket_db::DbError;

/// One invalid field of a request, named by its path such as `events[2].ticket.severity`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldViolation {
    pub field: String,
    pub description: String,
}

impl FieldViolation {
    pub fn new(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            description: description.into(),
        }
    }
}

/// Failures of the metrics service.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request broke one or more field rules; nothing was read or written.
    #[error("{}", describe_violations(.0))]
    InvalidArgument(Vec<FieldViolation>),

    #[error(transparent)]
    Database(#[from] DbError),

    #[error("could not listen on {address}: {source}")]
    Bind { address: SocketAddr, source: std::io::Error },

    #[error(transparent)]
    AuthConfig(#[from] docket_server::auth::AuthConfigError),

    #[error(transparent)]
    SigningKey(#[from] docket_server::outgoing::SigningKeyError),

    #[error("invalid setting {setting}: {reason}")]
    Config { setting: &'static str, reason: String },

    #[error("gRPC server failed: {0}")]
    Serve(tonic::transport::Error),

    /// A task of the service failed in a way no request can cause, such as a panic.
    #[error("{0}")]
    Internal(String),
}

impl From<diesel::result::Error> for Error {
    fn from(error: diesel::result::Error) -> Self {
        Error::Database(DbError::Query(error))
    }
}

impl From<diesel_async::pooled_connection::bb8::RunError> for Error {
    fn from(error: diesel_async::pooled_connection::bb8::RunError) -> Self {
        Error::Database(error.into())
    }
}

/// Builds the status message: the first violation in full and how many more follow, so
/// a client that shows only the message still learns what to fix.
fn describe_violations(violations: &[FieldViolation]) -> String {
    match violations {
        [] => "invalid request".to_owned(),
        [only] => format!("invalid {}: {}", only.field, only.description),
        [first, rest @ ..] => format!(
            "invalid {}: {} (and {} more invalid fields, listed in the BadRequest details)",
            first.field,
            first.description,
            rest.len()
        ),
    }
}

impl Error {
    /// Returns whether the database could not be reached, as opposed to rejecting a statement.
    pub fn is_unavailable(&self) -> bool {
        match self {
            Error::Database(DbError::Connect(_) | DbError::PoolTimeout(_)) => true,
            Error::Database(DbError::Query(error)) => docket_db::is_unavailable(error),
            _ => false,
        }
    }
}

impl From<Error> for tonic::Status {
    fn from(error: Error) -> Self {
        if error.is_unavailable() {
            tracing::warn!(%error, "metrics database unavailable");
            return tonic::Status::unavailable("the metrics database is unavailable; retry later");
        }
        match error {
            Error::InvalidArgument(violations) => docket_server::violations::invalid_argument(
                "invalid ",
                violations.into_iter().map(|violation| (violation.field, violation.description)),
            ),
            other => {
                tracing::error!(error = %other, "internal error");
                tonic::Status::internal("internal error in the metrics service; the details are in its log")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic_types::StatusExt;

    #[test]
    fn pool_timeout_maps_to_unavailable() {
        let status = tonic::Status::from(Error::Database(DbError::PoolTimeout("no connection became free".into())));
        assert_eq!(status.code(), tonic::Code::Unavailable);
    }

    #[test]
    fn closed_connection_maps_to_unavailable() {
        let closed = diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::ClosedConnection,
            Box::new("server closed the connection".to_owned()),
        );
        assert_eq!(tonic::Status::from(Error::from(closed)).code(), tonic::Code::Unavailable);
    }

    #[test]
    fn rejected_statement_maps_to_internal_without_sql() {
        let status = tonic::Status::from(Error::from(diesel::result::Error::NotFound));
        assert_eq!(status.code(), tonic::Code::Internal);
        assert!(!status.message().contains("NotFound"), "message: {}", status.message());
    }

    #[test]
    fn violations_become_bad_request_details() {
        let error = Error::InvalidArgument(vec![
            FieldViolation::new("severities[0]", "\"urgent\" is not allowed"),
            FieldViolation::new("end", "the window is empty"),
        ]);
        let status = tonic::Status::from(error);
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        let fields: Vec<String> = status
            .get_details_bad_request()
            .map(|details| details.field_violations.into_iter().map(|violation| violation.field).collect())
            .unwrap_or_default();
        assert_eq!(fields, ["severities[0]", "end"]);
        assert!(status.message().starts_with("invalid severities[0]: "), "message: {}", status.message());
    }
}
