use std::net::SocketAddr;


use crate::domain::{Status as TicketStatus, Violations};

/// Failures of the ticket service.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid request: {0}")]
    Invalid(Violations),

    #[error("ticket {0} not found")]
    NotFound(String),

    #[error("ticket {key} has etag {current} but the request expected {expected}")]
    StaleEtag {
        key: String,
        expected: String,
        current: String,
    },

    #[error(
        "ticket {key} cannot move from {from} to {to}; from {from} the allowed moves are: {}",
        allowed_list(allowed)
    )]
    NotAllowed {
        key: String,
        from: TicketStatus,
        to: TicketStatus,
        allowed: Vec<TicketStatus>,
    },

    #[error(
        "ticket {key} already holds {used} bytes of comments, and this comment of {adding} bytes would pass the limit of {limit} bytes; summarise the worklog in a new ticket or in the resolution"
    )]
    WorklogFull { key: String, used: i64, adding: i64, limit: i64 },

    #[error(
        "request_id {request_id:?} was already used for ticket {key} with other content; send a new request_id for a new ticket"
    )]
    RequestIdReused { request_id: String, key: String },

    #[error(transparent)]
    Denied(#[from] docket_auth::Denied),

    /// A ticket-level rule denied a change to a loaded ticket.
    #[error("{denied}")]
    TicketDenied {
        ticket_id: uuid::Uuid,
        key: String,
        denied: docket_auth::Denied,
    },

    #[error(transparent)]
    Database(#[from] docket_db::DbError),

    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),

    #[error(transparent)]
    AuthConfig(#[from] docket_server::auth::AuthConfigError),

    #[error(transparent)]
    SigningKey(#[from] docket_server::outgoing::SigningKeyError),

    #[error("invalid setting {setting}: {reason}")]
    Config {
        setting: &'static str,
        reason: String,
    },

    #[error("could not listen on {address}: {source}")]
    Bind {
        address: SocketAddr,
        source: std::io::Error,
    },

    #[error("gRPC server failed: {0}")]
    Serve(tonic::transport::Error),
}

fn allowed_list(allowed: &[TicketStatus]) -> String {
    if allowed.is_empty() {
        return "none".to_owned();
    }
    allowed
        .iter()
        .map(|status| status.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

impl From<diesel::result::Error> for Error {
    fn from(error: diesel::result::Error) -> Self {
        Error::Database(docket_db::DbError::Query(error))
    }
}

impl From<Violations> for Error {
    fn from(violations: Violations) -> Self {
        Error::Invalid(violations)
    }
}

impl Error {
    /// Whether the database could not be reached, so the client should retry later.
    fn is_unavailable(&self) -> bool {
        match self {
            Error::Database(docket_db::DbError::Query(error)) => docket_db::is_unavailable(error),
            Error::Database(
                docket_db::DbError::Connect(_) | docket_db::DbError::PoolTimeout(_),
            ) => true,
            _ => false,
        }
    }
}

impl From<Error> for tonic::Status {
    fn from(error: Error) -> Self {
        use tonic::Status;

        if error.is_unavailable() {
            tracing::warn!(%error, "ticket database unavailable");
            return Status::unavailable("the ticket database is unavailable; retry later");
        }
        match error {
            Error::Invalid(violations) => docket_server::violations::invalid_argument(
                "invalid request: ",
                violations.0.into_iter().map(|violation| (violation.field, violation.description)),
            ),
            Error::NotFound(_) => Status::not_found(error.to_string()),
            Error::StaleEtag { .. } => {
                Status::aborted(format!("{error}; read the ticket again and retry"))
            }
            Error::NotAllowed { .. } | Error::WorklogFull { .. } => Status::failed_precondition(error.to_string()),
            Error::RequestIdReused { .. } => Status::already_exists(error.to_string()),
            Error::Denied(denied) | Error::TicketDenied { denied, .. } => Status::from(denied),
            other => {
                tracing::error!(error = %other, "internal error");
                Status::internal("internal error; the ticket service logged the cause")
            }
        }
    }
}
