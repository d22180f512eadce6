//! Connections to the Docket services, with the caller's name attached to every request.

use std::time::Duration;

use docket_proto::audit::v1::audit_service_client::AuditServiceClient;
use docket_proto::metrics::v1::metrics_service_client::MetricsServiceClient;
use docket_proto::ticket::v1::ticket_service_client::TicketServiceClient;
use tonic::metadata::MetadataValue;
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

use crate::error::Error;

/// Metadata key that carries the acting user's name to the services.
pub const ACTOR_HEADER: &str = "x-docket-actor";

/// How long to wait for a TCP connection to a service.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Adds `x-docket-actor` to every request when an actor is known.
#[derive(Clone, Debug)]
pub struct ActorInterceptor {
    actor: Option<MetadataValue<tonic::metadata::Ascii>>,
}

impl ActorInterceptor {
    /// Validates `actor` as a metadata value: visible ASCII, at most 256 characters.
    pub fn new(actor: Option<&str>) -> Result<ActorInterceptor, Error> {
        let actor = actor.map(str::trim).filter(|actor| !actor.is_empty());
        let Some(actor) = actor else {
            return Ok(ActorInterceptor { actor: None });
        };
        let invalid = |reason: &str| Error::InvalidArgument {
            flag: "--actor",
            value: actor.to_owned(),
            reason: reason.to_owned(),
        };
        if actor.len() > 256 {
            return Err(invalid("use at most 256 characters"));
        }
        // HTTP/2 header values may carry other bytes, but gRPC ASCII metadata is visible ASCII and spaces.
        if !actor.chars().all(|c| c.is_ascii_graphic() || c == ' ') {
            return Err(invalid("use visible ASCII characters only"));
        }
        let value = MetadataValue::try_from(actor).map_err(|_| invalid("use visible ASCII characters only"))?;
        Ok(ActorInterceptor { actor: Some(value) })
    }
}

impl Interceptor for ActorInterceptor {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(actor) = &self.actor {
            request.metadata_mut().insert(ACTOR_HEADER, actor.clone());
        }
        Ok(request)
    }
}

pub type Intercepted = InterceptedService<Channel, ActorInterceptor>;
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

pub async fn ticket_client(target: &Target, actor: &ActorInterceptor, timeout: Duration) -> Result<TicketClient, Error> {
    let channel = connect(target, timeout).await?;
    Ok(TicketServiceClient::with_interceptor(channel, actor.clone()))
}

pub async fn audit_client(target: &Target, actor: &ActorInterceptor, timeout: Duration) -> Result<AuditClient, Error> {
    let channel = connect(target, timeout).await?;
    Ok(AuditServiceClient::with_interceptor(channel, actor.clone()))
}

pub async fn metrics_client(target: &Target, actor: &ActorInterceptor, timeout: Duration) -> Result<MetricsClient, Error> {
    let channel = connect(target, timeout).await?;
    Ok(MetricsServiceClient::with_interceptor(channel, actor.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actor_header_is_added() {
        let mut interceptor = ActorInterceptor::new(Some("alice")).unwrap();
        let request = interceptor.call(tonic::Request::new(())).unwrap();
        assert_eq!(request.metadata().get(ACTOR_HEADER).unwrap(), "alice");
    }

    #[test]
    fn empty_actor_sends_no_header() {
        let mut interceptor = ActorInterceptor::new(Some("  ")).unwrap();
        let request = interceptor.call(tonic::Request::new(())).unwrap();
        assert!(request.metadata().get(ACTOR_HEADER).is_none());
    }

    #[test]
    fn non_ascii_actor_is_rejected() {
        assert!(ActorInterceptor::new(Some("zoë")).is_err());
    }

    #[test]
    fn address_gets_http_scheme() {
        assert_eq!(endpoint_uri("127.0.0.1:50051"), "http://127.0.0.1:50051");
        assert_eq!(endpoint_uri("http://127.0.0.1:1"), "http://127.0.0.1:1");
    }
}
