//! Step 5: VerifyLedger over a large ledger, then AppendEvents throughput in batches of
//! 100 on top of it.

use std::time::Instant;

use anyhow::Context as _;
use diesel::sql_types::BigInt;
use diesel_async::{RunQueryDsl, SimpleAsyncConnection};
use docket_proto::audit::v1::audit_service_client::AuditServiceClient;
use docket_proto::audit::v1::{AppendEventsRequest, VerifyLedgerRequest};
use docket_proto::events::v1::{Actor, ActorKind, Event, FieldChange, Resource};
use docket_tests::AuthChannel;
use serde::Serialize;

use crate::Plan;
use crate::cluster::{Context, ServiceProcess};
use crate::cpu::Watched;
use crate::load::{self, LoadSummary, Operation};

/// Events per AppendEvents call.
pub const BATCH_SIZE: usize = 100;

/// Concurrent appenders, as from several producers at once.
const APPEND_CLIENTS: usize = 4;

#[derive(Clone, Debug, Serialize)]
pub struct AuditResults {
    pub ledger_records: u64,
    pub seed_seconds: f64,
    /// Seconds of each VerifyLedger call over the seeded ledger.
    pub verify_seconds: Vec<f64>,
    pub verify_intact: bool,
    /// Batches of [`BATCH_SIZE`] events.
    pub append: LoadSummary,
    pub append_events_per_second: f64,
}

pub async fn run(context: &Context, plan: &Plan) -> anyhow::Result<AuditResults> {
    let label = "audit_scale";
    let service = ServiceProcess::start(context, "audit", label, context.database(label), &[]).await?;
    let outcome = run_with(&service, plan).await;
    service.stop_and_drop().await?;
    outcome
}

async fn run_with(service: &ServiceProcess, plan: &Plan) -> anyhow::Result<AuditResults> {
    eprintln!("audit: seeding {} ledger records", plan.ledger_records);
    let started = Instant::now();
    let mut conn = service.database.connect().await?;
    conn.batch_execute(include_str!("../sql/chain_aggregate.sql")).await.context("create the chain aggregate")?;
    diesel::sql_query(include_str!("../sql/seed_ledger.sql"))
        .bind::<BigInt, _>(plan.ledger_records as i64)
        .execute(&mut conn)
        .await
        .context("seed the ledger")?;
    conn.batch_execute(
        "UPDATE ledger_head SET seq = last.seq, chain_hash = last.chain_hash \
         FROM (SELECT seq, chain_hash FROM ledger ORDER BY seq DESC LIMIT 1) AS last WHERE ledger_head.id = 1",
    )
    .await
    .context("move the ledger head")?;
    conn.batch_execute("VACUUM ANALYZE ledger").await.context("vacuum the ledger")?;
    let seed_seconds = started.elapsed().as_secs_f64();

    let mut client = docket_tests::audit_client(service.addr).await;
    let mut verify_seconds = Vec::new();
    let mut verify_intact = true;
    for _ in 0..plan.verify_runs {
        eprintln!("audit: VerifyLedger over {} records", plan.ledger_records);
        let started = Instant::now();
        let report = client.verify_ledger(VerifyLedgerRequest {}).await.context("VerifyLedger")?.into_inner();
        verify_seconds.push(started.elapsed().as_secs_f64());
        anyhow::ensure!(
            report.records_checked == plan.ledger_records as i64,
            "VerifyLedger checked {} records of {}: {}",
            report.records_checked,
            plan.ledger_records,
            report.problem
        );
        verify_intact &= report.intact;
    }

    eprintln!("audit: AppendEvents, {APPEND_CLIENTS} clients, batches of {BATCH_SIZE}, {} s", plan.load_seconds);
    let mut operations = Vec::new();
    for _ in 0..APPEND_CLIENTS {
        operations.push(Append {
            client: docket_tests::audit_client(service.addr).await,
        });
    }
    let mut watched: Vec<Watched> = service.pid().map(|pid| Watched::process("docket-audit", pid)).into_iter().collect();
    watched.push(Watched::database(crate::report::AUDIT_TABLES, &service.database));
    let append = load::closed_loop(operations, plan.warmup(), plan.load(), &watched).await;
    let append_events_per_second = append.per_second * BATCH_SIZE as f64;
    Ok(AuditResults {
        ledger_records: plan.ledger_records,
        seed_seconds,
        verify_seconds,
        verify_intact,
        append,
        append_events_per_second,
    })
}

struct Append {
    client: AuditServiceClient<AuthChannel>,
}

impl Operation for Append {
    async fn call(&mut self, _iteration: u64) -> Result<(), String> {
        let events = (0..BATCH_SIZE).map(|_| transition_event()).collect();
        let response = self
            .client
            .append_events(AppendEventsRequest { events })
            .await
            .map_err(|status| format!("AppendEvents: {status}"))?
            .into_inner();
        if response.appended as usize != BATCH_SIZE {
            return Err(format!("AppendEvents appended {} of {BATCH_SIZE} new events", response.appended));
        }
        Ok(())
    }
}

/// Builds a status change event as the ticket service relays it, with a new event id.
fn transition_event() -> Event {
    let ticket = uuid::Uuid::now_v7();
    Event {
        event_id: uuid::Uuid::now_v7().to_string(),
        action: "ticket.transitioned".to_owned(),
        resource: Some(Resource {
            r#type: "ticket".to_owned(),
            id: ticket.to_string(),
            key: "INC-1042".to_owned(),
        }),
        resource_version: 3,
        actor: Some(Actor {
            subject: "alice".to_owned(),
            kind: ActorKind::Human as i32,
            relayed_by: "docket-ticket".to_owned(),
        }),
        occurred_at: Some(prost_types::Timestamp::from(std::time::SystemTime::now())),
        source_service: "docket-ticket".to_owned(),
        trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".to_owned(),
        changes: vec![FieldChange {
            field: "status".to_owned(),
            old_value: "\"investigating\"".to_owned(),
            new_value: "\"contained\"".to_owned(),
        }],
        reason: String::new(),
        ticket: None,
    }
}
