//! The gRPC server every service runs: explicit HTTP/2 limits, health and reflection.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::Server;

/// Largest request a service decodes, in bytes. A batch of 1000 events fits well inside.
pub const MAX_DECODING_MESSAGE_SIZE: usize = 8 * 1024 * 1024;

/// Largest response a service encodes, in bytes.
pub const MAX_ENCODING_MESSAGE_SIZE: usize = 16 * 1024 * 1024;

/// Returns a server builder with the HTTP/2 and timeout limits set explicitly instead of
/// taken from library defaults.
pub fn server_builder() -> Server {
    Server::builder()
        .timeout(Duration::from_secs(30))
        .max_concurrent_streams(256)
        .concurrency_limit_per_connection(256)
        .http2_max_header_list_size(16 * 1024)
        .http2_max_pending_accept_reset_streams(Some(50))
        .http2_max_local_error_reset_streams(Some(256))
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)))
        .tcp_nodelay(true)
}

/// Binds the listening socket; port 0 picks a free port, which tests use.
pub async fn bind(address: SocketAddr) -> std::io::Result<(TcpListenerStream, SocketAddr)> {
    let listener = TcpListener::bind(address).await?;
    let local = listener.local_addr()?;
    Ok((TcpListenerStream::new(listener), local))
}

/// Builds the reflection services (v1 and v1alpha) for the Docket contracts and health.
pub fn reflection() -> (
    tonic_reflection::server::v1::ServerReflectionServer<impl tonic_reflection::server::v1::ServerReflection>,
    tonic_reflection::server::v1alpha::ServerReflectionServer<impl tonic_reflection::server::v1alpha::ServerReflection>,
) {
    let v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(docket_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .expect("the embedded descriptor set was produced by the build script and decodes");
    let v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(docket_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .expect("the embedded descriptor set was produced by the build script and decodes");
    (v1, v1alpha)
}

/// Serves `router` until `shutdown` completes, then lets in-flight calls finish for at most
/// `grace` before returning.
pub async fn serve_with_grace<F>(
    router: tonic::transport::server::Router,
    incoming: TcpListenerStream,
    shutdown: F,
    grace: Duration,
) -> Result<(), tonic::transport::Error>
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let (draining_tx, draining_rx) = tokio::sync::oneshot::channel::<()>();
    let signal = async move {
        shutdown.await;
        let _ = draining_tx.send(());
    };
    let server = router.serve_with_incoming_shutdown(incoming, signal);
    tokio::pin!(server);

    tokio::select! {
        result = &mut server => return result,
        _ = draining_rx => {}
    }
    match tokio::time::timeout(grace, &mut server).await {
        Ok(result) => result,
        Err(_) => {
            tracing::warn!(grace_ms = grace.as_millis() as u64, "in-flight calls still running after the grace period, stopping");
            Ok(())
        }
    }
}
