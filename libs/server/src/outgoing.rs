//! The one place where a service opens channels to other services and signs its calls.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use clap::Args;
use docket_auth::{MintError, Role, Signer};
use tonic::transport::{Channel, Endpoint};

use crate::AuthSettings;

/// The key a service signs its own calls to other services with.
#[derive(Clone, Debug, Args)]
pub struct SigningSettings {
    /// Ed25519 private key (PKCS#8 PEM) that signs this service's tokens for its calls to
    /// other services. Their key directories must hold the public key under
    /// --service-key-id.
    #[arg(long, env = "DOCKET_SERVICE_SIGNING_KEY", value_name = "FILE")]
    pub service_signing_key: PathBuf,

    /// Key id (`kid`) written into this service's tokens: the file stem of its public key in
    /// the other services' key directories. Defaults to the service's subject, for example
    /// docket-ticket.
    #[arg(long, env = "DOCKET_SERVICE_KEY_ID", value_name = "KID")]
    pub service_key_id: Option<String>,
}

/// Reasons the signing key cannot be loaded. Each one stops the service at start.
#[derive(Debug, thiserror::Error)]
pub enum SigningKeyError {
    #[error("invalid setting --service-signing-key: cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },

    #[error("invalid setting --service-signing-key: {path}: {reason}; create a key with `docket token keygen`")]
    Parse { path: PathBuf, reason: String },
}

impl SigningSettings {
    /// Reads the signing key and returns the credentials of `subject`, whose tokens carry the
    /// issuer and audience that the other services verify.
    pub fn credentials(&self, subject: &str, auth: &AuthSettings) -> Result<ServiceCredentials, SigningKeyError> {
        let path = &self.service_signing_key;
        let pem = std::fs::read(path).map_err(|source| SigningKeyError::Read { path: path.clone(), source })?;
        let kid = self.service_key_id.clone().unwrap_or_else(|| subject.to_owned());
        let signer = Signer::from_pem(&pem, kid, auth.jwt_issuer.clone(), auth.jwt_audience.clone())
            .map_err(|error| SigningKeyError::Parse { path: path.clone(), reason: error.to_string() })?;
        Ok(ServiceCredentials::new(signer, subject))
    }
}

/// Checks that a peer address is a host and port or a URL that a channel can be built
/// for, as a clap value parser.
pub fn parse_peer_address(text: &str) -> Result<String, String> {
    let uri = if text.contains("://") { text.to_owned() } else { format!("http://{text}") };
    match Endpoint::from_shared(uri) {
        Ok(endpoint) if endpoint.uri().port_u16().is_some() => Ok(text.to_owned()),
        Ok(_) => Err(format!("address {text:?} has no port; write host:port, for example 127.0.0.1:50052")),
        Err(error) => Err(format!("invalid address {text:?}: {error}; write host:port, for example 127.0.0.1:50052")),
    }
}

/// Lifetime of a service token. Short, because nothing revokes a token before it expires.
pub const SERVICE_TOKEN_TTL: Duration = Duration::from_secs(5 * 60);

/// A token is minted again once less than this much of its lifetime is left, so a call in
/// flight never carries a token that expires before the callee verifies it.
const SERVICE_TOKEN_RENEW_BEFORE: Duration = Duration::from_secs(60);

/// Builds a channel that connects on first use and reconnects after failures, so a
/// service starts even while its peers are down.
pub fn channel(address: &str) -> Result<Channel, tonic::transport::Error> {
    let uri = if address.contains("://") {
        address.to_owned()
    } else {
        format!("http://{address}")
    };
    let endpoint = Endpoint::from_shared(uri)?
        .connect_timeout(Duration::from_secs(3))
        .timeout(Duration::from_secs(30))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(10));
    Ok(endpoint.connect_lazy())
}

/// The identity a service uses for its own calls: a signing key and a subject, with the
/// current token cached until it is close to expiry.
pub struct ServiceCredentials {
    signer: Signer,
    subject: String,
    current: Mutex<Option<(String, Instant)>>,
}

impl std::fmt::Debug for ServiceCredentials {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("ServiceCredentials")
            .field("subject", &self.subject)
            .field("kid", &self.signer.kid())
            .finish_non_exhaustive()
    }
}

impl ServiceCredentials {
    pub fn new(signer: Signer, subject: impl Into<String>) -> Self {
        Self {
            signer,
            subject: subject.into(),
            current: Mutex::new(None),
        }
    }

    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// Returns a token with the `service` role, minting a new one when the cached one has
    /// less than a minute left.
    pub fn token(&self) -> Result<String, MintError> {
        let mut current = self.current.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((token, renew_at)) = current.as_ref()
            && Instant::now() < *renew_at
        {
            return Ok(token.clone());
        }
        let token = self.signer.mint(&self.subject, &[Role::Service], SERVICE_TOKEN_TTL)?;
        let renew_at = Instant::now() + (SERVICE_TOKEN_TTL - SERVICE_TOKEN_RENEW_BEFORE);
        *current = Some((token.clone(), renew_at));
        tracing::debug!(subject = %self.subject, "minted service token");
        Ok(token)
    }
}

/// Wraps a message for an outgoing call signed with the service's own token, carrying the
/// current span's W3C trace context so the callee continues the same trace.
pub fn request<T>(message: T, credentials: &ServiceCredentials) -> Result<tonic::Request<T>, MintError> {
    let token = credentials.token()?;
    let mut request = tonic::Request::new(message);
    let value = format!("Bearer {token}")
        .parse()
        .map_err(|_| MintError::Signing { reason: "the token is not valid header text".to_owned() })?;
    request.metadata_mut().insert(docket_auth::AUTHORIZATION, value);
    docket_telemetry::inject_current(request.metadata_mut());
    Ok(request)
}
