//! Server-side tower layer: one span per gRPC call, named `<service>.<rpc>` and parented on
//! the caller's trace context.

use std::task::{Context, Poll};

use opentelemetry::trace::TraceContextExt as _;
use tower::{Layer, Service};
use tracing::instrument::{Instrument, Instrumented};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::propagation::extract_parent;

/// Wraps every call in a server span. `service` is the short service name, such as `ticket`.
#[derive(Clone, Debug)]
pub struct GrpcTraceLayer {
    service: &'static str,
}

impl GrpcTraceLayer {
    pub fn new(service: &'static str) -> Self {
        Self { service }
    }

    /// Wraps one gRPC service, keeping its name for the router.
    pub fn wrap<S>(&self, inner: S) -> GrpcTrace<S> {
        GrpcTrace {
            inner,
            service: self.service,
        }
    }
}

impl<S> Layer<S> for GrpcTraceLayer {
    type Service = GrpcTrace<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcTrace {
            inner,
            service: self.service,
        }
    }
}

#[derive(Clone, Debug)]
pub struct GrpcTrace<S> {
    inner: S,
    service: &'static str,
}

impl<S: tonic::server::NamedService> tonic::server::NamedService for GrpcTrace<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B> Service<http::Request<B>> for GrpcTrace<S>
where
    S: Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Instrumented<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let path = request.uri().path();
        let rpc = path.rsplit('/').next().unwrap_or(path);
        let grpc_service = path.trim_start_matches('/').split('/').next().unwrap_or_default();
        let span = tracing::info_span!(
            "grpc.request",
            otel.name = %format_args!("{}.{}", self.service, rpc),
            otel.kind = "server",
            rpc.system = "grpc",
            rpc.service = %grpc_service,
            rpc.method = %rpc,
            trace_id = tracing::field::Empty,
        );
        // A malformed traceparent leaves the span as the root of a new trace.
        let _ = span.set_parent(extract_parent(request.headers()));
        let trace_id = span.context().span().span_context().trace_id();
        span.record("trace_id", tracing::field::display(trace_id));
        self.inner.call(request).instrument(span)
    }
}
