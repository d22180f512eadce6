//! The audit service against a real PostgreSQL database: appends, idempotency,
//! concurrency, listing, the append-only triggers and verification after tampering.

use std::collections::HashSet;

use diesel::sql_types::{BigInt, Bool, Text};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use docket_proto::audit::v1::audit_service_client::AuditServiceClient;
use docket_proto::audit::v1::{
    AppendEventsRequest, AppendEventsResponse, ListRecordsRequest, ListRecordsResponse, Record, VerifyLedgerRequest,
    VerifyLedgerResponse,
};
use docket_proto::events::v1::{Actor, ActorKind, Event, FieldChange, Resource};
use docket_tests::{Running, TestDb, audit_client, start_audit};
use tonic::Code;
use docket_tests::AuthChannel as Channel;
use tonic_types::StatusExt;

/// 2024-01-02T03:04:05Z.
const BASE_SECONDS: i64 = 1_704_164_645;

struct Audit {
    db: TestDb,
    // Kept so the service runs until the test ends.
    _service: Running,
    client: AuditServiceClient<Channel>,
}

async fn start() -> Audit {
    let db = TestDb::create("audit");
    let service = start_audit(&db).await;
    let client = audit_client(service.addr).await;
    Audit {
        db,
        _service: service,
        client,
    }
}

/// Builds a ticket event whose occurred_at is `offset` seconds after [`BASE_SECONDS`].
fn event(resource: &str, actor: &str, action: &str, offset: i64) -> Event {
    Event {
        event_id: uuid::Uuid::now_v7().to_string(),
        action: action.into(),
        resource: Some(Resource {
            r#type: "ticket".into(),
            id: resource.into(),
            key: format!("INC-{resource}"),
        }),
        resource_version: 1,
        actor: Some(Actor {
            subject: actor.into(),
            kind: ActorKind::Human as i32,
            relayed_by: "docket-ticket".into(),
        }),
        occurred_at: Some(prost_types::Timestamp {
            seconds: BASE_SECONDS + offset,
            nanos: 123_456_789,
        }),
        source_service: "docket-ticket".into(),
        trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
        changes: vec![FieldChange {
            field: "status".into(),
            old_value: String::new(),
            new_value: "\"new\"".into(),
        }],
        reason: String::new(),
        ticket: None,
    }
}

fn events(count: i64) -> Vec<Event> {
    (0..count).map(|i| event("7", "alice", "ticket.updated", i)).collect()
}

async fn append(client: &mut AuditServiceClient<Channel>, events: Vec<Event>) -> AppendEventsResponse {
    client
        .append_events(AppendEventsRequest { events })
        .await
        .expect("AppendEvents succeeds")
        .into_inner()
}

async fn verify(client: &mut AuditServiceClient<Channel>) -> VerifyLedgerResponse {
    client
        .verify_ledger(VerifyLedgerRequest {})
        .await
        .expect("VerifyLedger succeeds")
        .into_inner()
}

async fn list(client: &mut AuditServiceClient<Channel>, request: ListRecordsRequest) -> ListRecordsResponse {
    client
        .list_records(request)
        .await
        .expect("ListRecords succeeds")
        .into_inner()
}

/// Lists every record matching `request`, following page tokens.
async fn list_all(client: &mut AuditServiceClient<Channel>, request: ListRecordsRequest) -> Vec<Record> {
    let mut records = Vec::new();
    let mut request = request;
    loop {
        let page = list(client, request.clone()).await;
        records.extend(page.records);
        if page.next_page_token.is_empty() {
            return records;
        }
        request.page_token = page.next_page_token;
    }
}

fn seqs(records: &[Record]) -> Vec<i64> {
    records.iter().map(|record| record.seq).collect()
}

/// Runs statements as the superuser with the ledger triggers disabled, as a database
/// administrator can.
async fn tamper(conn: &mut AsyncPgConnection, statements: &str) {
    let script = format!("SET session_replication_role = replica; {statements}; RESET session_replication_role;");
    conn.batch_execute(&script)
        .await
        .unwrap_or_else(|error| panic!("tamper with {statements:?}: {error}"));
}

/// SQL that inserts a forged record at `new_seq`, copied from record `source_seq` with a
/// fresh event id and `mallory` as the actor, and with a correct leaf hash. The chain hash
/// is `chain_hash_sql`, which may use `chain_hash` (the source record's) and `leaf`.
fn forged_insert(source_seq: i64, new_seq: i64, chain_hash_sql: &str) -> String {
    format!(
        r#"WITH source AS (
               SELECT *, gen_random_uuid() AS forged_id FROM ledger WHERE seq = {source_seq}
           ), forged AS (
               SELECT *, convert_to(replace(replace(replace(convert_from(canonical, 'UTF8'),
                   '"seq":{source_seq}', '"seq":{new_seq}'),
                   event_id::text, forged_id::text),
                   '"subject":"alice"', '"subject":"mallory"'), 'UTF8') AS bytes
               FROM source
           ), hashed AS (
               SELECT *, sha256('\x00'::bytea || bytes) AS leaf FROM forged
           )
           INSERT INTO ledger
           SELECT {new_seq}, forged_id, action, resource_type, resource_id, resource_key, 'mallory', relayed_by,
                  occurred_at, recorded_at, bytes, leaf, {chain_hash_sql}
           FROM hashed"#
    )
}

/// Returns an MD5 digest of every column of every ledger row.
async fn ledger_fingerprint(conn: &mut AsyncPgConnection) -> String {
    diesel::select(diesel::dsl::sql::<Text>(
        "(SELECT coalesce(md5(string_agg(ledger::text, '|' ORDER BY seq)), '') FROM ledger)",
    ))
    .get_result(conn)
    .await
    .expect("fingerprint query")
}

async fn ledger_count(conn: &mut AsyncPgConnection) -> i64 {
    diesel::select(diesel::dsl::sql::<BigInt>("(SELECT count(*) FROM ledger)"))
        .get_result(conn)
        .await
        .expect("count query")
}

fn violation_fields(status: &tonic::Status) -> Vec<String> {
    status
        .get_details_bad_request()
        .map(|bad_request| bad_request.field_violations.into_iter().map(|v| v.field).collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn append_list_and_verify_intact() {
    let mut audit = start().await;

    let first = append(&mut audit.client, events(3)).await;
    let second = append(&mut audit.client, events(2)).await;
    assert_eq!(first.appended, 3);
    assert_eq!(first.head_seq, 3);
    assert_eq!(second.appended, 2);
    assert_eq!(second.head_seq, 5);

    let records = list_all(&mut audit.client, ListRecordsRequest::default()).await;
    assert_eq!(seqs(&records), [1, 2, 3, 4, 5]);

    let report = verify(&mut audit.client).await;
    assert!(report.intact, "{report:?}");
    assert_eq!(report.records_checked, 5);
    assert_eq!(report.first_bad_seq, 0);
    assert_eq!(report.head_seq, 5);
    assert_eq!(report.head_hash, records[4].chain_hash);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_ledger_verifies_intact() {
    let mut audit = start().await;
    let report = verify(&mut audit.client).await;
    assert!(report.intact, "{report:?}");
    assert_eq!(report.records_checked, 0);
    assert_eq!(report.head_seq, 0);
    assert_eq!(report.head_hash, vec![0; 32]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canonical_record_has_documented_form() {
    let mut audit = start().await;
    let sent = event("7", "alice", "ticket.created", 0);
    append(&mut audit.client, vec![sent.clone()]).await;

    let record = list(&mut audit.client, ListRecordsRequest::default())
        .await
        .records
        .remove(0);
    let value: serde_json::Value = serde_json::from_slice(&record.canonical).expect("canonical bytes are JSON");

    // Re-serializing the parsed value with sorted keys and no whitespace gives the same bytes.
    assert_eq!(serde_json::to_vec(&value).unwrap(), record.canonical);
    assert_eq!(value["seq"], 1);
    assert_eq!(value["event_id"], sent.event_id);
    assert_eq!(value["action"], "ticket.created");
    assert_eq!(
        value["resource"],
        serde_json::json!({ "type": "ticket", "id": "7", "key": "INC-7" })
    );
    assert_eq!(value["resource_version"], 1);
    assert_eq!(
        value["actor"],
        serde_json::json!({ "subject": "alice", "kind": "human", "relayed_by": "docket-ticket" })
    );
    assert_eq!(value["occurred_at"], "2024-01-02T03:04:05.123456Z");
    assert_eq!(value["source_service"], "docket-ticket");
    assert_eq!(value["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(
        value["changes"],
        serde_json::json!([{ "field": "status", "old": null, "new": "new" }])
    );
    assert_eq!(value["reason"], "");
    let recorded_at = value["recorded_at"].as_str().expect("recorded_at is a string");
    assert_eq!(recorded_at.len(), "2024-01-02T03:04:05.123456Z".len(), "{recorded_at}");
    assert_eq!(
        record.occurred_at,
        Some(prost_types::Timestamp {
            seconds: BASE_SECONDS,
            nanos: 123_456_000
        })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_hashes_match_postgres_sha256() {
    let mut audit = start().await;
    append(&mut audit.client, events(4)).await;
    append(&mut audit.client, events(3)).await;
    let mut conn = audit.db.superuser_conn().await;

    let leaves_match: bool = diesel::select(diesel::dsl::sql::<Bool>(
        r"(SELECT bool_and(leaf_hash = sha256('\x00'::bytea || canonical)) FROM ledger)",
    ))
    .get_result(&mut conn)
    .await
    .unwrap();
    assert!(
        leaves_match,
        "a leaf hash differs from PostgreSQL's SHA-256(0x00 || canonical)"
    );

    let chain_matches: bool = diesel::select(diesel::dsl::sql::<Bool>(
        r"(WITH RECURSIVE chain (seq, hash) AS (
              SELECT 0::bigint, decode(repeat('00', 32), 'hex')
              UNION ALL
              SELECT ledger.seq, sha256(chain.hash || ledger.leaf_hash)
              FROM chain JOIN ledger ON ledger.seq = chain.seq + 1
          )
          SELECT count(*) = 7 AND bool_and(chain.hash = ledger.chain_hash)
          FROM chain JOIN ledger USING (seq))",
    ))
    .get_result(&mut conn)
    .await
    .unwrap();
    assert!(chain_matches, "the chain differs from one recomputed by PostgreSQL");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redelivered_batch_changes_nothing() {
    let mut audit = start().await;
    let batch = events(5);
    append(&mut audit.client, batch.clone()).await;
    let mut conn = audit.db.superuser_conn().await;
    let before = ledger_fingerprint(&mut conn).await;

    let again = append(&mut audit.client, batch.clone()).await;
    assert_eq!(again.appended, 0);
    assert_eq!(again.already_present, 5);
    assert_eq!(again.head_seq, 5);
    assert_eq!(
        ledger_fingerprint(&mut conn).await,
        before,
        "the ledger changed on redelivery"
    );

    let mut mixed = batch[3..].to_vec();
    mixed.push(event("7", "alice", "ticket.updated", 9));
    let partly_new = append(&mut audit.client, mixed).await;
    assert_eq!(partly_new.appended, 1);
    assert_eq!(partly_new.already_present, 2);
    assert_eq!(partly_new.head_seq, 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_ids_in_one_batch_recorded_once() {
    let mut audit = start().await;
    let first = event("7", "alice", "ticket.created", 0);
    let mut repeat = first.clone();
    repeat.action = "ticket.updated".into();
    let other = event("7", "alice", "ticket.updated", 1);

    let response = append(&mut audit.client, vec![first.clone(), repeat, other, first]).await;
    assert_eq!(response.appended, 2);
    assert_eq!(response.already_present, 2);
    assert_eq!(response.head_seq, 2);

    let records = list_all(&mut audit.client, ListRecordsRequest::default()).await;
    assert_eq!(
        records[0].action, "ticket.created",
        "the first occurrence of an id is the one recorded"
    );
    assert!(verify(&mut audit.client).await.intact);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appenders_keep_chain_contiguous() {
    const APPENDERS: usize = 8;
    const BATCHES: usize = 5;
    const BATCH_SIZE: i64 = 20;
    let audit = start().await;

    let mut tasks = Vec::new();
    for appender in 0..APPENDERS {
        // Each appender has its own connection, like a separate replica of the relay.
        let mut client = audit_client(audit._service.addr).await;
        tasks.push(tokio::spawn(async move {
            let mut batches = Vec::new();
            for _ in 0..BATCHES {
                let batch: Vec<Event> = (0..BATCH_SIZE)
                    .map(|i| {
                        event(
                            &appender.to_string(),
                            &format!("appender-{appender}"),
                            "ticket.updated",
                            i,
                        )
                    })
                    .collect();
                let ids: Vec<String> = batch.iter().map(|e| e.event_id.clone()).collect();
                let response = append(&mut client, batch).await;
                assert_eq!(response.appended, BATCH_SIZE as i32);
                batches.push(ids);
            }
            batches
        }));
    }
    let mut batches = Vec::new();
    for task in tasks {
        batches.extend(task.await.expect("appender task completes"));
    }

    let mut client = audit.client.clone();
    let records = list_all(
        &mut client,
        ListRecordsRequest {
            page_size: 1000,
            ..Default::default()
        },
    )
    .await;
    let total = (APPENDERS * BATCHES) as i64 * BATCH_SIZE;
    assert_eq!(seqs(&records), (1..=total).collect::<Vec<_>>());

    let ids: HashSet<&str> = records.iter().map(|r| r.event_id.as_str()).collect();
    assert_eq!(ids.len() as i64, total, "an event was recorded twice");

    // A batch is appended under one lock, so its records form one contiguous run.
    for batch in &batches {
        let mut batch_seqs: Vec<i64> = records
            .iter()
            .filter(|r| batch.contains(&r.event_id))
            .map(|r| r.seq)
            .collect();
        batch_seqs.sort_unstable();
        let first = batch_seqs[0];
        assert_eq!(batch_seqs, (first..first + BATCH_SIZE).collect::<Vec<_>>());
    }

    let report = verify(&mut client).await;
    assert!(report.intact, "{report:?}");
    assert_eq!(report.records_checked, total);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn triggers_reject_changes_even_for_superuser() {
    let mut audit = start().await;
    append(&mut audit.client, events(3)).await;
    let mut conn = audit.db.superuser_conn().await;
    let before = ledger_fingerprint(&mut conn).await;

    let statements = [
        "UPDATE ledger SET actor = 'mallory' WHERE seq = 2",
        "DELETE FROM ledger WHERE seq = 3",
        "TRUNCATE ledger",
        "DELETE FROM ledger_head",
        "TRUNCATE ledger_head",
    ];
    for statement in statements {
        let error = conn.batch_execute(statement).await.expect_err(statement);
        let message = error.to_string();
        assert!(message.contains("append-only"), "{statement}: {message}");
    }
    assert_eq!(ledger_fingerprint(&mut conn).await, before);
    assert_eq!(ledger_count(&mut conn).await, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writer_role_may_only_read_and_append() {
    let mut audit = start().await;
    append(&mut audit.client, events(3)).await;
    let mut conn = audit.db.superuser_conn().await;
    let before = ledger_fingerprint(&mut conn).await;

    // Even with the triggers switched off, the role's missing privileges stop each change.
    let statements = [
        "UPDATE ledger SET actor = 'mallory' WHERE seq = 2",
        "DELETE FROM ledger WHERE seq = 3",
        "TRUNCATE ledger",
        "DELETE FROM ledger_head",
        "TRUNCATE ledger_head",
        "ALTER TABLE ledger DISABLE TRIGGER ledger_reject_update",
    ];
    for statement in statements {
        let script = format!("SET ROLE {}; {statement}", docket_audit::WRITER_ROLE);
        let error = conn.batch_execute(&script).await.expect_err(statement);
        let message = error.to_string();
        assert!(
            message.contains("permission denied") || message.contains("must be owner"),
            "{statement} as {}: {message}",
            docket_audit::WRITER_ROLE
        );
        conn.batch_execute("RESET ROLE").await.expect("reset the role");
    }
    conn.batch_execute(&format!("SET ROLE {}", docket_audit::WRITER_ROLE)).await.expect("set the writer role");
    let visible = ledger_count(&mut conn).await;
    conn.batch_execute("RESET ROLE").await.expect("reset the role");
    assert_eq!(visible, 3, "the writer role reads the ledger");
    assert_eq!(ledger_fingerprint(&mut conn).await, before, "no statement changed the ledger");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_appends_as_writer_role() {
    let mut audit = start().await;
    append(&mut audit.client, events(1)).await;
    let mut conn = audit.db.superuser_conn().await;

    // Only the writer role loses INSERT, so an append that still worked would have run as
    // another role.
    conn.batch_execute(&format!("REVOKE INSERT ON ledger FROM {}", docket_audit::WRITER_ROLE)).await.expect("revoke INSERT");
    let status = audit.client.append_events(AppendEventsRequest { events: events(2)[1..].to_vec() }).await.expect_err("the append needs INSERT");
    assert_eq!(status.code(), Code::Internal, "{status:?}");
    assert_eq!(ledger_count(&mut conn).await, 1, "the rejected append wrote nothing");

    conn.batch_execute(&format!("GRANT INSERT ON ledger TO {}", docket_audit::WRITER_ROLE)).await.expect("grant INSERT again");
    append(&mut audit.client, events(2)[1..].to_vec()).await;
    assert_eq!(ledger_count(&mut conn).await, 2);
    assert!(verify(&mut audit.client).await.intact, "the ledger stays intact");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_row_only_moves_to_last_record() {
    let mut audit = start().await;
    append(&mut audit.client, events(3)).await;
    let mut conn = audit.db.superuser_conn().await;

    let rollback = conn
        .batch_execute("UPDATE ledger_head SET seq = 2")
        .await
        .expect_err("head rollback");
    assert!(
        rollback.to_string().contains("must point at the last record"),
        "{rollback}"
    );
    let wrong_hash = conn
        .batch_execute(r"UPDATE ledger_head SET chain_hash = decode(repeat('ab', 32), 'hex')")
        .await
        .expect_err("head with a foreign hash");
    assert!(
        wrong_hash.to_string().contains("must point at the last record"),
        "{wrong_hash}"
    );
    assert!(verify(&mut audit.client).await.intact);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_names_tampered_byte() {
    let mut audit = start().await;
    append(&mut audit.client, events(6)).await;
    let mut conn = audit.db.superuser_conn().await;

    // Change the year 2024 of occurred_at to 3024. This test gets past the triggers
    // with ALTER TABLE, the others with session_replication_role.
    conn.batch_execute(
        "ALTER TABLE ledger DISABLE TRIGGER ALL; \
         UPDATE ledger SET canonical = set_byte(canonical, position('\"occurred_at\":\"2'::bytea in canonical) + 14, 51) \
         WHERE seq = 4; \
         ALTER TABLE ledger ENABLE TRIGGER ALL",
    )
    .await
    .expect("tamper with one byte");

    let report = verify(&mut audit.client).await;
    assert!(!report.intact);
    assert_eq!(report.first_bad_seq, 4);
    assert!(report.problem.starts_with("leaf hash mismatch"), "{}", report.problem);
    assert_eq!(report.head_seq, 3, "the last verified record comes before the bad one");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_names_deleted_record() {
    let mut audit = start().await;
    append(&mut audit.client, events(6)).await;
    let mut conn = audit.db.superuser_conn().await;
    tamper(&mut conn, "DELETE FROM ledger WHERE seq = 4").await;

    let report = verify(&mut audit.client).await;
    assert!(!report.intact);
    assert_eq!(report.first_bad_seq, 4);
    assert_eq!(report.problem, "sequence gap: expected seq 4, found seq 5");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_names_deleted_last_record() {
    let mut audit = start().await;
    append(&mut audit.client, events(6)).await;
    let mut conn = audit.db.superuser_conn().await;
    tamper(&mut conn, "DELETE FROM ledger WHERE seq = 6").await;

    let report = verify(&mut audit.client).await;
    assert!(!report.intact);
    assert_eq!(report.first_bad_seq, 6);
    assert!(
        report.problem.starts_with("head row does not match the last record"),
        "{}",
        report.problem
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_names_forged_record_at_end() {
    let mut audit = start().await;
    append(&mut audit.client, events(5)).await;
    let mut conn = audit.db.superuser_conn().await;

    // INSERT needs no trigger bypass. This forger writes an arbitrary chain hash
    // instead of one that follows record 5.
    conn.batch_execute(&forged_insert(5, 6, "decode(repeat('ab', 32), 'hex')"))
        .await
        .expect("forged insert");

    let report = verify(&mut audit.client).await;
    assert!(!report.intact);
    assert_eq!(report.first_bad_seq, 6);
    assert!(report.problem.starts_with("chain hash mismatch"), "{}", report.problem);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_names_forged_record_past_head() {
    let mut audit = start().await;
    append(&mut audit.client, events(5)).await;
    let mut conn = audit.db.superuser_conn().await;

    // This forger chains the record correctly but leaves the head row at seq 5.
    conn.batch_execute(&forged_insert(5, 6, "sha256(chain_hash || leaf)"))
        .await
        .expect("forged insert");

    let report = verify(&mut audit.client).await;
    assert!(!report.intact);
    assert_eq!(report.first_bad_seq, 6);
    assert!(
        report.problem.starts_with("head row does not match the last record"),
        "{}",
        report.problem
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_names_record_inserted_by_renumbering() {
    let mut audit = start().await;
    append(&mut audit.client, events(6)).await;
    let mut conn = audit.db.superuser_conn().await;

    // Shift seq 3..6 up by one, then forge seq 3 with a valid leaf and a chain hash that
    // follows record 2. Record 4 (the old 3) is the first to break the chain, and it still
    // chains to record 2.
    let shift = "UPDATE ledger SET seq = seq + 1000 WHERE seq >= 3; UPDATE ledger SET seq = seq - 999 WHERE seq > 1000";
    tamper(
        &mut conn,
        &format!("{shift}; {}", forged_insert(2, 3, "sha256(chain_hash || leaf)")),
    )
    .await;

    let report = verify(&mut audit.client).await;
    assert!(!report.intact);
    assert_eq!(report.first_bad_seq, 3);
    assert!(report.problem.starts_with("inserted record"), "{}", report.problem);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_names_lower_of_swapped_records() {
    let mut audit = start().await;
    append(&mut audit.client, events(6)).await;
    let mut conn = audit.db.superuser_conn().await;

    // Exchange the contents of seq 2 and seq 5, hashes included.
    tamper(
        &mut conn,
        "UPDATE ledger SET seq = seq + 1000 WHERE seq IN (2, 5); \
         UPDATE ledger SET seq = 5 WHERE seq = 1002; \
         UPDATE ledger SET seq = 2 WHERE seq = 1005",
    )
    .await;

    let report = verify(&mut audit.client).await;
    assert!(!report.intact);
    assert_eq!(report.first_bad_seq, 2);
    assert!(report.problem.starts_with("chain hash mismatch"), "{}", report.problem);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_names_swapped_canonical_bytes() {
    let mut audit = start().await;
    append(&mut audit.client, events(6)).await;
    let mut conn = audit.db.superuser_conn().await;

    // Exchange only the canonical bytes of seq 3 and seq 4, leaving the hashes in place.
    tamper(
        &mut conn,
        "UPDATE ledger AS target SET canonical = source.canonical \
         FROM ledger AS source WHERE (target.seq, source.seq) IN ((3, 4), (4, 3))",
    )
    .await;

    let report = verify(&mut audit.client).await;
    assert!(!report.intact);
    assert_eq!(report.first_bad_seq, 3);
    assert!(report.problem.starts_with("leaf hash mismatch"), "{}", report.problem);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_names_changed_index_column() {
    let mut audit = start().await;
    append(&mut audit.client, events(4)).await;
    let mut conn = audit.db.superuser_conn().await;
    tamper(&mut conn, "UPDATE ledger SET actor = 'mallory' WHERE seq = 2").await;

    let report = verify(&mut audit.client).await;
    assert!(!report.intact);
    assert_eq!(report.first_bad_seq, 2);
    assert_eq!(report.problem, "column actor does not match the canonical bytes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_events_are_rejected_and_nothing_written() {
    type Mutation = fn(&mut Event);
    let cases: [(&str, Mutation); 8] = [
        ("events[1].event_id", |e| e.event_id = "not-a-uuid".into()),
        ("events[1].event_id", |e| e.event_id.clear()),
        ("events[1].action", |e| e.action.clear()),
        ("events[1].resource.id", |e| e.resource = None),
        ("events[1].actor.subject", |e| e.actor.as_mut().unwrap().subject.clear()),
        ("events[1].occurred_at", |e| e.occurred_at = None),
        ("events[1].occurred_at", |e| e.occurred_at.as_mut().unwrap().nanos = -1),
        ("events[1].changes[0].old_value", |e| {
            e.changes[0].old_value = "{not json".into()
        }),
    ];
    let mut audit = start().await;

    for (field, mutate) in cases {
        let mut bad = event("7", "alice", "ticket.updated", 1);
        mutate(&mut bad);
        let batch = vec![event("7", "alice", "ticket.created", 0), bad];
        let status = audit
            .client
            .append_events(AppendEventsRequest { events: batch })
            .await
            .expect_err(field);
        assert_eq!(status.code(), Code::InvalidArgument, "{field}: {status:?}");
        assert_eq!(violation_fields(&status), [field], "{status:?}");
        assert!(status.message().contains(field), "{field}: {}", status.message());
    }

    let report = verify(&mut audit.client).await;
    assert_eq!(report.head_seq, 0, "a rejected batch wrote records");
    let mut conn = audit.db.superuser_conn().await;
    assert_eq!(ledger_count(&mut conn).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_size_outside_limits_is_rejected() {
    let mut audit = start().await;
    for size in [0, 1001] {
        let status = audit
            .client
            .append_events(AppendEventsRequest { events: events(size) })
            .await
            .expect_err("batch outside 1..=1000");
        assert_eq!(status.code(), Code::InvalidArgument, "size {size}");
        assert_eq!(violation_fields(&status), ["events"], "size {size}");
    }
    let mut conn = audit.db.superuser_conn().await;
    assert_eq!(ledger_count(&mut conn).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pagination_returns_each_record_once() {
    let mut audit = start().await;
    append(&mut audit.client, events(25)).await;

    let mut pages = 0;
    let mut records = Vec::new();
    let mut token = String::new();
    loop {
        let page = list(
            &mut audit.client,
            ListRecordsRequest {
                page_size: 7,
                page_token: token,
                ..Default::default()
            },
        )
        .await;
        pages += 1;
        assert!(
            page.records.len() <= 7,
            "page {pages} has {} records",
            page.records.len()
        );
        records.extend(page.records);
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seqs(&records), (1..=25).collect::<Vec<_>>());
    assert_eq!(pages, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_page_size_is_100() {
    let mut audit = start().await;
    append(&mut audit.client, events(101)).await;
    let page = list(&mut audit.client, ListRecordsRequest::default()).await;
    assert_eq!(page.records.len(), 100);
    assert!(!page.next_page_token.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_rejects_bad_page_requests() {
    let mut audit = start().await;
    append(&mut audit.client, events(5)).await;
    let first = list(
        &mut audit.client,
        ListRecordsRequest {
            page_size: 2,
            actor: "alice".into(),
            ..Default::default()
        },
    )
    .await;

    let cases = [
        (
            "page_size",
            ListRecordsRequest {
                page_size: 1001,
                ..Default::default()
            },
        ),
        (
            "page_size",
            ListRecordsRequest {
                page_size: -1,
                ..Default::default()
            },
        ),
        (
            "page_token",
            ListRecordsRequest {
                page_token: "garbage".into(),
                ..Default::default()
            },
        ),
        (
            "page_token",
            ListRecordsRequest {
                page_size: 2,
                actor: "bob".into(),
                page_token: first.next_page_token.clone(),
                ..Default::default()
            },
        ),
    ];
    for (field, request) in cases {
        let status = audit.client.list_records(request.clone()).await.expect_err(field);
        assert_eq!(status.code(), Code::InvalidArgument, "{request:?}");
        assert_eq!(violation_fields(&status), [field], "{request:?}");
        if field == "page_token" {
            assert!(
                status.message().contains("restart the listing without a page token"),
                "{}",
                status.message()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_filters_select_matching_records() {
    let mut audit = start().await;
    append(
        &mut audit.client,
        vec![
            event("1", "alice", "ticket.created", 0),
            event("2", "bob", "ticket.created", 10),
            event("1", "bob", "ticket.transitioned", 20),
            event("3", "alice", "ticket.commented", 30),
            event("1", "alice", "ticket.closed", 40),
        ],
    )
    .await;
    let at = |offset: i64| {
        Some(prost_types::Timestamp {
            seconds: BASE_SECONDS + offset,
            nanos: 123_456_789,
        })
    };

    let cases = [
        (
            "resource id",
            ListRecordsRequest {
                resource: "1".into(),
                ..Default::default()
            },
            vec![1, 3, 5],
        ),
        (
            "resource key",
            ListRecordsRequest {
                resource: "INC-1".into(),
                ..Default::default()
            },
            vec![1, 3, 5],
        ),
        (
            "actor",
            ListRecordsRequest {
                actor: "bob".into(),
                ..Default::default()
            },
            vec![2, 3],
        ),
        (
            "action",
            ListRecordsRequest {
                action: "ticket.created".into(),
                ..Default::default()
            },
            vec![1, 2],
        ),
        (
            "after is inclusive",
            ListRecordsRequest {
                occurred_after: at(20),
                ..Default::default()
            },
            vec![3, 4, 5],
        ),
        (
            "before is exclusive",
            ListRecordsRequest {
                occurred_before: at(20),
                ..Default::default()
            },
            vec![1, 2],
        ),
        (
            "range and actor",
            ListRecordsRequest {
                actor: "alice".into(),
                occurred_after: at(10),
                occurred_before: at(40),
                ..Default::default()
            },
            vec![4],
        ),
        (
            "no match",
            ListRecordsRequest {
                resource: "9".into(),
                ..Default::default()
            },
            vec![],
        ),
    ];
    for (name, request, expected) in cases {
        let records = list_all(
            &mut audit.client,
            ListRecordsRequest {
                page_size: 1,
                ..request
            },
        )
        .await;
        assert_eq!(seqs(&records), expected, "{name}");
    }
}

/// Number of records for [`verify_streams_large_ledger`], unless DOCKET_AUDIT_SCALE_RECORDS sets another.
const SCALE_RECORDS: i64 = 1_000_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "builds a ledger of a million records in PostgreSQL, which takes minutes; run with --ignored"]
async fn verify_streams_large_ledger() {
    let records: i64 = std::env::var("DOCKET_AUDIT_SCALE_RECORDS")
        .ok()
        .map(|value| value.parse().expect("DOCKET_AUDIT_SCALE_RECORDS is a number"))
        .unwrap_or(SCALE_RECORDS);
    let mut audit = start().await;
    let mut conn = audit.db.superuser_conn().await;

    // Writes valid records directly, which is far faster than the API for this many. The
    // canonical bytes come from json_build_object, so they are valid JSON but not in the
    // canonical form. That does not matter here, because verification hashes the stored
    // bytes and never re-encodes them.
    let started = std::time::Instant::now();
    conn.batch_execute(&format!(
        r#"DO $$
           DECLARE
               previous bytea := decode(repeat('00', 32), 'hex');
               id uuid;
               bytes bytea;
               leaf bytea;
               at timestamptz := '2024-01-02T03:04:05Z';
           BEGIN
               FOR i IN 1..{records} LOOP
                   id := gen_random_uuid();
                   bytes := convert_to(json_build_object(
                       'seq', i, 'event_id', id::text, 'action', 'ticket.updated',
                       'resource', json_build_object('type', 'ticket', 'id', 't-' || (i % 5000), 'key', 'INC-' || (i % 5000)),
                       'resource_version', i, 'source_service', 'docket-ticket',
                       'actor', json_build_object('subject', 'alice', 'kind', 'human', 'relayed_by', 'docket-ticket'),
                       'occurred_at', '2024-01-02T03:04:05.000000Z', 'recorded_at', '2024-01-02T03:04:05.000000Z',
                       'trace_id', '4bf92f3577b34da6a3ce929d0e0e4736',
                       'changes', json_build_array(json_build_object('field', 'status', 'old', 'investigating', 'new', 'contained')),
                       'reason', repeat('r', 200))::text, 'UTF8');
                   leaf := sha256('\x00'::bytea || bytes);
                   previous := sha256(previous || leaf);
                   INSERT INTO ledger VALUES (i, id, 'ticket.updated', 'ticket', 't-' || (i % 5000), 'INC-' || (i % 5000),
                                              'alice', 'docket-ticket', at, at, bytes, leaf, previous);
               END LOOP;
               UPDATE ledger_head SET seq = {records}, chain_hash = previous;
           END $$"#
    ))
    .await
    .expect("build the large ledger");
    eprintln!("built {records} records in {:?}", started.elapsed());

    let started = std::time::Instant::now();
    let report = verify(&mut audit.client).await;
    eprintln!("verified {} records in {:?}", report.records_checked, started.elapsed());
    assert!(report.intact, "{report:?}");
    assert_eq!(report.records_checked, records);

    // The database is large, so drop it now rather than leave it for the next cleanup.
    let Audit {
        db, _service: service, ..
    } = audit;
    drop(conn);
    service.stop().await;
    let maintenance_url = db.url.replace(&format!("/{}", db.name), "/postgres");
    let mut maintenance = AsyncPgConnection::establish(&maintenance_url)
        .await
        .expect("connect to the postgres database");
    maintenance
        .batch_execute(&format!("DROP DATABASE \"{}\" WITH (FORCE)", db.name))
        .await
        .expect("drop the large test database");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_database_role_keeps_service_unready() {
    let db = TestDb::create("audit");
    let extra = ["--database-role".to_owned(), "docket_no_such_role".to_owned()];
    let audit = docket_tests::process::ServiceProcess::spawn("docket-audit", &db, docket_tests::unused_addr(), &extra);

    // Migrations run as the login role, then every pooled connection fails its SET ROLE.
    let logged = docket_tests::eventually(std::time::Duration::from_secs(20), || async {
        audit.log().contains(r#"SET ROLE "docket_no_such_role" failed"#).then_some(())
    })
    .await;
    assert!(logged.is_some(), "the log names the failing SET ROLE:\n{}", audit.log());
    assert_eq!(docket_tests::health_status(audit.addr).await, Some(false), "the service stays NOT_SERVING");
}
