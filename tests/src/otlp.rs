//! An OTLP/gRPC trace receiver on 127.0.0.1 for tests that check which spans a service exports.
//!
//! It serves the collector's `TraceService.Export` from opentelemetry-proto and keeps every
//! span it receives in memory, so a test can point `OTEL_EXPORTER_OTLP_ENDPOINT` or an
//! exporter at [`OtlpReceiver::endpoint`] and then wait for the spans it expects.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::resource::v1::Resource;
pub use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

/// One span as the receiver stored it. Ids are lowercase hex, as in W3C `traceparent`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceivedSpan {
    /// 32 hex digits.
    pub trace_id: String,
    /// 16 hex digits.
    pub span_id: String,
    /// 16 hex digits, or `None` for the root span of a trace.
    pub parent_span_id: Option<String>,
    pub name: String,
    /// The `service.name` resource attribute, empty when the exporter sent none.
    pub service_name: String,
    /// `SpanKind::Unspecified` also stands for a kind number this version does not know.
    pub kind: SpanKind,
}

/// The running receiver. It stops serving when dropped.
pub struct OtlpReceiver {
    pub addr: SocketAddr,
    spans: Arc<Mutex<Vec<ReceivedSpan>>>,
    stop: Option<oneshot::Sender<()>>,
}

impl OtlpReceiver {
    /// Starts the receiver on a free port of 127.0.0.1.
    pub async fn start() -> OtlpReceiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the OTLP receiver on 127.0.0.1");
        let addr = listener.local_addr().expect("a bound listener has a local address");
        let spans = Arc::new(Mutex::new(Vec::new()));
        let collector = Collector { spans: spans.clone() };
        let (stop_tx, stop_rx) = oneshot::channel::<()>();

        let server = tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(collector))
            .serve_with_incoming_shutdown(TcpIncoming::from(listener), async move {
                let _ = stop_rx.await;
            });
        tokio::spawn(async move {
            if let Err(error) = server.await {
                eprintln!("OTLP receiver on {addr} failed: {error}");
            }
        });

        OtlpReceiver {
            addr,
            spans,
            stop: Some(stop_tx),
        }
    }

    /// Returns the URL an OTLP/gRPC exporter takes as its endpoint.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Returns a copy of every span received so far, in arrival order.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.spans.lock().expect("no thread panicked while holding the span list").clone()
    }

    /// Polls until a received span matches `predicate` and returns it, or returns `None` once
    /// `timeout` has passed.
    pub async fn wait_for(&self, predicate: impl Fn(&ReceivedSpan) -> bool, timeout: Duration) -> Option<ReceivedSpan> {
        crate::eventually(timeout, || {
            let found = self.spans().into_iter().find(|span| predicate(span));
            async move { found }
        })
        .await
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

struct Collector {
    spans: Arc<Mutex<Vec<ReceivedSpan>>>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(&self, request: Request<ExportTraceServiceRequest>) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let mut received = Vec::new();
        for resource_spans in request.into_inner().resource_spans {
            let service_name = service_name(resource_spans.resource.as_ref());
            let spans = resource_spans.scope_spans.into_iter().flat_map(|scope| scope.spans);
            for span in spans {
                received.push(ReceivedSpan {
                    trace_id: to_hex(&span.trace_id),
                    span_id: to_hex(&span.span_id),
                    parent_span_id: (!span.parent_span_id.is_empty()).then(|| to_hex(&span.parent_span_id)),
                    name: span.name,
                    service_name: service_name.clone(),
                    kind: SpanKind::try_from(span.kind).unwrap_or(SpanKind::Unspecified),
                });
            }
        }
        self.spans.lock().expect("no thread panicked while holding the span list").extend(received);
        Ok(Response::new(ExportTraceServiceResponse { partial_success: None }))
    }
}

fn service_name(resource: Option<&Resource>) -> String {
    let attributes = resource.map(|resource| resource.attributes.as_slice()).unwrap_or_default();
    attributes
        .iter()
        .find(|attribute| attribute.key == "service.name")
        .and_then(|attribute| attribute.value.as_ref()?.value.as_ref())
        .map(|value| match value {
            Value::StringValue(name) => name.clone(),
            other => format!("{other:?}"),
        })
        .unwrap_or_default()
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}
