//! Logging and tracing for the Docket services.
//!
//! Every service logs through `tracing`, as text or JSON. Spans also go to OpenTelemetry:
//! trace ids are always generated, so log lines inside a request carry one, and spans are
//! exported over OTLP/gRPC only when the standard `OTEL_*` variables name an endpoint.
//! W3C trace context travels in gRPC metadata in both directions.

mod init;
mod layer;
mod propagation;

pub use init::{LogFormat, Telemetry, init};
pub use layer::GrpcTraceLayer;
pub use propagation::{
    context_from_traceparent, continue_stored_traces, current_trace_id, current_traceparent, extract_parent, inject_current,
};
