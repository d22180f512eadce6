//! Authentication and authorization for the Docket services.
//!
//! A service builds one [`Verifier`] at startup and, for each request, calls
//! [`Verifier::authenticate`] on the request metadata to get the [`Principal`], then
//! [`authorize`] with the RPC being served. Ticket changes that depend on the ticket's
//! assignee also go through [`authorize_ticket_change`]. An [`AuthError`] converts to
//! UNAUTHENTICATED and a [`Denied`] to PERMISSION_DENIED. docs/security.md describes the
//! token requirements and the permission table.

mod authz;
mod bearer;
mod claims;
mod error;
mod keys;
mod principal;
mod rpc;
mod signer;
mod verifier;

pub use authz::{
    Denied, TicketChange, TicketChangeKind, allowed_roles, authorize, authorize_path,
    authorize_ticket_change,
};
pub use bearer::{AUTHORIZATION, MAX_TOKEN_BYTES, bearer_token};
pub use claims::MAX_CLAIM_TEXT_BYTES;
pub use error::{AuthError, ConfigError, MintError};
pub use keys::{KeySource, MIN_RSA_BITS};
pub use principal::{Principal, PrincipalKind, Role, UnknownRole};
pub use rpc::Rpc;
pub use signer::{Ed25519KeyPair, MAX_TTL, Signer, generate_ed25519_keypair};
pub use verifier::{MAX_LEEWAY, MIN_DEV_SECRET_BYTES, Verifier, VerifierConfig};

/// The JWK types of [`KeySource::Jwks`], re-exported so callers need no direct
/// jsonwebtoken dependency.
pub use jsonwebtoken::jwk;
