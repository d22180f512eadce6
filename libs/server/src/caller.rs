//! The one place where the caller's identity enters a request.

use tonic::Request;

/// Metadata key that names the caller until token authentication replaces it.
pub const ACTOR_HEADER: &str = "x-docket-actor";

/// Subject used when a request names no caller.
pub const ANONYMOUS: &str = "anonymous";

/// Who made a request, as every service records it in history and audit records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub subject: String,
}

impl Caller {
    /// Reads the caller from the request metadata.
    ///
    /// NOTE: the subject is taken from the `x-docket-actor` header as the client sends
    /// it, so any client can claim any name; signed tokens are not checked yet.
    pub fn from_request<T>(request: &Request<T>) -> Caller {
        let subject = request
            .metadata()
            .get(ACTOR_HEADER)
            .and_then(|value| value.to_str().ok())
            .map(str::trim)
            .filter(|value| !value.is_empty() && value.len() <= 256)
            .unwrap_or(ANONYMOUS);
        Caller {
            subject: subject.to_owned(),
        }
    }
}
