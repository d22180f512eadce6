//! One CreateTicket yields spans from the ticket, audit and metrics services under one trace
//! id, with parent links from the client through the outbox relay, received by a real OTLP
//! receiver.

use std::time::Duration;

use docket_proto::ticket::v1::{Category, CreateTicketRequest, Severity};
use docket_tests::otlp::{OtlpReceiver, ReceivedSpan};
use docket_tests::{Suite, ticket_client};

const WAIT: Duration = Duration::from_secs(20);

/// Trace and span id of the client's own span, sent as the W3C `traceparent`.
const CLIENT_TRACE_ID: &str = "5b8efff798038103d269b633813fc60c";
const CLIENT_SPAN_ID: &str = "eee19b7ec3c1b174";

fn span_named<'a>(spans: &'a [ReceivedSpan], name: &str) -> &'a ReceivedSpan {
    spans
        .iter()
        .find(|span| span.name == name)
        .unwrap_or_else(|| panic!("no span named {name} among {:?}", names(spans)))
}

fn names(spans: &[ReceivedSpan]) -> Vec<String> {
    spans.iter().map(|span| span.name.clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_ticket_traces_through_all_services() {
    let receiver = OtlpReceiver::start().await;
    // SAFETY: this file contains one test, so no other thread of this test binary reads the
    // environment while it changes.
    unsafe {
        std::env::set_var("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint());
        std::env::remove_var("OTEL_SDK_DISABLED");
    }
    let telemetry = docket_telemetry::init("docket-tests", docket_telemetry::LogFormat::Text).expect("telemetry starts");
    assert!(telemetry.exporting(), "an OTLP endpoint is set, so spans must be exported");

    let suite = Suite::start().await;
    let mut client = ticket_client(suite.ticket.addr).await;
    let mut request = tonic::Request::new(CreateTicketRequest {
        request_id: "trace-1".to_owned(),
        title: "Beaconing to a known C2 domain".to_owned(),
        severity: Severity::High as i32,
        category: Category::Malware as i32,
        ..Default::default()
    });
    let traceparent = format!("00-{CLIENT_TRACE_ID}-{CLIENT_SPAN_ID}-01");
    request.metadata_mut().insert("traceparent", traceparent.parse().unwrap());
    client.create_ticket(request).await.expect("CreateTicket succeeds");

    let expected = ["ticket.CreateTicket", "ticket.relay.audit", "ticket.relay.metrics", "audit.AppendEvents", "metrics.RecordEvents"];
    let complete = docket_tests::eventually(WAIT, || {
        let telemetry = &telemetry;
        let receiver = &receiver;
        async move {
            telemetry.flush().await;
            let spans: Vec<ReceivedSpan> = receiver.spans().into_iter().filter(|span| span.trace_id == CLIENT_TRACE_ID).collect();
            expected.iter().all(|name| spans.iter().any(|span| span.name == *name)).then_some(spans)
        }
    })
    .await;
    let spans = complete.unwrap_or_else(|| {
        panic!("spans of trace {CLIENT_TRACE_ID} never all arrived; received {:?}", names(&receiver.spans()))
    });

    // Prints the received trace, one span per line, for `--nocapture` runs.
    for span in &spans {
        let parent = span.parent_span_id.as_deref().unwrap_or("-");
        println!("trace {} span {} parent {parent} {:?} {}", span.trace_id, span.span_id, span.kind, span.name);
    }

    let create = span_named(&spans, "ticket.CreateTicket");
    assert_eq!(create.parent_span_id.as_deref(), Some(CLIENT_SPAN_ID), "CreateTicket continues the client's span");

    let ticket_span_ids: Vec<&str> = spans
        .iter()
        .filter(|span| span.name.starts_with("ticket.") && !span.name.starts_with("ticket.relay"))
        .map(|span| span.span_id.as_str())
        .collect();
    for (relay, receiver_span) in [("ticket.relay.audit", "audit.AppendEvents"), ("ticket.relay.metrics", "metrics.RecordEvents")] {
        let relay = span_named(&spans, relay);
        let parent = relay.parent_span_id.as_deref().expect("relay span has a parent");
        assert!(ticket_span_ids.contains(&parent), "{} continues a span of the CreateTicket call, got parent {parent}", relay.name);

        let received = span_named(&spans, receiver_span);
        assert_eq!(received.parent_span_id.as_deref(), Some(relay.span_id.as_str()), "{receiver_span} is a child of {}", relay.name);
    }

    drop(suite);
    telemetry.shutdown().await;
}
