//! TicketService against a real PostgreSQL database: lifecycle, idempotent creates,
//! etags, pagination, validation, the outbox and imports.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;

use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Text};
use diesel_async::RunQueryDsl;
use docket_proto::ticket::v1::import_result::Outcome;
use docket_proto::ticket::v1::ticket_service_client::TicketServiceClient;
use docket_proto::ticket::v1::*;
use docket_tests::{Running, TestDb, start_ticket, ticket_client};
use tonic::Code;
use docket_tests::AuthChannel as Channel;
use tonic_types::StatusExt;

type Client = TicketServiceClient<Channel>;

/// Returns an address where nothing listens, so the relay keeps its events pending.
fn unused_addr() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address")
}

async fn start() -> (TestDb, Running, Client) {
    let db = TestDb::create("ticket");
    let running = start_ticket(&db, unused_addr(), unused_addr()).await;
    let client = ticket_client(running.addr).await;
    (db, running, client)
}

fn create_request(request_id: &str) -> CreateTicketRequest {
    CreateTicketRequest {
        request_id: request_id.to_owned(),
        title: "Beaconing from build host".to_owned(),
        severity: Severity::High as i32,
        category: Category::Malware as i32,
        team: "soc".to_owned(),
        ..Default::default()
    }
}

async fn create(client: &mut Client, request_id: &str) -> Ticket {
    client
        .create_ticket(create_request(request_id))
        .await
        .expect("create ticket")
        .into_inner()
}

async fn move_to(client: &mut Client, ticket: &str, to: Status) -> Result<Ticket, tonic::Status> {
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
        .map(|response| response.into_inner())
}

/// Moves along the graph from NEW to `target`.
fn path_to(target: Status) -> Vec<Status> {
    use Status::*;
    match target {
        New => vec![],
        Acknowledged => vec![Acknowledged],
        Investigating => vec![Acknowledged, Investigating],
        Contained => vec![Acknowledged, Investigating, Contained],
        Eradicated => vec![Acknowledged, Investigating, Contained, Eradicated],
        Recovered => vec![
            Acknowledged,
            Investigating,
            Contained,
            Eradicated,
            Recovered,
        ],
        Resolved => vec![Resolved],
        Closed => vec![Resolved, Closed],
        Unspecified => unreachable!("no ticket is unspecified"),
    }
}

const STATES: [Status; 8] = [
    Status::New,
    Status::Acknowledged,
    Status::Investigating,
    Status::Contained,
    Status::Eradicated,
    Status::Recovered,
    Status::Resolved,
    Status::Closed,
];

fn allowed(from: Status, to: Status) -> bool {
    use Status::*;
    let forward = matches!(
        (from, to),
        (New, Acknowledged)
            | (Acknowledged, Investigating)
            | (Investigating, Contained)
            | (Contained, Eradicated)
            | (Eradicated, Recovered)
            | (Recovered, Resolved)
            | (Resolved, Closed)
    );
    let early_resolution = to == Resolved && !matches!(from, Resolved | Closed);
    let reopen = to == Investigating && matches!(from, Resolved | Closed);
    forward || early_resolution || reopen
}

fn status_name(status: Status) -> String {
    status
        .as_str_name()
        .trim_start_matches("STATUS_")
        .to_lowercase()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_pairs_follow_the_graph() {
    let (_db, _running, mut client) = start().await;
    for from in STATES {
        for to in STATES {
            let ticket = create(&mut client, &format!("pair-{}-{}", from as i32, to as i32)).await;
            for step in path_to(from) {
                move_to(&mut client, &ticket.id, step)
                    .await
                    .expect("move along the path");
            }
            let result = move_to(&mut client, &ticket.id, to).await;
            if allowed(from, to) {
                let moved = result
                    .unwrap_or_else(|status| panic!("{from:?} -> {to:?} rejected: {status:?}"));
                assert_eq!(moved.status, to as i32, "{from:?} -> {to:?}");
            } else {
                let status = result.expect_err(&format!("{from:?} -> {to:?} was accepted"));
                assert_eq!(
                    status.code(),
                    Code::FailedPrecondition,
                    "{from:?} -> {to:?}"
                );
                assert!(
                    status.message().contains(&status_name(from)),
                    "message names the current state: {}",
                    status.message()
                );
                assert!(
                    status.message().contains("allowed moves"),
                    "message lists the allowed moves: {}",
                    status.message()
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolve_without_resolution_is_invalid() {
    let (_db, _running, mut client) = start().await;
    let ticket = create(&mut client, "resolve-without").await;
    let request = TransitionTicketRequest {
        ticket: ticket.id,
        to_status: Status::Resolved as i32,
        ..Default::default()
    };
    let status = client
        .transition_ticket(request)
        .await
        .expect_err("resolution is required");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("resolution"),
        "{}",
        status.message()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopen_keeps_first_timestamps_and_counts() {
    let (_db, _running, mut client) = start().await;
    let ticket = create(&mut client, "reopen").await;
    move_to(&mut client, &ticket.key, Status::Acknowledged)
        .await
        .unwrap();
    let resolved = move_to(&mut client, &ticket.key, Status::Resolved)
        .await
        .unwrap();
    let reopened = move_to(&mut client, &ticket.key, Status::Investigating)
        .await
        .unwrap();
    let resolved_again = move_to(&mut client, &ticket.key, Status::Resolved)
        .await
        .unwrap();

    assert_eq!(reopened.reopen_count, 1);
    assert_eq!(reopened.last_resolved_at, None);
    assert_eq!(reopened.resolved_at, resolved.resolved_at);
    assert_eq!(reopened.acknowledged_at, resolved.acknowledged_at);
    assert_eq!(resolved_again.resolved_at, resolved.resolved_at);
    let seconds =
        |at: &Option<prost_types::Timestamp>| at.as_ref().map(|at| (at.seconds, at.nanos));
    assert!(seconds(&resolved_again.last_resolved_at) > seconds(&resolved.last_resolved_at));
    assert_eq!(resolved_again.version, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_retries_make_one_ticket() {
    let (_db, _running, client) = start().await;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let mut client = client.clone();
        tasks.spawn(async move {
            client
                .create_ticket(create_request("retry-1"))
                .await
                .map(|response| response.into_inner())
        });
    }
    let mut ids = HashSet::new();
    while let Some(result) = tasks.join_next().await {
        let ticket = result.expect("task joins").expect("every retry succeeds");
        ids.insert(ticket.id);
    }
    assert_eq!(ids.len(), 1, "all retries return the same ticket");

    let mut client = client;
    let listed = client
        .list_tickets(ListTicketsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.tickets.len(), 1);
    let id = ids.into_iter().next().unwrap();
    let history = client
        .list_ticket_history(ListTicketHistoryRequest {
            ticket: id,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(history.entries.len(), 1);
    assert_eq!(history.entries[0].action, "ticket.created");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_id_reused_with_other_content_is_rejected() {
    let (_db, _running, mut client) = start().await;
    create(&mut client, "reused").await;
    let mut other = create_request("reused");
    other.title = "Another incident".to_owned();
    let status = client
        .create_ticket(other)
        .await
        .expect_err("other content is rejected");
    assert_eq!(status.code(), Code::AlreadyExists);
    assert!(status.message().contains("reused"), "{}", status.message());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_without_request_id_is_invalid() {
    let (_db, _running, mut client) = start().await;
    let status = client
        .create_ticket(create_request(""))
        .await
        .expect_err("request_id is required");
    assert_eq!(status.code(), Code::InvalidArgument);
    let details = status
        .get_details_bad_request()
        .expect("bad request details");
    assert_eq!(details.field_violations[0].field, "request_id");
}

fn severity_patch(ticket: &Ticket, severity: Severity) -> UpdateTicketRequest {
    UpdateTicketRequest {
        ticket: ticket.id.clone(),
        patch: Some(TicketPatch {
            severity: severity as i32,
            ..Default::default()
        }),
        update_mask: Some(prost_types::FieldMask {
            paths: vec!["severity".to_owned()],
        }),
        etag: ticket.etag.clone(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_updates_with_one_etag_let_one_win() {
    let (_db, _running, mut client) = start().await;
    let ticket = create(&mut client, "race").await;
    let mut first_client = client.clone();
    let mut second_client = client.clone();
    let first = severity_patch(&ticket, Severity::Critical);
    let second = severity_patch(&ticket, Severity::Low);
    let (first, second) = tokio::join!(
        first_client.update_ticket(first),
        second_client.update_ticket(second)
    );

    let codes = [
        first.as_ref().err().map(|status| status.code()),
        second.as_ref().err().map(|status| status.code()),
    ];
    let successes = codes.iter().filter(|code| code.is_none()).count();
    let aborted = codes
        .iter()
        .filter(|code| **code == Some(Code::Aborted))
        .count();
    assert_eq!(successes, 1, "exactly one update succeeds: {codes:?}");
    assert_eq!(aborted, 1, "the other is aborted: {codes:?}");

    let current = client
        .get_ticket(GetTicketRequest { ticket: ticket.id })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(current.version, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_with_stale_etag_is_aborted() {
    let (_db, _running, mut client) = start().await;
    let ticket = create(&mut client, "stale").await;
    client
        .update_ticket(severity_patch(&ticket, Severity::Low))
        .await
        .expect("first update");
    let status = client
        .update_ticket(severity_patch(&ticket, Severity::Medium))
        .await
        .expect_err("stale etag");
    assert_eq!(status.code(), Code::Aborted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_changes_masked_fields_only() {
    let (_db, _running, mut client) = start().await;
    let ticket = create(&mut client, "masked").await;
    let request = UpdateTicketRequest {
        ticket: ticket.key.clone(),
        patch: Some(TicketPatch {
            title: "Renamed".to_owned(),
            team: "ignored".to_owned(),
            tags: vec![
                " Ransomware ".to_owned(),
                "ransomware".to_owned(),
                "EDR".to_owned(),
            ],
            ..Default::default()
        }),
        update_mask: Some(prost_types::FieldMask {
            paths: vec!["title".to_owned(), "tags".to_owned()],
        }),
        etag: ticket.etag.clone(),
    };
    let updated = client
        .update_ticket(request)
        .await
        .expect("update")
        .into_inner();
    assert_eq!(updated.title, "Renamed");
    assert_eq!(updated.team, "soc");
    assert_eq!(
        updated.tags,
        vec!["ransomware".to_owned(), "edr".to_owned()]
    );
    assert_eq!(updated.etag, "2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_rejects_unknown_and_status_paths() {
    let (_db, _running, mut client) = start().await;
    let ticket = create(&mut client, "paths").await;
    for path in ["colour", "status"] {
        let mut request = severity_patch(&ticket, Severity::Low);
        request.update_mask = Some(prost_types::FieldMask {
            paths: vec![path.to_owned()],
        });
        let status = client
            .update_ticket(request)
            .await
            .expect_err("path is rejected");
        assert_eq!(status.code(), Code::InvalidArgument, "{path}");
        assert!(status.message().contains(path), "{}", status.message());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pagination_returns_each_ticket_once_during_inserts() {
    let (_db, _running, mut client) = start().await;
    let mut existing = HashSet::new();
    for index in 0..45 {
        existing.insert(create(&mut client, &format!("page-{index}")).await.id);
    }

    let mut writer = client.clone();
    let inserts = tokio::spawn(async move {
        for index in 0..30 {
            create(&mut writer, &format!("during-{index}")).await;
        }
    });

    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut token = String::new();
    loop {
        let page = client
            .list_tickets(ListTicketsRequest {
                page_size: 7,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .expect("list page")
            .into_inner();
        for ticket in page.tickets {
            *seen.entry(ticket.id).or_default() += 1;
        }
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    inserts.await.unwrap();

    let repeated: Vec<_> = seen.iter().filter(|(_, count)| **count > 1).collect();
    assert!(repeated.is_empty(), "tickets listed twice: {repeated:?}");
    let missing: Vec<_> = existing
        .iter()
        .filter(|id| !seen.contains_key(*id))
        .collect();
    assert!(missing.is_empty(), "tickets never listed: {missing:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_filters_by_status_and_team() {
    let (_db, _running, mut client) = start().await;
    let first = create(&mut client, "filter-1").await;
    create(&mut client, "filter-2").await;
    move_to(&mut client, &first.id, Status::Acknowledged)
        .await
        .unwrap();
    let request = ListTicketsRequest {
        statuses: vec![Status::Acknowledged as i32],
        team: "soc".to_owned(),
        ..Default::default()
    };
    let listed = client.list_tickets(request).await.unwrap().into_inner();
    let ids: Vec<_> = listed
        .tickets
        .iter()
        .map(|ticket| ticket.id.clone())
        .collect();
    assert_eq!(ids, vec![first.id]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_token_for_other_filters_is_invalid() {
    let (_db, _running, mut client) = start().await;
    for index in 0..3 {
        create(&mut client, &format!("token-{index}")).await;
    }
    let page = client
        .list_tickets(ListTicketsRequest {
            page_size: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let request = ListTicketsRequest {
        page_size: 1,
        page_token: page.next_page_token,
        team: "other".to_owned(),
        ..Default::default()
    };
    let status = client
        .list_tickets(request)
        .await
        .expect_err("filters differ");
    assert_eq!(status.code(), Code::InvalidArgument);

    let garbage = ListTicketsRequest {
        page_token: "not-a-token".to_owned(),
        ..Default::default()
    };
    let status = client
        .list_tickets(garbage)
        .await
        .expect_err("garbage token");
    assert_eq!(status.code(), Code::InvalidArgument);
}

async fn create_with_indicator(
    client: &mut Client,
    request_id: &str,
    kind: IndicatorType,
    value: &str,
) -> tonic::Status {
    let mut request = create_request(request_id);
    request.indicators = vec![Indicator {
        r#type: kind as i32,
        value: value.to_owned(),
    }];
    client
        .create_ticket(request)
        .await
        .expect_err("indicator is invalid")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_ipv4_names_field_and_value() {
    let (_db, _running, mut client) = start().await;
    let status =
        create_with_indicator(&mut client, "ipv4", IndicatorType::Ipv4, "10.0.0.256").await;
    assert_eq!(status.code(), Code::InvalidArgument);
    let details = status
        .get_details_bad_request()
        .expect("bad request details");
    assert_eq!(details.field_violations[0].field, "indicators[0].value");
    assert!(
        details.field_violations[0]
            .description
            .contains("10.0.0.256")
    );
    assert!(
        status.message().contains("10.0.0.256"),
        "{}",
        status.message()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_sha256_names_field_and_value() {
    let (_db, _running, mut client) = start().await;
    let value = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85";
    let status = create_with_indicator(&mut client, "sha256", IndicatorType::Sha256, value).await;
    assert_eq!(status.code(), Code::InvalidArgument);
    let details = status
        .get_details_bad_request()
        .expect("bad request details");
    assert_eq!(details.field_violations[0].field, "indicators[0].value");
    assert!(details.field_violations[0].description.contains(value));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_indicators_collapse() {
    let (_db, _running, mut client) = start().await;
    let mut request = create_request("dedupe");
    request.indicators = vec![
        Indicator {
            r#type: IndicatorType::Domain as i32,
            value: "Evil.Example.com".to_owned(),
        },
        Indicator {
            r#type: IndicatorType::Domain as i32,
            value: "evil.example.com.".to_owned(),
        },
        Indicator {
            r#type: IndicatorType::Ipv6 as i32,
            value: "2001:DB8:0:0:0:0:0:1".to_owned(),
        },
        Indicator {
            r#type: IndicatorType::Ipv6 as i32,
            value: "2001:db8::1".to_owned(),
        },
    ];
    let ticket = client
        .create_ticket(request)
        .await
        .expect("create")
        .into_inner();
    let values: Vec<_> = ticket
        .indicators
        .iter()
        .map(|indicator| indicator.value.as_str())
        .collect();
    assert_eq!(values, vec!["evil.example.com", "2001:db8::1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detection_before_occurrence_is_invalid() {
    let (_db, _running, mut client) = start().await;
    let mut request = create_request("order");
    request.occurred_at = Some(prost_types::Timestamp {
        seconds: 1_700_000_000,
        nanos: 0,
    });
    request.detected_at = Some(prost_types::Timestamp {
        seconds: 1_600_000_000,
        nanos: 0,
    });
    let status = client
        .create_ticket(request)
        .await
        .expect_err("order is checked");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("detected_at"),
        "{}",
        status.message()
    );
    assert!(
        status.message().contains("occurred_at"),
        "{}",
        status.message()
    );
    assert!(
        status.message().contains("2020-09-13"),
        "names the detected value: {}",
        status.message()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn future_detection_is_invalid() {
    let (_db, _running, mut client) = start().await;
    let mut request = create_request("future");
    let in_an_hour = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    request.detected_at = Some(prost_types::Timestamp {
        seconds: in_an_hour as i64,
        nanos: 0,
    });
    let status = client
        .create_ticket(request)
        .await
        .expect_err("future is rejected");
    assert_eq!(status.code(), Code::InvalidArgument);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_unique_under_concurrent_creates() {
    let (_db, _running, client) = start().await;
    let mut tasks = tokio::task::JoinSet::new();
    for index in 0..50 {
        let mut client = client.clone();
        tasks.spawn(async move { create(&mut client, &format!("unique-{index}")).await.key });
    }
    let mut keys = HashSet::new();
    while let Some(key) = tasks.join_next().await {
        let key = key.unwrap();
        assert!(key.starts_with("INC-"), "{key}");
        keys.insert(key);
    }
    assert_eq!(keys.len(), 50);
}

#[derive(QueryableByName)]
struct OutboxRow {
    #[diesel(sql_type = BigInt)]
    ticket_version: i64,
    #[diesel(sql_type = Text)]
    event_id: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbox_row_is_written_with_each_change() {
    let (db, _running, mut client) = start().await;
    let ticket = create(&mut client, "outbox").await;
    move_to(&mut client, &ticket.id, Status::Acknowledged)
        .await
        .unwrap();
    client
        .add_comment(AddCommentRequest {
            ticket: ticket.id.clone(),
            body: "isolated the host".to_owned(),
        })
        .await
        .unwrap();

    let mut conn = db.superuser_conn().await;
    let rows: Vec<OutboxRow> = diesel::sql_query("SELECT ticket_version, event_id::text AS event_id FROM outbox WHERE ticket_id = $1::uuid ORDER BY id")
        .bind::<Text, _>(&ticket.id)
        .load(&mut conn)
        .await
        .unwrap();
    let versions: Vec<i64> = rows.iter().map(|row| row.ticket_version).collect();
    assert_eq!(versions, vec![1, 2, 3]);

    let history = client
        .list_ticket_history(ListTicketHistoryRequest {
            ticket: ticket.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let history_events: Vec<String> = history
        .entries
        .iter()
        .map(|entry| entry.event_id.clone())
        .collect();
    let outbox_events: Vec<String> = rows.into_iter().map(|row| row.event_id).collect();
    assert_eq!(history_events, outbox_events);
    let actions: Vec<&str> = history
        .entries
        .iter()
        .map(|entry| entry.action.as_str())
        .collect();
    assert_eq!(
        actions,
        vec!["ticket.created", "ticket.transitioned", "ticket.commented"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn comment_is_listed_and_cannot_be_edited() {
    let (db, _running, mut client) = start().await;
    let ticket = create(&mut client, "comment").await;
    let comment = client
        .add_comment(AddCommentRequest {
            ticket: ticket.key.clone(),
            body: "collected memory image".to_owned(),
        })
        .await
        .unwrap()
        .into_inner();
    let current = client
        .get_ticket(GetTicketRequest {
            ticket: ticket.key.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(current.comments.len(), 1);
    assert_eq!(current.comments[0].body, "collected memory image");
    assert_eq!(current.version, 2);

    let mut conn = db.superuser_conn().await;
    let edited =
        diesel::sql_query("UPDATE ticket_comments SET body = 'rewritten' WHERE id = $1::uuid")
            .bind::<Text, _>(&comment.id)
            .execute(&mut conn)
            .await;
    assert!(edited.is_err(), "the trigger rejects edits");
    let deleted = diesel::sql_query("DELETE FROM ticket_comments WHERE id = $1::uuid")
        .bind::<Text, _>(&comment.id)
        .execute(&mut conn)
        .await;
    assert!(deleted.is_err(), "the trigger rejects deletes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_comment_is_invalid() {
    let (_db, _running, mut client) = start().await;
    let ticket = create(&mut client, "empty-comment").await;
    let status = client
        .add_comment(AddCommentRequest {
            ticket: ticket.id,
            body: "  ".to_owned(),
        })
        .await
        .expect_err("empty body");
    assert_eq!(status.code(), Code::InvalidArgument);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_ticket_is_not_found() {
    let (_db, _running, mut client) = start().await;
    let status = client
        .get_ticket(GetTicketRequest {
            ticket: "INC-999999".to_owned(),
        })
        .await
        .expect_err("missing");
    assert_eq!(status.code(), Code::NotFound);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_pages_in_version_order() {
    let (_db, _running, mut client) = start().await;
    let ticket = create(&mut client, "history").await;
    for step in path_to(Status::Recovered) {
        move_to(&mut client, &ticket.id, step).await.unwrap();
    }
    let mut versions = Vec::new();
    let mut token = String::new();
    loop {
        let page = client
            .list_ticket_history(ListTicketHistoryRequest {
                ticket: ticket.id.clone(),
                page_size: 2,
                page_token: token.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        versions.extend(page.entries.iter().map(|entry| entry.version));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(versions, vec![1, 2, 3, 4, 5, 6]);
}

fn ts(seconds: i64) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp { seconds, nanos: 0 })
}

fn import_record(index: usize) -> ImportRecord {
    ImportRecord {
        source: "veris".to_owned(),
        digest: format!("{index:064x}"),
        source_id: format!("V-{index}"),
        title: format!("Historical incident {index}"),
        category: Category::Phishing as i32,
        status: Status::Closed as i32,
        resolution: Resolution::TruePositive as i32,
        reason: "migrated from the VERIS archive".to_owned(),
        occurred_at: ts(1_600_000_000),
        detected_at: ts(1_600_086_400),
        resolved_at: ts(1_600_345_600),
        closed_at: ts(1_600_432_000),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_twice_reports_already_present() {
    let (_db, _running, mut client) = start().await;
    let records: Vec<ImportRecord> = (0..5).map(import_record).collect();
    let first = client
        .import_tickets(ImportTicketsRequest {
            records: records.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let second = client
        .import_tickets(ImportTicketsRequest { records })
        .await
        .unwrap()
        .into_inner();

    assert!(
        first
            .results
            .iter()
            .all(|result| result.outcome == Outcome::Imported as i32),
        "{:?}",
        first.results
    );
    assert!(
        second
            .results
            .iter()
            .all(|result| result.outcome == Outcome::AlreadyPresent as i32),
        "{:?}",
        second.results
    );
    let first_ids: Vec<_> = first
        .results
        .iter()
        .map(|result| result.ticket_id.clone())
        .collect();
    let second_ids: Vec<_> = second
        .results
        .iter()
        .map(|result| result.ticket_id.clone())
        .collect();
    assert_eq!(first_ids, second_ids);
    let listed = client
        .list_tickets(ListTicketsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.tickets.len(), 5);

    // A re-import draws no key numbers, so the next new ticket follows the last import.
    let last_key = first.results.last().unwrap().key.clone();
    let next = client
        .import_tickets(ImportTicketsRequest {
            records: vec![import_record(5)],
        })
        .await
        .unwrap()
        .into_inner();
    let number = |key: &str| key.trim_start_matches("INC-").parse::<i64>().unwrap();
    assert_eq!(number(&next.results[0].key), number(&last_key) + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_keeps_given_timestamps_and_leaves_others_unset() {
    let (_db, _running, mut client) = start().await;
    let response = client
        .import_tickets(ImportTicketsRequest {
            records: vec![import_record(1)],
        })
        .await
        .unwrap()
        .into_inner();
    let ticket = client
        .get_ticket(GetTicketRequest {
            ticket: response.results[0].ticket_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ticket.status, Status::Closed as i32);
    assert_eq!(ticket.closed_at, ts(1_600_432_000));
    assert_eq!(ticket.resolved_at, ts(1_600_345_600));
    assert_eq!(ticket.last_resolved_at, ts(1_600_345_600));
    assert_eq!(ticket.acknowledged_at, None);
    assert_eq!(ticket.severity, Severity::Unspecified as i32);
    assert!(ticket.imported);
    assert_eq!(ticket.import_source, "veris");

    let history = client
        .list_ticket_history(ListTicketHistoryRequest {
            ticket: ticket.id,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(history.entries[0].action, "ticket.imported");
    assert_eq!(history.entries[0].note, "migrated from the VERIS archive");
    let fields: Vec<&str> = history.entries[0]
        .changes
        .iter()
        .map(|change| change.field.as_str())
        .collect();
    assert!(fields.contains(&"closed_at"), "{fields:?}");
    assert!(!fields.contains(&"acknowledged_at"), "{fields:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_rejects_bad_record_and_keeps_others() {
    let (_db, _running, mut client) = start().await;
    let mut bad = import_record(2);
    bad.indicators = vec![Indicator {
        r#type: IndicatorType::Ipv4 as i32,
        value: "999.1.1.1".to_owned(),
    }];
    let mut uppercase = import_record(3);
    uppercase.digest = uppercase.digest.to_uppercase().replace('0', "A");
    let records = vec![import_record(1), bad, uppercase];
    let response = client
        .import_tickets(ImportTicketsRequest { records })
        .await
        .unwrap()
        .into_inner();

    assert_eq!(response.results[0].outcome, Outcome::Imported as i32);
    assert_eq!(response.results[1].outcome, Outcome::Rejected as i32);
    assert!(
        response.results[1]
            .error
            .contains("records[1].indicators[0].value"),
        "{}",
        response.results[1].error
    );
    assert!(
        response.results[1].error.contains("999.1.1.1"),
        "{}",
        response.results[1].error
    );
    assert_eq!(response.results[2].outcome, Outcome::Rejected as i32);
    assert!(
        response.results[2].error.contains("digest"),
        "{}",
        response.results[2].error
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_ticket_needs_severity() {
    let (_db, _running, mut client) = start().await;
    let mut request = create_request("unrated");
    request.severity = Severity::Unspecified as i32;
    let status = client
        .create_ticket(request)
        .await
        .expect_err("severity is required");
    assert_eq!(status.code(), Code::InvalidArgument);
    let details = status
        .get_details_bad_request()
        .expect("bad request details");
    assert_eq!(details.field_violations[0].field, "severity");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transition_with_stale_etag_is_aborted() {
    let (_db, _running, mut client) = start().await;
    let ticket = create(&mut client, "transition-etag").await;
    move_to(&mut client, &ticket.id, Status::Acknowledged)
        .await
        .unwrap();
    let request = TransitionTicketRequest {
        ticket: ticket.id.clone(),
        to_status: Status::Investigating as i32,
        etag: ticket.etag.clone(),
        ..Default::default()
    };
    let status = client
        .transition_ticket(request)
        .await
        .expect_err("etag 1 is stale");
    assert_eq!(status.code(), Code::Aborted);
    let current = client
        .get_ticket(GetTicketRequest { ticket: ticket.id })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        current.status,
        Status::Acknowledged as i32,
        "the aborted move changed nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_filters_by_creation_range() {
    let (_db, _running, mut client) = start().await;
    let first = create(&mut client, "range-1").await;
    let second = create(&mut client, "range-2").await;
    let request = ListTicketsRequest {
        created_after: second.created_at,
        ..Default::default()
    };
    let listed = client.list_tickets(request).await.unwrap().into_inner();
    let ids: Vec<_> = listed
        .tickets
        .iter()
        .map(|ticket| ticket.id.clone())
        .collect();
    assert_eq!(ids, vec![second.id.clone()]);

    let request = ListTicketsRequest {
        created_before: second.created_at,
        ..Default::default()
    };
    let listed = client.list_tickets(request).await.unwrap().into_inner();
    let ids: Vec<_> = listed
        .tickets
        .iter()
        .map(|ticket| ticket.id.clone())
        .collect();
    assert_eq!(ids, vec![first.id]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundreds_of_bad_indicators_stay_invalid_argument() {
    let (_db, _running, mut client) = start().await;
    let mut request = create_request("many-bad-indicators");
    request.indicators = (0..400)
        .map(|index| Indicator {
            r#type: IndicatorType::Ipv4 as i32,
            value: format!("999.0.0.{index}"),
        })
        .collect();
    request.indicators.push(Indicator {
        r#type: IndicatorType::Url as i32,
        value: format!("notaurl://{}", "é".repeat(5000)),
    });

    let status = client
        .create_ticket(request)
        .await
        .expect_err("every indicator is invalid");

    assert_eq!(status.code(), Code::InvalidArgument, "{}", status.message());
    assert!(status.message().contains("indicators[0].value"), "{}", status.message());
    assert!(status.message().contains("more violations"), "{}", status.message());
    let details = status.get_details_bad_request().expect("BadRequest details");
    assert_eq!(details.field_violations.len(), 10);
    assert_eq!(details.field_violations[0].field, "indicators[0].value");

    let list = client
        .list_tickets(ListTicketsRequest::default())
        .await
        .expect("list tickets")
        .into_inner();
    assert!(list.tickets.is_empty(), "the rejected create stored a ticket");
}

/// Returns the longest comment allowed in bytes: 20,000 four-byte characters, 80,000 bytes.
fn long_comment() -> String {
    "\u{1D11E}".repeat(20_000)
}

async fn add_comment(client: &mut Client, ticket: &Ticket, body: &str) -> Result<tonic::Response<Comment>, tonic::Status> {
    client
        .add_comment(AddCommentRequest {
            ticket: ticket.id.clone(),
            body: body.to_owned(),
        })
        .await
}

/// A ticket of about 4.8 MB: 60 comments of 20,000 four-byte characters each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_reads_ticket_over_four_mebibytes() {
    let (_db, running, mut client) = start().await;
    let ticket = create(&mut client, "long-worklog").await;
    let body = long_comment();
    for _ in 0..60 {
        add_comment(&mut client, &ticket, &body).await.expect("add a long comment");
    }

    let token = docket_tests::user_token(docket_tests::TEST_USER, &[docket_auth::Role::Analyst]);
    let interceptor = docket_cli::client::TokenInterceptor::new(Some(&token)).expect("a valid token");
    let target = docket_cli::client::Target {
        service: "ticket",
        flag: "--ticket-addr",
        addr: running.addr.to_string(),
    };
    let mut cli_client = docket_cli::client::ticket_client(&target, &interceptor, std::time::Duration::from_secs(30))
        .await
        .expect("connect as the CLI does");
    let read = cli_client
        .get_ticket(GetTicketRequest { ticket: ticket.key.clone() })
        .await
        .expect("the CLI decodes a ticket over 4 MiB")
        .into_inner();

    assert_eq!(read.comments.len(), 60);
    assert!(read.comments.iter().all(|comment| comment.body == body));
}

/// 104 comments of 80,000 bytes fit in the 8 MiB worklog; the 105th does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_worklog_rejects_next_comment() {
    let (_db, _running, client) = start().await;
    let mut client = client.max_decoding_message_size(16 * 1024 * 1024);
    let ticket = create(&mut client, "full-worklog").await;
    let body = long_comment();
    for _ in 0..104 {
        add_comment(&mut client, &ticket, &body).await.expect("a comment within the worklog limit");
    }
    let before = client
        .get_ticket(GetTicketRequest { ticket: ticket.id.clone() })
        .await
        .expect("read the ticket")
        .into_inner();

    let status = add_comment(&mut client, &ticket, &body).await.expect_err("the worklog is full");

    assert_eq!(status.code(), Code::FailedPrecondition, "{}", status.message());
    assert!(status.message().contains(&ticket.key), "{}", status.message());
    assert!(status.message().contains("8388608"), "{}", status.message());
    let after = client
        .get_ticket(GetTicketRequest { ticket: ticket.id.clone() })
        .await
        .expect("the ticket stays readable")
        .into_inner();
    assert_eq!(after.comments.len(), 104);
    assert_eq!(after.version, before.version);
}
