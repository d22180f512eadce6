//! The machine of a run and the PostgreSQL settings that bound its durable figures.

use anyhow::{Context, bail};
use diesel::QueryableByName;
use diesel::sql_types::Text;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde::Serialize;

#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    pub cores: usize,
    pub cpu_model: String,
    pub memory_gib: f64,
    /// The 1-minute load average when the run started, which shows other work on the machine.
    pub load_average_at_start: f64,
    pub kernel: String,
}

/// PostgreSQL version and the settings that matter for the figures, as `SHOW` prints them.
#[derive(Clone, Debug, Serialize)]
pub struct PostgresSettings {
    pub server: String,
    pub version: String,
    pub settings: Vec<(String, String)>,
}

/// Settings reported with every run. `synchronous_commit` must be `on`, so each commit
/// waits for its WAL flush and the create figures are durable.
const REPORTED_SETTINGS: [&str; 10] = [
    "synchronous_commit",
    "fsync",
    "wal_sync_method",
    "commit_delay",
    "shared_buffers",
    "work_mem",
    "max_connections",
    "max_parallel_workers_per_gather",
    "jit",
    "data_checksums",
];

pub fn describe_machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu_model = cpuinfo
        .lines()
        .find_map(|line| line.strip_prefix("model name"))
        .and_then(|rest| rest.split_once(':'))
        .map(|(_, model)| model.trim().to_owned())
        .unwrap_or_else(|| "unknown".to_owned());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory_kib: f64 = meminfo
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|value| value.parse().ok())
        .unwrap_or(0.0);
    let load_average_at_start = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().next().and_then(|value| value.parse().ok()))
        .unwrap_or(0.0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_owned();
    Machine {
        cores: std::thread::available_parallelism().map(|cores| cores.get()).unwrap_or(0),
        cpu_model,
        memory_gib: (memory_kib / 1024.0 / 1024.0 * 10.0).round() / 10.0,
        load_average_at_start,
        kernel,
    }
}

#[derive(QueryableByName)]
struct Setting {
    #[diesel(sql_type = Text)]
    value: String,
}

/// Reads the server's version and settings, and fails when `synchronous_commit` is not
/// `on`, because then commits do not wait for the disk and the figures are not durable.
pub async fn describe_postgres(server: &str) -> anyhow::Result<PostgresSettings> {
    let mut conn = AsyncPgConnection::establish(&format!("{server}/postgres"))
        .await
        .with_context(|| format!("connect to PostgreSQL at {server}; start it or set --postgres"))?;
    let version = show(&mut conn, "server_version").await?;
    let mut settings = Vec::new();
    for name in REPORTED_SETTINGS {
        settings.push((name.to_owned(), show(&mut conn, name).await?));
    }
    let synchronous_commit = &settings[0].1;
    if synchronous_commit != "on" {
        bail!("synchronous_commit is {synchronous_commit:?} on {server}; set it to on, because the create figures must be durable");
    }
    Ok(PostgresSettings {
        server: server.to_owned(),
        version,
        settings,
    })
}

async fn show(conn: &mut AsyncPgConnection, name: &str) -> anyhow::Result<String> {
    let rows: Vec<Setting> = diesel::sql_query(format!("SELECT current_setting('{name}') AS value"))
        .load(conn)
        .await
        .with_context(|| format!("read the PostgreSQL setting {name}"))?;
    Ok(rows.into_iter().next().map(|row| row.value).unwrap_or_default())
}
