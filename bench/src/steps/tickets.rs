//! Steps 1 to 3: CreateTicket and GetTicket against the raw limit at the same concurrency,
//! the services' memory around that load, and the propagation of each create to the audit
//! ledger and the metrics projection.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use diesel::QueryableByName;
use diesel::sql_types::{Array, Text, Timestamptz};
use diesel_async::RunQueryDsl;
use docket_proto::ticket::v1::ticket_service_client::TicketServiceClient;
use docket_proto::ticket::v1::{
    Asset, AssetKind, Category, CompromiseStatus, CreateTicketRequest, GetTicketRequest, Indicator, IndicatorType, Severity,
};
use docket_tests::AuthChannel;
use serde::Serialize;
use uuid::Uuid;

use crate::cluster::{Context, Memory, Suite};
use crate::cpu::Watched;
use crate::load::{self, LoadSummary, Operation};
use crate::raw::{self, CreateTemplate};
use crate::Plan;

/// Throughput and latency of Docket and of the raw limit at one concurrency.
#[derive(Clone, Debug, Serialize)]
pub struct SideBySide {
    pub clients: usize,
    pub docket: LoadSummary,
    pub raw: LoadSummary,
    /// Docket's throughput divided by the raw limit's.
    pub ratio: f64,
}

impl SideBySide {
    fn new(docket: LoadSummary, raw: LoadSummary) -> SideBySide {
        let ratio = if raw.per_second > 0.0 { docket.per_second / raw.per_second } else { 0.0 };
        SideBySide {
            clients: docket.clients,
            docket,
            raw,
            ratio,
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct ServiceMemory {
    pub service: String,
    /// Resident memory after start, before any request.
    pub idle: Memory,
    /// Peak resident memory once the create load of step 1 has run.
    pub peak_under_load: Memory,
}

#[derive(Clone, Debug, Serialize)]
pub struct Propagation {
    /// Events that steps 1 and 2 left in the outbox for a receiver when they ended.
    pub backlog_events: i64,
    /// Seconds until the relay had delivered that backlog to both receivers, before the
    /// steady load started.
    pub backlog_seconds: f64,
    pub target_per_second: u32,
    pub achieved_per_second: f64,
    pub creates: usize,
    pub failed_creates: usize,
    pub ledger_p50_ms: f64,
    pub ledger_p99_ms: f64,
    pub ledger_max_ms: f64,
    pub metrics_p50_ms: f64,
    pub metrics_p99_ms: f64,
    pub metrics_max_ms: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct TicketResults {
    pub create: Vec<SideBySide>,
    pub get: Vec<SideBySide>,
    pub memory: Vec<ServiceMemory>,
    pub propagation: Propagation,
}

/// Concurrencies of the create and read load points.
const CREATE_CLIENTS: [usize; 3] = [1, 16, 64];
const GET_CLIENTS: [usize; 2] = [16, 64];

/// Steady create rate of the propagation step, per second.
const PROPAGATION_RATE: u32 = 500;

/// Ticket ids that the read load draws from.
const READ_IDS: i64 = 20_000;

/// Advisory lock key for migrating the raw-limit database; only this process migrates it.
const RAW_MIGRATION_LOCK_KEY: i64 = 0x646f_636b_6265_6e01;

pub async fn run(context: &Context, plan: &Plan) -> anyhow::Result<TicketResults> {
    let suite = Suite::start(context, "tickets").await?;
    let raw_db = context.database("tickets_raw");
    let outcome = run_with(&suite, &raw_db, plan).await;
    suite.stop_and_drop().await?;
    raw_db.drop_database().await?;
    outcome
}

async fn run_with(suite: &Suite, raw_db: &crate::cluster::Database, plan: &Plan) -> anyhow::Result<TicketResults> {
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle: Vec<Memory> = suite.processes().iter().map(|process| process.memory()).collect::<Result<_, _>>()?;

    docket_db::ensure_database(&raw_db.url).await?;
    docket_db::run_migrations(&raw_db.url, docket_ticket::MIGRATIONS, RAW_MIGRATION_LOCK_KEY).await?;
    // The service's pool size, with a longer wait for a connection. With 64 clients in
    // tight loops on 16 connections, some waited beyond the default 5 s, because bb8 does
    // not serve waiters in arrival order, and a timed-out call drops out of the figures.
    let raw_pool = docket_db::connect(
        &raw_db.url,
        &docket_db::PoolOptions {
            acquire_timeout: Duration::from_secs(60),
            ..docket_db::PoolOptions::default()
        },
    );

    let mut first = docket_tests::ticket_client(suite.ticket.addr).await;
    let created = first
        .create_ticket(create_request("template".to_owned()))
        .await
        .context("create the template ticket")?
        .into_inner();
    let id: Uuid = created.id.parse().context("the created ticket's id is a UUID")?;
    let mut ticket_conn = suite.ticket.database.connect().await?;
    let template = Arc::new(CreateTemplate::load(&mut ticket_conn, id).await.context("read the template ticket's rows")?);

    let mut watched: Vec<Watched> = suite
        .processes()
        .iter()
        .filter_map(|process| process.pid().map(|pid| Watched::process(format!("docket-{}", process.name), pid)))
        .collect();
    watched.push(Watched::database(crate::report::TICKET_TABLES, &suite.ticket.database));
    watched.push(Watched::database(crate::report::AUDIT_TABLES, &suite.audit.database));
    watched.push(Watched::database(crate::report::METRICS_TABLES, &suite.metrics.database));
    let raw_watched = [Watched::database(crate::report::TICKET_TABLES, raw_db)];
    let mut create = Vec::new();
    for clients in CREATE_CLIENTS {
        eprintln!("create: {clients} clients, Docket then raw, {} s each", plan.load_seconds);
        let docket = load::closed_loop(create_clients(suite, clients).await, plan.warmup(), plan.load(), &watched).await;
        let operations = (0..clients)
            .map(|client| RawCreate {
                pool: raw_pool.clone(),
                template: template.clone(),
                prefix: format!("raw-{clients}-{client}"),
            })
            .collect();
        let raw = load::closed_loop(operations, plan.warmup(), plan.load(), &raw_watched).await;
        create.push(SideBySide::new(docket, raw));
    }
    let loaded: Vec<Memory> = suite.processes().iter().map(|process| process.memory()).collect::<Result<_, _>>()?;
    let memory = suite
        .processes()
        .iter()
        .zip(idle.into_iter().zip(loaded))
        .map(|(process, (idle, peak_under_load))| ServiceMemory {
            service: format!("docket-{}", process.name),
            idle,
            peak_under_load,
        })
        .collect();

    let docket_ids: Arc<Vec<String>> = Arc::new(
        raw::ticket_ids(&mut ticket_conn, READ_IDS)
            .await?
            .into_iter()
            .map(|id| id.to_string())
            .collect(),
    );
    let mut raw_conn = raw_db.connect().await?;
    let raw_ids = Arc::new(raw::ticket_ids(&mut raw_conn, READ_IDS).await?);
    let mut get = Vec::new();
    for clients in GET_CLIENTS {
        eprintln!("get: {clients} clients, Docket then raw, {} s each", plan.load_seconds);
        let mut operations = Vec::new();
        for client in 0..clients {
            operations.push(ServiceGet {
                client: docket_tests::ticket_client(suite.ticket.addr).await,
                ids: docket_ids.clone(),
                offset: client * 7919,
            });
        }
        let docket = load::closed_loop(operations, plan.warmup(), plan.load(), &watched).await;
        let operations = (0..clients)
            .map(|client| RawGet {
                pool: raw_pool.clone(),
                ids: raw_ids.clone(),
                offset: client * 7919,
            })
            .collect();
        let raw = load::closed_loop(operations, plan.warmup(), plan.load(), &raw_watched).await;
        get.push(SideBySide::new(docket, raw));
    }

    eprintln!("propagation: {PROPAGATION_RATE} creates per second for {} s", plan.propagation_seconds);
    let propagation = propagation(suite, Duration::from_secs(plan.propagation_seconds)).await?;
    Ok(TicketResults {
        create,
        get,
        memory,
        propagation,
    })
}

/// Builds a create request of typical size: a title, a paragraph, three indicators, one
/// asset and two tags.
fn create_request(request_id: String) -> CreateTicketRequest {
    let now = Utc::now().timestamp();
    CreateTicketRequest {
        request_id,
        title: "Beaconing from build host to a known command-and-control domain".to_owned(),
        description: "The EDR agent on the build host reported periodic HTTPS connections every 60 s to a domain \
                      listed in the threat-intelligence feed since last week. The process is a renamed copy of a \
                      scripting runtime started from a temporary folder by a scheduled task."
            .to_owned(),
        severity: Severity::High as i32,
        category: Category::Malware as i32,
        assignee: String::new(),
        team: "soc-tier1".to_owned(),
        reporter: "edr-pipeline".to_owned(),
        detection_source: "edr".to_owned(),
        detection_method: "behavioral rule".to_owned(),
        indicators: vec![
            Indicator {
                r#type: IndicatorType::Domain as i32,
                value: "update-check.example.net".to_owned(),
            },
            Indicator {
                r#type: IndicatorType::Ipv4 as i32,
                value: "203.0.113.17".to_owned(),
            },
            Indicator {
                r#type: IndicatorType::Sha256 as i32,
                value: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".to_owned(),
            },
        ],
        assets: vec![Asset {
            kind: AssetKind::Host as i32,
            name: "build-17".to_owned(),
            compromise: CompromiseStatus::Suspected as i32,
        }],
        tags: vec!["beaconing".to_owned(), "c2".to_owned()],
        occurred_at: Some(prost_types::Timestamp { seconds: now - 1200, nanos: 0 }),
        detected_at: Some(prost_types::Timestamp { seconds: now - 300, nanos: 0 }),
    }
}

async fn create_clients(suite: &Suite, clients: usize) -> Vec<ServiceCreate> {
    let mut operations = Vec::with_capacity(clients);
    for client in 0..clients {
        operations.push(ServiceCreate {
            client: docket_tests::ticket_client(suite.ticket.addr).await,
            prefix: format!("docket-{clients}-{client}"),
        });
    }
    operations
}

/// One client calling CreateTicket over its own connection.
struct ServiceCreate {
    client: TicketServiceClient<AuthChannel>,
    prefix: String,
}

impl Operation for ServiceCreate {
    async fn call(&mut self, iteration: u64) -> Result<(), String> {
        let request = create_request(format!("{}-{iteration}", self.prefix));
        self.client
            .create_ticket(request)
            .await
            .map(|_| ())
            .map_err(|status| format!("CreateTicket: {status}"))
    }
}

struct RawCreate {
    pool: docket_db::Pool,
    template: Arc<CreateTemplate>,
    prefix: String,
}

impl Operation for RawCreate {
    async fn call(&mut self, iteration: u64) -> Result<(), String> {
        raw::create(&self.pool, &self.template, format!("{}-{iteration}", self.prefix)).await
    }
}

/// One client calling GetTicket by id, walking the ids from its own offset.
struct ServiceGet {
    client: TicketServiceClient<AuthChannel>,
    ids: Arc<Vec<String>>,
    offset: usize,
}

impl Operation for ServiceGet {
    async fn call(&mut self, iteration: u64) -> Result<(), String> {
        let ticket = self.ids[(self.offset + iteration as usize) % self.ids.len()].clone();
        self.client
            .get_ticket(GetTicketRequest { ticket })
            .await
            .map(|_| ())
            .map_err(|status| format!("GetTicket: {status}"))
    }
}

struct RawGet {
    pool: docket_db::Pool,
    ids: Arc<Vec<Uuid>>,
    offset: usize,
}

impl Operation for RawGet {
    async fn call(&mut self, iteration: u64) -> Result<(), String> {
        let id = self.ids[(self.offset + iteration as usize) % self.ids.len()];
        raw::get(&self.pool, id).await
    }
}

#[derive(QueryableByName)]
struct Applied {
    #[diesel(sql_type = Text)]
    ticket_id: String,
    #[diesel(sql_type = Timestamptz)]
    at: DateTime<Utc>,
}

#[derive(QueryableByName)]
struct Created {
    #[diesel(sql_type = Text)]
    ticket_id: String,
    #[diesel(sql_type = Timestamptz)]
    created_at: DateTime<Utc>,
}

#[derive(QueryableByName)]
struct Pending {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    events: i64,
}

/// Maximum wait for the relay to deliver what the earlier steps left in the outbox.
const BACKLOG_TIMEOUT: Duration = Duration::from_secs(900);

/// Waits until no outbox event awaits delivery to either receiver, and returns how many
/// were pending at first and how long delivering them took.
async fn drain_outbox(suite: &Suite) -> anyhow::Result<(i64, f64)> {
    let mut conn = suite.ticket.database.connect().await?;
    let sql = "SELECT greatest(count(*) FILTER (WHERE audit_delivered_at IS NULL), \
               count(*) FILTER (WHERE metrics_delivered_at IS NULL)) AS events FROM outbox";
    let started = Instant::now();
    let mut backlog = None;
    loop {
        let rows: Vec<Pending> = diesel::sql_query(sql).load(&mut conn).await?;
        let pending = rows.first().map_or(0, |row| row.events);
        let first = *backlog.get_or_insert(pending);
        if pending == 0 {
            return Ok((first, started.elapsed().as_secs_f64()));
        }
        anyhow::ensure!(
            started.elapsed() < BACKLOG_TIMEOUT,
            "{pending} of {first} outbox events were still undelivered after {} s",
            BACKLOG_TIMEOUT.as_secs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Number of connections the steady create load is spread over.
const PROPAGATION_CONNECTIONS: usize = 8;

/// Waits until the relay has delivered what the earlier steps left in the outbox, then
/// creates tickets at a steady rate. For each ticket it measures the time from the
/// instant the ticket service stamped it (just before its create transaction) to the
/// instant the audit ledger recorded its event and the metrics service applied it. Both
/// ends are database timestamps on this machine's clock.
async fn propagation(suite: &Suite, duration: Duration) -> anyhow::Result<Propagation> {
    let (backlog_events, backlog_seconds) = drain_outbox(suite).await?;
    eprintln!("propagation: the relay delivered a backlog of {backlog_events} events in {backlog_seconds:.1} s first");
    let mut clients = Vec::new();
    for _ in 0..PROPAGATION_CONNECTIONS {
        clients.push(docket_tests::ticket_client(suite.ticket.addr).await);
    }
    let mut interval = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(PROPAGATION_RATE)));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = Instant::now();
    let deadline = started + duration;
    let mut calls = tokio::task::JoinSet::new();
    let mut sent = 0usize;
    while Instant::now() < deadline {
        interval.tick().await;
        let mut client = clients[sent % clients.len()].clone();
        let request = create_request(format!("steady-{sent}"));
        calls.spawn(async move { client.create_ticket(request).await.map(|response| response.into_inner().id) });
        sent += 1;
    }
    let achieved_per_second = sent as f64 / started.elapsed().as_secs_f64();
    let mut ids = Vec::new();
    let mut failed_creates = 0;
    while let Some(outcome) = calls.join_next().await {
        match outcome {
            Ok(Ok(id)) => ids.push(id),
            _ => failed_creates += 1,
        }
    }

    let mut ticket_conn = suite.ticket.database.connect().await?;
    let created: Vec<Created> = diesel::sql_query("SELECT id::text AS ticket_id, created_at FROM tickets WHERE id::text = ANY($1)")
        .bind::<Array<Text>, _>(&ids)
        .load(&mut ticket_conn)
        .await?;
    let mut audit_conn = suite.audit.database.connect().await?;
    let mut metrics_conn = suite.metrics.database.connect().await?;
    let ledger_sql = "SELECT resource_id AS ticket_id, recorded_at AS at FROM ledger WHERE action = 'ticket.created' AND resource_id = ANY($1)";
    let metrics_sql = "SELECT ticket_id::text AS ticket_id, applied_at AS at FROM applied_events WHERE version = 1 AND ticket_id::text = ANY($1)";
    let wait_until = Instant::now() + Duration::from_secs(120);
    let (ledger, metrics) = loop {
        let ledger: Vec<Applied> = diesel::sql_query(ledger_sql).bind::<Array<Text>, _>(&ids).load(&mut audit_conn).await?;
        let metrics: Vec<Applied> = diesel::sql_query(metrics_sql).bind::<Array<Text>, _>(&ids).load(&mut metrics_conn).await?;
        if (ledger.len() >= ids.len() && metrics.len() >= ids.len()) || Instant::now() > wait_until {
            break (ledger, metrics);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    anyhow::ensure!(
        ledger.len() >= ids.len() && metrics.len() >= ids.len(),
        "after 120 s the ledger holds {} and the projection {} of {} created tickets",
        ledger.len(),
        metrics.len(),
        ids.len()
    );

    let created_at: std::collections::HashMap<String, DateTime<Utc>> =
        created.into_iter().map(|row| (row.ticket_id, row.created_at)).collect();
    let delays = |rows: &[Applied]| {
        let mut histogram = load::latency_histogram();
        for row in rows {
            if let Some(start) = created_at.get(&row.ticket_id) {
                let delay = (row.at - *start).to_std().unwrap_or_default();
                load::record(&mut histogram, delay);
            }
        }
        histogram
    };
    let ledger = delays(&ledger);
    let metrics = delays(&metrics);
    Ok(Propagation {
        backlog_events,
        backlog_seconds,
        target_per_second: PROPAGATION_RATE,
        achieved_per_second,
        creates: ids.len(),
        failed_creates,
        ledger_p50_ms: load::millis(ledger.value_at_quantile(0.5)),
        ledger_p99_ms: load::millis(ledger.value_at_quantile(0.99)),
        ledger_max_ms: load::millis(ledger.max()),
        metrics_p50_ms: load::millis(metrics.value_at_quantile(0.5)),
        metrics_p99_ms: load::millis(metrics.value_at_quantile(0.99)),
        metrics_max_ms: load::millis(metrics.value_at_quantile(1.0)),
    })
}
