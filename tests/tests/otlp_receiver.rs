//! The OTLP receiver of the test harness, fed by the same OTLP/gRPC exporter the services use.

use std::time::Duration;

use docket_tests::otlp::{OtlpReceiver, SpanKind};
use opentelemetry::trace::{Span as _, TraceContextExt as _, Tracer as _, TracerProvider as _};
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;

const WAIT: Duration = Duration::from_secs(10);

/// Builds a provider that exports to `receiver` only, whatever the OTEL_* variables set,
/// because an endpoint set in code takes precedence over them in opentelemetry-otlp 0.33.
fn provider_for(receiver: &OtlpReceiver) -> SdkTracerProvider {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(receiver.endpoint())
        .build()
        .expect("the OTLP exporter builds");
    SdkTracerProvider::builder()
        .with_resource(Resource::builder().with_service_name("docket-otlp-test").build())
        .with_batch_exporter(exporter)
        .build()
}

/// Flushes on a blocking thread, because the batch processor blocks its caller until the
/// export finishes and the export itself needs the Tokio workers.
async fn flush(provider: &SdkTracerProvider) {
    let provider = provider.clone();
    tokio::task::spawn_blocking(move || provider.force_flush())
        .await
        .expect("the flush thread does not panic")
        .expect("the batch processor flushes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exported_span_arrives_with_its_trace_id() {
    let receiver = OtlpReceiver::start().await;
    let provider = provider_for(&receiver);
    let tracer = provider.tracer("otlp-receiver-test");

    let mut span = tracer.span_builder("ticket.CreateTicket").with_kind(opentelemetry::trace::SpanKind::Server).start(&tracer);
    let trace_id = span.span_context().trace_id().to_string();
    let span_id = span.span_context().span_id().to_string();
    span.end();
    flush(&provider).await;

    let received = receiver.wait_for(|span| span.span_id == span_id, WAIT).await;
    let received = received.unwrap_or_else(|| panic!("span {span_id} not received within {WAIT:?}; received: {:?}", receiver.spans()));
    assert_eq!(received.trace_id, trace_id);
    assert_eq!(received.name, "ticket.CreateTicket");
    assert_eq!(received.service_name, "docket-otlp-test");
    assert_eq!(received.kind, SpanKind::Server);
    assert_eq!(received.parent_span_id, None);
    let _ = provider.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_span_arrives_with_its_parent_id() {
    let receiver = OtlpReceiver::start().await;
    let provider = provider_for(&receiver);
    let tracer = provider.tracer("otlp-receiver-test");

    let parent = tracer.start("relay.deliver");
    let parent_context = opentelemetry::Context::current_with_span(parent);
    let parent_span_id = parent_context.span().span_context().span_id().to_string();
    let trace_id = parent_context.span().span_context().trace_id().to_string();
    let mut child = tracer
        .span_builder("audit.AppendEvents")
        .with_kind(opentelemetry::trace::SpanKind::Client)
        .start_with_context(&tracer, &parent_context);
    let child_span_id = child.span_context().span_id().to_string();
    child.end();
    parent_context.span().end();
    flush(&provider).await;

    let received = receiver.wait_for(|span| span.span_id == child_span_id, WAIT).await;
    let received = received.unwrap_or_else(|| panic!("child span not received within {WAIT:?}; received: {:?}", receiver.spans()));
    assert_eq!(received.trace_id, trace_id);
    assert_eq!(received.parent_span_id.as_deref(), Some(parent_span_id.as_str()));
    assert_eq!(received.kind, SpanKind::Client);
    let _ = provider.shutdown();
}
