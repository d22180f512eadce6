//! The gRPC server every service runs: explicit HTTP/2 limits, health and reflection.

mod stream;

use std::net::SocketAddr;
use std::time::Duration;

use socket2::{SockRef, TcpKeepalive};
use tokio::net::TcpListener;
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::Server;
use tonic::transport::server::Router;
use tower::layer::util::{Identity, Stack};

pub use crate::settings::GrpcLimits;
pub use crate::wire::WireLayer;
pub use stream::AcceptedStream;

/// Largest request a service decodes, in bytes: the default of
/// `--grpc-max-decoding-message-size`. A batch of 1000 events fits well inside.
pub const MAX_DECODING_MESSAGE_SIZE: usize = 8 * 1024 * 1024;

/// Default of `--grpc-max-buffered-request-bytes`: eight messages of the default maximum
/// size may be arriving at once, over all connections.
pub const MAX_BUFFERED_REQUEST_BYTES: usize = 8 * MAX_DECODING_MESSAGE_SIZE;

/// Largest response a service encodes, in bytes: the default of
/// `--grpc-max-encoding-message-size`.
pub const MAX_ENCODING_MESSAGE_SIZE: usize = 16 * 1024 * 1024;

/// Default of `--grpc-max-concurrent-streams`.
pub const MAX_CONCURRENT_STREAMS: u32 = 256;

/// Default of `--grpc-concurrency-limit-per-connection`.
pub const CONCURRENCY_LIMIT_PER_CONNECTION: usize = 256;

/// Default of `--grpc-request-timeout`.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Default of `--grpc-http2-keepalive-interval`.
pub const HTTP2_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);

/// Default of `--grpc-http2-keepalive-timeout`.
pub const HTTP2_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// Default of `--grpc-max-header-list-size`, in bytes.
pub const MAX_HEADER_LIST_SIZE: u32 = 16 * 1024;

/// Default of `--grpc-max-pending-accept-reset-streams`.
pub const MAX_PENDING_ACCEPT_RESET_STREAMS: usize = 50;

/// Default of `--grpc-max-local-error-reset-streams`.
pub const MAX_LOCAL_ERROR_RESET_STREAMS: usize = 256;

/// The tonic server builder of every service, with [`WireLayer`] around all its services.
pub type DocketServer = Server<Stack<WireLayer, Identity>>;

/// The router that [`DocketServer::add_service`] returns.
pub type DocketRouter = Router<Stack<WireLayer, Identity>>;

/// Returns a server builder with the default [`GrpcLimits`].
pub fn server_builder() -> DocketServer {
    server_builder_with(&GrpcLimits::default())
}

/// Returns a server builder with every HTTP/2 and timeout limit set from `limits` rather than
/// left to tonic, because tonic 0.14 leaves several of them unlimited when unset.
///
/// Every service of the server is wrapped in a [`WireLayer`], which rejects a request
/// message over `max_decoding_message_size` from its header and bounds the bytes of the
/// messages over 64 KiB still arriving to `max_buffered_request_bytes`. Apply the message-size limits to
/// each generated service too, with `max_decoding_message_size` and
/// `max_encoding_message_size`. The TCP settings here only take effect with `Router::serve`;
/// with `serve_with_incoming*`, which the services use, [`bind_with`] applies them to the
/// listening socket instead.
pub fn server_builder_with(limits: &GrpcLimits) -> DocketServer {
    Server::builder()
        .timeout(limits.request_timeout)
        .max_concurrent_streams(limits.max_concurrent_streams)
        .concurrency_limit_per_connection(limits.concurrency_limit_per_connection)
        .http2_max_header_list_size(limits.max_header_list_size)
        .http2_max_pending_accept_reset_streams(Some(limits.max_pending_accept_reset_streams))
        .http2_max_local_error_reset_streams(Some(limits.max_local_error_reset_streams))
        .http2_keepalive_interval(Some(limits.http2_keepalive_interval))
        .http2_keepalive_timeout(Some(limits.http2_keepalive_timeout))
        .tcp_keepalive(limits.tcp_keepalive())
        .tcp_nodelay(true)
        .layer(WireLayer::new(limits.max_decoding_message_size, limits.max_buffered_request_bytes))
}

/// Binds the listening socket; port 0 picks a free port, which tests use.
///
/// NOTE: tonic ignores its own `tcp_nodelay` and `tcp_keepalive` settings for the stream this
/// returns, so accepted connections keep the kernel defaults (Nagle on, keepalive off). Use
/// [`bind_with`] to set them.
pub async fn bind(address: SocketAddr) -> std::io::Result<(TcpListenerStream, SocketAddr)> {
    let listener = TcpListener::bind(address).await?;
    let local = listener.local_addr()?;
    Ok((TcpListenerStream::new(listener), local))
}

/// Binds the listening socket like [`bind`] and sets TCP_NODELAY and the TCP keepalive of
/// `limits` on it. Linux copies these options from the listening socket to each accepted
/// connection, which a unit test below checks. Other systems may not.
pub async fn bind_with(address: SocketAddr, limits: &GrpcLimits) -> std::io::Result<(TcpListenerStream, SocketAddr)> {
    let listener = TcpListener::bind(address).await?;
    let socket = SockRef::from(&listener);
    socket.set_tcp_nodelay(true)?;
    match limits.tcp_keepalive() {
        Some(idle) => socket.set_tcp_keepalive(&TcpKeepalive::new().with_time(idle))?,
        None => socket.set_keepalive(false)?,
    }
    let local = listener.local_addr()?;
    Ok((TcpListenerStream::new(listener), local))
}

/// Builds the reflection services (v1 and v1alpha). They list `service_name`, gRPC health and
/// reflection itself, not the other Docket services, whose descriptors share the embedded set.
pub fn reflection(
    service_name: &'static str,
) -> (
    tonic_reflection::server::v1::ServerReflectionServer<impl tonic_reflection::server::v1::ServerReflection>,
    tonic_reflection::server::v1alpha::ServerReflectionServer<impl tonic_reflection::server::v1alpha::ServerReflection>,
) {
    let builder = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(docket_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .with_service_name(service_name)
            .with_service_name("grpc.health.v1.Health")
    };
    let v1 = builder()
        .build_v1()
        .expect("the embedded descriptor set was produced by the build script and decodes");
    let v1alpha = builder()
        .build_v1alpha()
        .expect("the embedded descriptor set was produced by the build script and decodes");
    (v1, v1alpha)
}

/// Serves `router` until `shutdown` completes, then lets in-flight calls finish for at most
/// `grace` before returning.
///
/// `stopping` turns true as soon as `shutdown` completes, before the drain, so health reports
/// NOT_SERVING and background tasks such as the outbox relay stop while calls finish.
pub async fn serve_with_grace<F>(
    router: DocketRouter,
    incoming: TcpListenerStream,
    shutdown: F,
    grace: Duration,
    stopping: &tokio::sync::watch::Sender<bool>,
) -> Result<(), tonic::transport::Error>
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let (draining_tx, draining_rx) = tokio::sync::oneshot::channel::<()>();
    let signal = async move {
        shutdown.await;
        let _ = draining_tx.send(());
    };
    let incoming = incoming.map(|accepted| accepted.map(AcceptedStream::new));
    let server = router.serve_with_incoming_shutdown(incoming, signal);
    tokio::pin!(server);

    tokio::select! {
        result = &mut server => return result,
        _ = draining_rx => {}
    }
    let _ = stopping.send(true);
    match tokio::time::timeout(grace, &mut server).await {
        Ok(result) => result,
        Err(_) => {
            tracing::warn!(grace_ms = grace.as_millis() as u64, "in-flight calls still running after the grace period, stopping");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use socket2::SockRef;
    use tokio_stream::StreamExt;

    use super::*;

    async fn accept_one(limits: &GrpcLimits) -> tokio::net::TcpStream {
        let (mut incoming, local) = bind_with("127.0.0.1:0".parse().unwrap(), limits).await.expect("bind");
        let _client = tokio::net::TcpStream::connect(local).await.expect("connect");
        incoming.next().await.expect("a connection").expect("accept")
    }

    #[tokio::test]
    async fn bind_with_sets_keepalive_on_accepted_connections() {
        let limits = GrpcLimits {
            tcp_keepalive: Duration::from_secs(75),
            ..GrpcLimits::default()
        };
        let accepted = accept_one(&limits).await;
        let socket = SockRef::from(&accepted);
        assert!(socket.keepalive().unwrap());
        assert_eq!(socket.tcp_keepalive_time().unwrap(), Duration::from_secs(75));
    }

    #[tokio::test]
    async fn bind_with_sets_nodelay_on_accepted_connections() {
        let accepted = accept_one(&GrpcLimits::default()).await;
        assert!(accepted.nodelay().unwrap());
    }

    #[tokio::test]
    async fn bind_leaves_nodelay_off() {
        let (mut incoming, local) = bind("127.0.0.1:0".parse().unwrap()).await.expect("bind");
        let _client = tokio::net::TcpStream::connect(local).await.expect("connect");
        let accepted = incoming.next().await.expect("a connection").expect("accept");
        assert!(!accepted.nodelay().unwrap());
    }

    #[tokio::test]
    async fn bind_with_leaves_keepalive_off_by_default() {
        let accepted = accept_one(&GrpcLimits::default()).await;
        assert!(!SockRef::from(&accepted).keepalive().unwrap());
    }
}
