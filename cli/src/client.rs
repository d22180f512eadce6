//! Connections to the Docket services, with the caller's bearer token attached to every request.

use std::time::Duration;

use docket_proto::audit::v1::audit_service_client::AuditServiceClient;
use docket_proto::metrics::v1::metrics_service_client::MetricsServiceClient;
use docket_proto::ticket::v1::ticket_service_client::TicketServiceClient;
use tonic::metadata::MetadataValue;
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

use crate::error::Error;

/// How long to wait for a TCP connection to a service.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Largest response the CLI decodes: the services' default `--grpc-max-encoding-message-size`.
/// tonic's own default of 4 MiB would reject a ticket with many long comments that the
/// service sends intact.
pub const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;

/// Adds `authorization: Bearer <token>` to every request when a token is set. Without one
/// the services return UNAUTHENTICATED.
#[derive(Clone)]
pub struct TokenInterceptor {
    authorization: Option<MetadataValue<tonic::metadata::Ascii>>,
}

impl std::fmt::Debug for TokenInterceptor {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let token = self.authorization.as_ref().map(|_| "[redacted]");
        formatter.debug_struct("TokenInterceptor").field("authorization", &token).finish()
    }
}

impl TokenInterceptor {
    /// Checks that `token` fits in gRPC ASCII metadata. The value itself never appears in an
    /// error message, because it is a credential.
    pub fn new(token: Option<&str>) -> Result<TokenInterceptor, Error> {
        let token = token.map(str::trim).filter(|token| !token.is_empty());
        let Some(token) = token else {
            return Ok(TokenInterceptor { authorization: None });
        };
        let invalid = || Error::InvalidArgument {
            flag: "--token",
            value: "[redacted]".to_owned(),
            reason: "a token is visible ASCII without spaces; mint one with `docket token mint`".to_owned(),
        };
        if !token.chars().all(|c| c.is_ascii_graphic()) {
            return Err(invalid());
        }
        let value = MetadataValue::try_from(format!("Bearer {token}")).map_err(|_| invalid())?;
        Ok(TokenInterceptor { authorization: Some(value) })
    }
}

impl Interceptor for TokenInterceptor {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(authorization) = &self.authorization {
            request.metadata_mut().insert("authorization", authorization.clone());
        }
        Ok(request)
    }
}

pub type Intercepted = InterceptedService<Channel, TokenInterceptor>;
pub type TicketClient = TicketServiceClient<Intercepted>;
pub type AuditClient = AuditServiceClient<Intercepted>;
pub type MetricsClient = MetricsServiceClient<Intercepted>;

/// One service to connect to: its name for messages, the flag that sets its address, and the address.
#[derive(Clone, Debug)]
pub struct Target {
    pub service: &'static str,
    pub flag: &'static str,
    pub addr: String,
}

/// Turns `host:port` into an `http://` URI; an address that already has a scheme is kept.
pub fn endpoint_uri(addr: &str) -> String {
    if addr.contains("://") { addr.to_owned() } else { format!("http://{addr}") }
}

/// Connects to `target`, failing after five seconds; `request_timeout` bounds every call.
pub async fn connect(target: &Target, request_timeout: Duration) -> Result<Channel, Error> {
    let endpoint = Endpoint::from_shared(endpoint_uri(&target.addr)).map_err(|error| Error::InvalidArgument {
        flag: target.flag,
        value: target.addr.clone(),
        reason: format!("{error}; expected HOST:PORT such as 127.0.0.1:50051"),
    })?;
    endpoint
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(request_timeout)
        .connect()
        .await
        .map_err(|source| Error::Connect {
            service: target.service,
            addr: target.addr.clone(),
            flag: target.flag,
            cause: crate::error::chain(&source),
            source,
        })
}

pub async fn ticket_client(target: &Target, token: &TokenInterceptor, timeout: Duration) -> Result<TicketClient, Error> {
    let channel = connect(target, timeout).await?;
    Ok(TicketServiceClient::with_interceptor(channel, token.clone()).max_decoding_message_size(MAX_RESPONSE_BYTES))
}

pub async fn audit_client(target: &Target, token: &TokenInterceptor, timeout: Duration) -> Result<AuditClient, Error> {
    let channel = connect(target, timeout).await?;
    Ok(AuditServiceClient::with_interceptor(channel, token.clone()).max_decoding_message_size(MAX_RESPONSE_BYTES))
}

pub async fn metrics_client(target: &Target, token: &TokenInterceptor, timeout: Duration) -> Result<MetricsClient, Error> {
    let channel = connect(target, timeout).await?;
    Ok(MetricsServiceClient::with_interceptor(channel, token.clone()).max_decoding_message_size(MAX_RESPONSE_BYTES))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_is_sent_as_bearer() {
        let mut interceptor = TokenInterceptor::new(Some("aaa.bbb.ccc")).unwrap();
        let request = interceptor.call(tonic::Request::new(())).unwrap();
        assert_eq!(request.metadata().get("authorization").unwrap(), "Bearer aaa.bbb.ccc");
    }

    #[test]
    fn empty_token_sends_no_header() {
        let mut interceptor = TokenInterceptor::new(Some("  ")).unwrap();
        let request = interceptor.call(tonic::Request::new(())).unwrap();
        assert!(request.metadata().get("authorization").is_none());
    }

    #[test]
    fn token_with_space_is_rejected_without_echo() {
        let error = TokenInterceptor::new(Some("secret part")).unwrap_err();
        assert!(!error.to_string().contains("secret"), "{error}");
    }

    #[test]
    fn address_gets_http_scheme() {
        assert_eq!(endpoint_uri("127.0.0.1:50051"), "http://127.0.0.1:50051");
        assert_eq!(endpoint_uri("http://127.0.0.1:1"), "http://127.0.0.1:1");
    }
}
