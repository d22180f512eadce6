//! The one place where a service opens channels to other services and signs its calls.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use docket_auth::{MintError, Role, Signer};
use tonic::transport::{Channel, Endpoint};

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
