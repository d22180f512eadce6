//! Tampering with a ledger that real ticket traffic filled. The database superuser changes
//! one byte of a record, deletes one and inserts one, and VerifyLedger names the first bad
//! record each time. After each repair the ledger verifies intact again. The role the audit
//! service works as cannot change the ledger at all.

use std::time::Duration;

use diesel_async::{AsyncPgConnection, SimpleAsyncConnection};
use docket_proto::audit::v1::{VerifyLedgerRequest, VerifyLedgerResponse};
use docket_proto::ticket::v1::*;
use docket_tests::chaos::{Change, settle};
use docket_tests::{Suite, audit_client, ticket_client};

/// Runs `statements` with the ledger's triggers off, as only a superuser can.
async fn as_superuser(conn: &mut AsyncPgConnection, statements: &str) {
    let script = format!("SET session_replication_role = replica; {statements}; RESET session_replication_role;");
    conn.batch_execute(&script).await.unwrap_or_else(|error| panic!("{statements}: {error}"));
}

async fn verify(suite: &Suite) -> VerifyLedgerResponse {
    let mut auditor = audit_client(suite.audit.addr).await;
    auditor.verify_ledger(VerifyLedgerRequest::default()).await.expect("VerifyLedger").into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampering_is_named_and_writer_cannot_tamper() {
    let suite = Suite::start().await;
    let mut client = ticket_client(suite.ticket.addr).await;
    let mut changes = Vec::new();
    for index in 0..4 {
        let request = CreateTicketRequest {
            request_id: format!("tamper-{index}"),
            title: "Exfiltration over DNS".to_owned(),
            severity: Severity::High as i32,
            category: Category::DataExfiltration as i32,
            team: "soc".to_owned(),
            detection_source: "ndr".to_owned(),
            ..Default::default()
        };
        let created = client.create_ticket(request).await.expect("create").into_inner();
        changes.push(Change::of(&created));
    }
    let tally = settle("tampering: ledger before the attacks", &changes, &suite.ticket_db, &suite.audit_db, &suite.metrics_db, Duration::from_secs(20)).await;
    tally.print();
    assert!(tally.is_complete(), "{tally:?}");
    assert!(verify(&suite).await.intact, "the ledger starts intact");

    let mut conn = suite.audit_db.superuser_conn().await;

    // One byte of record 2: the first character of its canonical JSON, `{`, becomes `[`.
    as_superuser(&mut conn, "UPDATE ledger SET canonical = set_byte(canonical, 0, 91) WHERE seq = 2").await;
    let report = verify(&suite).await;
    assert!(!report.intact, "a changed byte is found");
    assert_eq!(report.first_bad_seq, 2, "{}", report.problem);
    as_superuser(&mut conn, "UPDATE ledger SET canonical = set_byte(canonical, 0, 123) WHERE seq = 2").await;
    assert!(verify(&suite).await.intact, "restoring the byte restores the ledger");

    // Record 3 removed, then put back from a copy.
    as_superuser(
        &mut conn,
        "CREATE TEMP TABLE removed AS SELECT * FROM ledger WHERE seq = 3; DELETE FROM ledger WHERE seq = 3",
    )
    .await;
    let report = verify(&suite).await;
    assert!(!report.intact, "a deleted record is found");
    assert_eq!(report.first_bad_seq, 3, "{}", report.problem);
    as_superuser(&mut conn, "INSERT INTO ledger SELECT * FROM removed").await;
    assert!(verify(&suite).await.intact, "putting the record back restores the ledger");

    // A forged record 5 past the head: record 4's bytes with its own seq and event id, a
    // correct leaf hash, and a chain hash the forger cannot compute without breaking SHA-256.
    as_superuser(
        &mut conn,
        r#"WITH forged AS (
               SELECT *, gen_random_uuid() AS forged_id FROM ledger WHERE seq = 4
           ), bytes AS (
               SELECT *, convert_to(replace(replace(convert_from(canonical, 'UTF8'), '"seq":4', '"seq":5'),
                   event_id::text, forged_id::text), 'UTF8') AS forged_bytes
               FROM forged
           )
           INSERT INTO ledger
           SELECT 5, forged_id, action, resource_type, resource_id, resource_key, 'mallory', relayed_by, occurred_at,
                  recorded_at, forged_bytes, sha256('\x00'::bytea || forged_bytes), sha256(chain_hash)
           FROM bytes"#,
    )
    .await;
    let report = verify(&suite).await;
    assert!(!report.intact, "an inserted record is found");
    assert_eq!(report.first_bad_seq, 5, "{}", report.problem);
    as_superuser(&mut conn, "DELETE FROM ledger WHERE seq = 5").await;
    assert!(verify(&suite).await.intact, "removing the forged record restores the ledger");

    for statement in ["UPDATE ledger SET actor = 'mallory'", "DELETE FROM ledger", "TRUNCATE ledger"] {
        let script = format!("SET ROLE {}; {statement}", docket_audit::WRITER_ROLE);
        let error = conn.batch_execute(&script).await.expect_err(statement).to_string();
        assert!(error.contains("permission denied"), "{statement} as the service's role: {error}");
        conn.batch_execute("RESET ROLE").await.expect("reset the role");
    }
    assert!(verify(&suite).await.intact, "the rejected statements changed nothing");
}
