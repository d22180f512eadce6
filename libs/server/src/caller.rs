//! The one place where the caller's identity enters a request.

use docket_auth::{Principal, PrincipalKind, Role};
use tonic::{Request, Status};

/// Identity of the caller of a request, as every service records it in history and audit records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// The token's `sub` claim: a user name, or a service name such as `docket-ticket`.
    pub subject: String,
    pub kind: PrincipalKind,
    /// The token's roles, sorted and never empty.
    pub roles: Vec<Role>,
    principal: Principal,
}

impl Caller {
    /// Reads the caller from the [`Principal`] that [`crate::auth::AuthLayer`] stored in the
    /// request extensions after verifying the bearer token.
    ///
    /// Fails with UNAUTHENTICATED when no principal is there, which happens only when a
    /// service is served without the layer.
    pub fn from_request<T>(request: &Request<T>) -> Result<Caller, Status> {
        let principal = request.extensions().get::<Principal>().ok_or_else(|| {
            tracing::error!("request reached a handler without an authenticated principal; wrap the service in AuthLayer");
            Status::unauthenticated("missing credentials: the request was not authenticated; send `authorization: Bearer <token>`")
        })?;
        Ok(Caller {
            subject: principal.subject.clone(),
            kind: principal.kind,
            roles: principal.roles.clone(),
            principal: principal.clone(),
        })
    }

    /// Returns the verified principal, for the ticket-level rules of `docket_auth`.
    pub fn principal(&self) -> &Principal {
        &self.principal
    }
}
