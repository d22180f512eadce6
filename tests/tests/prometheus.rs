//! The Prometheus endpoint of each service, scraped over HTTP while the services work.

use std::time::Duration;

use docket_auth::Role;
use docket_proto::audit::v1::ListRecordsRequest;
use docket_proto::metrics::v1::GetResponseMetricsRequest;
use docket_proto::ticket::v1::ticket_service_client::TicketServiceClient;
use docket_proto::ticket::v1::*;
use docket_tests::{Suite, TestDb, eventually, sample, scrape, start_metrics, start_ticket, ticket_client, ticket_client_as, unused_addr};
use tonic::Code;

fn create_request(request_id: &str) -> CreateTicketRequest {
    CreateTicketRequest {
        request_id: request_id.to_owned(),
        title: "Phishing mail with a credential form".to_owned(),
        severity: Severity::Medium as i32,
        category: Category::Phishing as i32,
        team: "soc".to_owned(),
        detection_source: "mail-gateway".to_owned(),
        ..Default::default()
    }
}

const CREATE_OK: &str =
    r#"grpc_server_handled_total{grpc_service="docket.ticket.v1.TicketService",grpc_method="CreateTicket",grpc_code="OK"}"#;
const CREATE_DENIED: &str =
    r#"grpc_server_handled_total{grpc_service="docket.ticket.v1.TicketService",grpc_method="CreateTicket",grpc_code="PermissionDenied"}"#;
const CREATE_UNAUTHENTICATED: &str =
    r#"grpc_server_handled_total{grpc_service="docket.ticket.v1.TicketService",grpc_method="CreateTicket",grpc_code="Unauthenticated"}"#;
const CREATE_INVALID: &str =
    r#"grpc_server_handled_total{grpc_service="docket.ticket.v1.TicketService",grpc_method="CreateTicket",grpc_code="InvalidArgument"}"#;
const CREATE_LATENCY_COUNT: &str =
    r#"grpc_server_handling_seconds_count{grpc_service="docket.ticket.v1.TicketService",grpc_method="CreateTicket",grpc_code="OK"}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ticket_calls_are_counted_by_code() {
    let suite = Suite::start().await;
    let mut admin = ticket_client(suite.ticket.addr).await;
    for index in 0..3 {
        admin.create_ticket(create_request(&format!("counted-{index}"))).await.expect("create as admin");
    }
    let mut invalid = create_request("invalid");
    invalid.title = String::new();
    let status = admin.create_ticket(invalid).await.expect_err("an empty title is invalid");
    assert_eq!(status.code(), Code::InvalidArgument);
    let mut viewer = ticket_client_as(suite.ticket.addr, "victor", &[Role::Viewer]).await;
    let status = viewer.create_ticket(create_request("denied")).await.expect_err("a viewer may not create");
    assert_eq!(status.code(), Code::PermissionDenied);
    let mut anonymous = TicketServiceClient::new(docket_tests::raw_channel(suite.ticket.addr).await);
    let status = anonymous.create_ticket(create_request("anonymous")).await.expect_err("a call without a token fails");
    assert_eq!(status.code(), Code::Unauthenticated);

    let text = scrape(suite.ticket.prometheus).await;
    assert_eq!(sample(&text, CREATE_OK), Some(3.0), "three successful creates:\n{text}");
    let doubled: Vec<&str> = text.lines().filter(|line| line.starts_with("# HELP") && line.ends_with("..")).collect();
    assert!(doubled.is_empty(), "help texts end with one period: {doubled:?}");
    assert_eq!(sample(&text, CREATE_INVALID), Some(1.0), "one invalid create");
    assert_eq!(sample(&text, CREATE_DENIED), Some(1.0), "one denied create");
    assert_eq!(sample(&text, CREATE_UNAUTHENTICATED), Some(1.0), "one unauthenticated create");
    assert_eq!(sample(&text, CREATE_LATENCY_COUNT), Some(3.0), "each successful create is timed");
    assert_eq!(sample(&text, "docket_db_pool_connections_max"), Some(8.0), "the pool bound is --db-max-connections");
    assert!(sample(&text, "docket_db_pool_connections_in_use").is_some(), "pool usage is exported");
    assert_eq!(sample(&text, r#"docket_relay_given_up_events_total{sink="audit"}"#), Some(0.0));
    assert_eq!(sample(&text, r#"docket_relay_given_up_events_total{sink="metrics"}"#), Some(0.0));

    // Four events reach each sink: three creates and the denial record (audit only counts
    // it, because the relay sends every outbox event to both).
    let delivered = eventually(Duration::from_secs(10), || async {
        let text = scrape(suite.ticket.prometheus).await;
        let audit = sample(&text, r#"docket_relay_delivered_events_total{sink="audit"}"#)?;
        let pending = sample(&text, r#"docket_outbox_pending_events{sink="audit"}"#)?;
        (audit == 4.0 && pending == 0.0).then_some(text)
    })
    .await;
    let text = delivered.expect("the relay delivers all four events and the backlog drains");
    assert_eq!(sample(&text, r#"docket_outbox_oldest_pending_age_seconds{sink="audit"}"#), Some(0.0));

    let audit_text = scrape(suite.audit.prometheus).await;
    assert_eq!(sample(&audit_text, "docket_audit_appended_events_total"), Some(4.0), "audit:\n{audit_text}");
    assert_eq!(sample(&audit_text, "docket_audit_ledger_head_seq"), Some(4.0));
    let append_ok = r#"grpc_server_handled_total{grpc_service="docket.audit.v1.AuditService",grpc_method="AppendEvents",grpc_code="OK"}"#;
    assert!(sample(&audit_text, append_ok).is_some_and(|count| count >= 1.0), "audit counts its AppendEvents calls");

    // The relay delivers to metrics in its own loop, which may lag the audit loop, and it
    // marks a batch delivered only after the metrics service has applied it.
    let applied = eventually(Duration::from_secs(10), || async {
        let pending = sample(&scrape(suite.ticket.prometheus).await, r#"docket_outbox_pending_events{sink="metrics"}"#)?;
        (pending == 0.0).then_some(())?;
        Some(scrape(suite.metrics.prometheus).await)
    })
    .await;
    let metrics_text = applied.expect("the relay delivers every event to metrics");
    assert_eq!(sample(&metrics_text, "docket_metrics_applied_events_total"), Some(3.0), "metrics:\n{metrics_text}");
    // A query refreshes the in-memory copy of the projection, which then contains the
    // three tickets.
    let mut metrics_client = docket_tests::metrics_client(suite.metrics.addr).await;
    metrics_client.get_response_metrics(GetResponseMetricsRequest::default()).await.expect("query the metrics");
    let metrics_text = scrape(suite.metrics.prometheus).await;
    assert_eq!(sample(&metrics_text, "docket_metrics_memory_tickets"), Some(3.0), "metrics:\n{metrics_text}");
    assert!(sample(&metrics_text, "docket_metrics_memory_refreshes_total").is_some_and(|count| count >= 1.0));
    assert!(sample(&metrics_text, "docket_metrics_memory_rows_read_total").is_some_and(|count| count >= 1.0));
    let mut auditor = docket_tests::audit_client(suite.audit.addr).await;
    let records = auditor.list_records(ListRecordsRequest::default()).await.expect("list the ledger").into_inner().records;
    assert_eq!(records.len(), 4, "the counters match the ledger");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbox_backlog_is_visible_while_audit_is_down() {
    let metrics_db = TestDb::create("metrics");
    let audit_addr = unused_addr();
    let metrics = start_metrics(&metrics_db, audit_addr).await;
    let ticket_db = TestDb::create("ticket");
    let ticket = start_ticket(&ticket_db, audit_addr, metrics.addr).await;
    let mut admin = ticket_client(ticket.addr).await;
    for index in 0..3 {
        admin.create_ticket(create_request(&format!("stuck-{index}"))).await.expect("creates work while audit is down");
    }

    let stuck = eventually(Duration::from_secs(10), || async {
        let text = scrape(ticket.prometheus).await;
        let failures = sample(&text, r#"docket_relay_failed_attempts_total{sink="audit"}"#)?;
        (failures >= 1.0).then_some(text)
    })
    .await
    .expect("failed deliveries to audit are counted");
    assert_eq!(sample(&stuck, r#"docket_outbox_pending_events{sink="audit"}"#), Some(3.0), "all three events wait:\n{stuck}");
    let age = sample(&stuck, r#"docket_outbox_oldest_pending_age_seconds{sink="audit"}"#).expect("the age is exported");
    assert!(age > 0.0, "the oldest pending event has an age, got {age}");
    assert_eq!(sample(&stuck, r#"docket_relay_given_up_events_total{sink="audit"}"#), Some(0.0), "nothing is given up");

    let drained = eventually(Duration::from_secs(10), || async {
        let text = scrape(ticket.prometheus).await;
        (sample(&text, r#"docket_outbox_pending_events{sink="metrics"}"#)? == 0.0).then_some(())
    })
    .await;
    assert!(drained.is_some(), "the metrics sink, which is up, drains");
}
