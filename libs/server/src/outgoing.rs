//! The one place where a service opens channels to other services.

use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

use crate::caller::ACTOR_HEADER;

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

/// Wraps a message for an outgoing call made on behalf of `subject`, carrying the current
/// span's W3C trace context so the callee continues the same trace.
pub fn request<T>(message: T, subject: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Ok(value) = subject.parse() {
        request.metadata_mut().insert(ACTOR_HEADER, value);
    }
    docket_telemetry::inject_current(request.metadata_mut());
    request
}
