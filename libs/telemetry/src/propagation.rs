//! W3C trace context (`traceparent`, `tracestate`) in gRPC metadata and HTTP headers.

use opentelemetry::Context;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt;

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|name| name.as_str()).collect()
    }
}

struct MetadataInjector<'a>(&'a mut tonic::metadata::MetadataMap);

impl Injector for MetadataInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        let Ok(key) = tonic::metadata::MetadataKey::from_bytes(key.as_bytes()) else {
            return;
        };
        if let Ok(value) = value.parse() {
            self.0.insert(key, value);
        }
    }
}

struct StringInjector(Option<String>);

impl Injector for StringInjector {
    fn set(&mut self, key: &str, value: String) {
        if key == "traceparent" {
            self.0 = Some(value);
        }
    }
}

struct StringExtractor<'a>(&'a str);

impl Extractor for StringExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        (key == "traceparent").then_some(self.0)
    }

    fn keys(&self) -> Vec<&str> {
        vec!["traceparent"]
    }
}

/// Reads the caller's trace context from request headers; an empty context when absent or invalid.
pub fn extract_parent(headers: &http::HeaderMap) -> Context {
    TraceContextPropagator::new().extract(&HeaderExtractor(headers))
}

/// Writes the current span's trace context into outgoing gRPC metadata.
pub fn inject_current(metadata: &mut tonic::metadata::MetadataMap) {
    let context = tracing::Span::current().context();
    TraceContextPropagator::new().inject_context(&context, &mut MetadataInjector(metadata));
}

/// Returns the current span's `traceparent` value, for storing with work that continues later.
pub fn current_traceparent() -> Option<String> {
    let context = tracing::Span::current().context();
    if !context.span().span_context().is_valid() {
        return None;
    }
    let mut injector = StringInjector(None);
    TraceContextPropagator::new().inject_context(&context, &mut injector);
    injector.0
}

/// Returns the current span's trace id as 32 lowercase hex digits, or `None` outside a trace.
pub fn current_trace_id() -> Option<String> {
    let context = tracing::Span::current().context();
    let span_context = context.span().span_context().clone();
    span_context.is_valid().then(|| span_context.trace_id().to_string())
}

/// Rebuilds a remote parent context from a stored `traceparent`; an empty context when invalid.
pub fn context_from_traceparent(traceparent: &str) -> Context {
    TraceContextPropagator::new().extract(&StringExtractor(traceparent))
}

/// Makes `span` continue the trace of the first stored `traceparent` and links the traces
/// of the others. Values that do not parse are skipped.
pub fn continue_stored_traces<'a>(span: &tracing::Span, traceparents: impl IntoIterator<Item = &'a str>) {
    let mut contexts = traceparents
        .into_iter()
        .map(context_from_traceparent)
        .filter(|context| context.span().span_context().is_valid());
    if let Some(first) = contexts.next() {
        // set_parent fails when no OpenTelemetry layer is installed or the span is disabled.
        // The span then stays outside any trace, and nothing else needs to happen.
        let _ = span.set_parent(first);
    }
    for other in contexts {
        span.add_link(other.span().span_context().clone());
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::TraceContextExt;

    use super::*;

    const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn traceparent_round_trips_through_context() {
        let context = context_from_traceparent(TRACEPARENT);
        let span_context = context.span().span_context().clone();
        assert!(span_context.is_valid());
        assert_eq!(span_context.trace_id().to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(span_context.span_id().to_string(), "00f067aa0ba902b7");
    }

    #[test]
    fn malformed_traceparent_gives_empty_context() {
        for bad in ["", "00-zz-00f067aa0ba902b7-01", "00-00000000000000000000000000000000-00f067aa0ba902b7-01"] {
            let context = context_from_traceparent(bad);
            assert!(!context.span().span_context().is_valid(), "accepted {bad:?}");
        }
    }

    #[test]
    fn extract_parent_reads_the_traceparent_header() {
        let mut headers = http::HeaderMap::new();
        headers.insert("traceparent", TRACEPARENT.parse().unwrap());
        let context = extract_parent(&headers);
        assert_eq!(context.span().span_context().trace_id().to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
    }
}
