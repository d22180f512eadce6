//! The one error type of the client library.

use std::path::PathBuf;

use tonic::Code;

use crate::import::Summary;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid {flag} {value:?}: {reason}")]
    InvalidArgument {
        flag: &'static str,
        value: String,
        reason: String,
    },
    #[error("cannot connect to the {service} service at {addr}: {cause}; is it running, and is {flag} right?")]
    Connect {
        service: &'static str,
        addr: String,
        flag: &'static str,
        /// The error chain as one line, because the transport error's own text is only
        /// "transport error" and the useful part (such as "Connection refused") is its source.
        cause: String,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("{rpc} failed with {}: {}", code_name(.status.code()), .status.message())]
    Rpc { rpc: &'static str, status: tonic::Status },
    #[error("cannot open {}: {source}", .path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read {} at line {line}: {source}", .path.display())]
    Read {
        path: PathBuf,
        line: u64,
        #[source]
        source: std::io::Error,
    },
    /// An import batch failed after its retries. `summary` counts what was done before it;
    /// running the import again is safe because imported records are recognised by digest.
    #[error("import stopped at lines {first_line}-{last_line}: ImportTickets failed with {}: {}", code_name(.status.code()), .status.message())]
    ImportBatch {
        first_line: u64,
        last_line: u64,
        status: tonic::Status,
        summary: Box<Summary>,
    },
    #[error("ImportTickets returned {returned} results for {sent} records")]
    ImportResultCount { sent: usize, returned: usize },
    #[error("cannot mint a token: {0}")]
    Mint(String),
    #[error("cannot write the output: {0}")]
    Output(#[from] std::io::Error),
}

impl Error {
    /// Returns the gRPC status behind this error, if a call failed.
    pub fn status(&self) -> Option<&tonic::Status> {
        match self {
            Error::Rpc { status, .. } | Error::ImportBatch { status, .. } => Some(status),
            _ => None,
        }
    }
}

/// Joins an error and its sources with `: `, skipping a source whose text its parent repeats.
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text = format!("{text}: {cause_text}");
        }
        source = cause.source();
    }
    text
}

/// Returns the canonical upper-case name of a gRPC status code, as in the gRPC specification.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}
