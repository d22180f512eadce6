//! The outbox relay: every ticket event reaches the audit ledger and the metrics
//! projection once, in version order per ticket, including after a sink was down.

use std::collections::HashSet;
use std::time::Duration;

use diesel::QueryableByName;
use diesel::sql_types::BigInt;
use diesel_async::RunQueryDsl;
use docket_proto::audit::v1::audit_service_client::AuditServiceClient;
use docket_proto::audit::v1::{ListRecordsRequest, Record};
use docket_proto::metrics::v1::GetResponseMetricsRequest;
use docket_proto::ticket::v1::ticket_service_client::TicketServiceClient;
use docket_proto::ticket::v1::*;
use docket_tests::{
    Suite, TestDb, audit_client, eventually, metrics_client, start_audit_at, start_metrics, start_ticket_with,
    ticket_client, unused_addr,
};
use docket_tests::AuthChannel as Channel;

const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);

fn create_request(request_id: &str) -> CreateTicketRequest {
    CreateTicketRequest {
        request_id: request_id.to_owned(),
        title: "Credential stuffing against VPN".to_owned(),
        severity: Severity::Critical as i32,
        category: Category::UnauthorizedAccess as i32,
        team: "soc".to_owned(),
        detection_source: "siem".to_owned(),
        ..Default::default()
    }
}

async fn transition(client: &mut TicketServiceClient<Channel>, ticket: &str, to: Status) -> Ticket {
    let request = TransitionTicketRequest {
        ticket: ticket.to_owned(),
        to_status: to as i32,
        resolution: if to == Status::Resolved {
            Resolution::TruePositive as i32
        } else {
            0
        },
        ..Default::default()
    };
    client
        .transition_ticket(request)
        .await
        .expect("transition")
        .into_inner()
}

async fn history_event_ids(client: &mut TicketServiceClient<Channel>, ticket: &str) -> Vec<String> {
    let history = client
        .list_ticket_history(ListTicketHistoryRequest {
            ticket: ticket.to_owned(),
            ..Default::default()
        })
        .await
        .expect("history")
        .into_inner();
    history
        .entries
        .into_iter()
        .map(|entry| entry.event_id)
        .collect()
}

/// Polls the ledger until it contains `count` records for `resource`.
async fn ledger_records(
    client: &AuditServiceClient<Channel>,
    resource: &str,
    count: usize,
) -> Option<Vec<Record>> {
    eventually(DELIVERY_TIMEOUT, || {
        let mut client = client.clone();
        let resource = resource.to_owned();
        async move {
            let request = ListRecordsRequest {
                resource,
                page_size: 1000,
                ..Default::default()
            };
            let records = client
                .list_records(request)
                .await
                .ok()?
                .into_inner()
                .records;
            (records.len() >= count).then_some(records)
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ledger_holds_each_event_in_version_order() {
    let suite = Suite::start().await;
    let mut tickets = ticket_client(suite.ticket.addr).await;
    let ticket = tickets
        .create_ticket(create_request("relay-order"))
        .await
        .unwrap()
        .into_inner();
    for to in [
        Status::Acknowledged,
        Status::Investigating,
        Status::Contained,
        Status::Resolved,
        Status::Closed,
    ] {
        transition(&mut tickets, &ticket.id, to).await;
    }
    let expected = history_event_ids(&mut tickets, &ticket.id).await;

    let audit = audit_client(suite.audit.addr).await;
    let records = ledger_records(&audit, &ticket.id, expected.len())
        .await
        .expect("every event reaches the ledger");
    let recorded: Vec<String> = records
        .iter()
        .map(|record| record.event_id.clone())
        .collect();
    assert_eq!(recorded, expected, "one record per event, in version order");
    let actions: Vec<&str> = records
        .iter()
        .map(|record| record.action.as_str())
        .collect();
    assert_eq!(actions[0], "ticket.created");
    assert!(
        actions[1..]
            .iter()
            .all(|action| *action == "ticket.transitioned"),
        "{actions:?}"
    );
    let canonical = String::from_utf8(records[0].canonical.clone()).unwrap();
    assert!(
        canonical.contains("docket-ticket"),
        "the relay names itself: {canonical}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_reflect_final_state() {
    let suite = Suite::start().await;
    let mut tickets = ticket_client(suite.ticket.addr).await;
    let ticket = tickets
        .create_ticket(create_request("relay-metrics"))
        .await
        .unwrap()
        .into_inner();
    for to in [
        Status::Acknowledged,
        Status::Investigating,
        Status::Contained,
        Status::Resolved,
    ] {
        transition(&mut tickets, &ticket.id, to).await;
    }

    let metrics = metrics_client(suite.metrics.addr).await;
    let group = eventually(DELIVERY_TIMEOUT, || {
        let mut metrics = metrics.clone();
        async move {
            let response = metrics
                .get_response_metrics(GetResponseMetricsRequest::default())
                .await
                .ok()?
                .into_inner();
            let group = response
                .groups
                .into_iter()
                .find(|group| group.tickets == 1)?;
            (group.ttr.as_ref()?.count == 1).then_some(group)
        }
    })
    .await
    .expect("metrics count the resolved ticket");
    assert_eq!(group.tta.as_ref().map(|stats| stats.count), Some(1));
    assert_eq!(group.ttc.as_ref().map(|stats| stats.count), Some(1));
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    count: i64,
}

async fn count(db: &TestDb, sql: &str) -> i64 {
    let mut conn = db.superuser_conn().await;
    let rows: Vec<Count> = diesel::sql_query(sql)
        .load(&mut conn)
        .await
        .expect("count query");
    rows[0].count
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_wait_for_audit_and_arrive_once() {
    let audit_addr = unused_addr();
    let metrics_db = TestDb::create("metrics");
    let metrics = start_metrics(&metrics_db, audit_addr).await;
    let ticket_db = TestDb::create("ticket");
    let ticket = start_ticket_with(
        &ticket_db,
        audit_addr,
        metrics.addr,
        &["--relay-max-backoff", "500ms"],
    )
    .await;
    let mut tickets = ticket_client(ticket.addr).await;

    let mut expected = Vec::new();
    for index in 0..3 {
        let created = tickets
            .create_ticket(create_request(&format!("late-{index}")))
            .await
            .unwrap()
            .into_inner();
        transition(&mut tickets, &created.id, Status::Acknowledged).await;
        transition(&mut tickets, &created.id, Status::Investigating).await;
        expected.push((
            created.id.clone(),
            history_event_ids(&mut tickets, &created.id).await,
        ));
    }

    let failed = eventually(DELIVERY_TIMEOUT, || async {
        let failing = count(&ticket_db, "SELECT count(*) AS count FROM outbox WHERE audit_delivered_at IS NULL AND attempts > 0").await;
        (failing > 0).then_some(failing)
    })
    .await;
    assert!(
        failed.is_some(),
        "failed deliveries are counted on the pending rows"
    );
    let pending = count(
        &ticket_db,
        "SELECT count(*) AS count FROM outbox WHERE audit_delivered_at IS NULL",
    )
    .await;
    assert_eq!(
        pending, 9,
        "no event is dropped while the audit service is down"
    );

    let audit_db = TestDb::create("audit");
    let _audit = start_audit_at(&audit_db, audit_addr).await;
    let audit = audit_client(audit_addr).await;
    let mut seen = HashSet::new();
    for (ticket_id, event_ids) in &expected {
        let records = ledger_records(&audit, ticket_id, event_ids.len())
            .await
            .expect("events arrive once audit is up");
        let recorded: Vec<String> = records
            .iter()
            .map(|record| record.event_id.clone())
            .collect();
        assert_eq!(
            &recorded, event_ids,
            "ticket {ticket_id}: every event once, in order"
        );
        seen.extend(recorded);
    }
    assert_eq!(seen.len(), 9);

    let delivered = eventually(DELIVERY_TIMEOUT, || async {
        let pending = count(
            &ticket_db,
            "SELECT count(*) AS count FROM outbox WHERE audit_delivered_at IS NULL",
        )
        .await;
        (pending == 0).then_some(())
    })
    .await;
    assert!(
        delivered.is_some(),
        "the outbox marks every event delivered"
    );
    drop(ticket);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_relays_keep_order_per_ticket() {
    let suite = Suite::start().await;
    let replica =
        start_ticket_with(&suite.ticket_db, suite.audit.addr, suite.metrics.addr, &[]).await;
    let clients = [
        ticket_client(suite.ticket.addr).await,
        ticket_client(replica.addr).await,
    ];

    let mut expected = Vec::new();
    for index in 0..4 {
        let mut client = clients[index % 2].clone();
        let created = client
            .create_ticket(create_request(&format!("replica-{index}")))
            .await
            .unwrap()
            .into_inner();
        for (step, to) in [
            Status::Acknowledged,
            Status::Investigating,
            Status::Contained,
        ]
        .into_iter()
        .enumerate()
        {
            let mut client = clients[(index + step + 1) % 2].clone();
            transition(&mut client, &created.id, to).await;
        }
        let mut client = clients[0].clone();
        expected.push((
            created.id.clone(),
            history_event_ids(&mut client, &created.id).await,
        ));
    }

    let audit = audit_client(suite.audit.addr).await;
    for (ticket_id, event_ids) in &expected {
        let records = ledger_records(&audit, ticket_id, event_ids.len())
            .await
            .expect("events reach the ledger");
        let recorded: Vec<String> = records
            .iter()
            .map(|record| record.event_id.clone())
            .collect();
        assert_eq!(
            &recorded, event_ids,
            "ticket {ticket_id}: every event once, in version order"
        );
    }
}
