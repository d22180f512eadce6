//! CPU time spent during a load point, split by part of the machine. The parts are each
//! watched service, the PostgreSQL sessions of each watched database, the load generator
//! itself, and the rest (PostgreSQL's background processes and the kernel's network work).
//! On a machine where every core is busy, the ratio between two sides is the inverse
//! ratio of their CPU time per call, so this split shows which part of a call bounds it.

use std::collections::HashMap;

use anyhow::Context as _;
use diesel::QueryableByName;
use diesel::sql_types::{Array, Integer, Text};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use procfs::{CurrentSI, KernelStats};
use serde::Serialize;

/// Kind of a watched part of the machine.
#[derive(Clone, Debug)]
pub enum Target {
    /// One process and all its threads.
    Process(u32),
    /// Every PostgreSQL session connected to the database `name`, found through
    /// pg_stat_activity on `server` (a URL of the server's maintenance database).
    Database { name: String, server: String },
}

/// A part of the machine whose CPU time is reported in its own column.
#[derive(Clone, Debug)]
pub struct Watched {
    pub label: String,
    pub target: Target,
}

impl Watched {
    pub fn process(label: impl Into<String>, pid: u32) -> Watched {
        Watched { label: label.into(), target: Target::Process(pid) }
    }

    pub fn database(label: impl Into<String>, database: &crate::cluster::Database) -> Watched {
        Watched {
            label: label.into(),
            target: Target::Database { name: database.name.clone(), server: database.maintenance_url() },
        }
    }
}

/// CPU time of one part of the machine during a load point.
#[derive(Clone, Debug, Serialize)]
pub struct CpuShare {
    pub part: String,
    /// CPU time per successful call, in microseconds.
    pub micros_per_call: f64,
}

/// CPU time of the machine during a load point, split by part.
#[derive(Clone, Debug, Serialize)]
pub struct CpuUse {
    /// Busy time of all cores over the window, in percent of their capacity.
    pub busy_percent: f64,
    /// CPU time per successful call by part, the load generator and the rest last.
    pub shares: Vec<CpuShare>,
    /// The sum of the shares.
    pub total_micros_per_call: f64,
}

/// Readings taken at the start of a window.
pub struct CpuMeter {
    watched: Vec<Watched>,
    sessions: Option<Sessions>,
    start_busy: u64,
    start_all: u64,
    /// Ticks of each watched process, or of each session of each watched database.
    start_parts: Vec<HashMap<i32, u64>>,
    start_self: u64,
}

/// A connection that lists the server's sessions by database.
struct Sessions {
    conn: AsyncPgConnection,
}

#[derive(QueryableByName)]
struct Session {
    #[diesel(sql_type = Integer)]
    pid: i32,
    #[diesel(sql_type = Text)]
    database: String,
}

impl Sessions {
    async fn open(watched: &[Watched]) -> anyhow::Result<Option<Sessions>> {
        let Some(server) = watched.iter().find_map(|part| match &part.target {
            Target::Database { server, .. } => Some(server),
            Target::Process(_) => None,
        }) else {
            return Ok(None);
        };
        let conn = AsyncPgConnection::establish(server).await.context("connect to read pg_stat_activity")?;
        Ok(Some(Sessions { conn }))
    }

    /// Process ids of the sessions of each database in `names`.
    async fn by_database(&mut self, names: Vec<String>) -> anyhow::Result<HashMap<String, Vec<i32>>> {
        let sessions: Vec<Session> =
            diesel::sql_query("SELECT pid, datname::text AS database FROM pg_stat_activity WHERE datname = ANY($1)")
                .bind::<Array<Text>, _>(names)
                .load(&mut self.conn)
                .await
                .context("read pg_stat_activity")?;
        let mut grouped: HashMap<String, Vec<i32>> = HashMap::new();
        for session in sessions {
            grouped.entry(session.database).or_default().push(session.pid);
        }
        Ok(grouped)
    }
}

/// Ticks of every watched part: one entry for a process, one per session for a database.
/// A session that ended since it was listed is left out.
async fn part_ticks(watched: &[Watched], sessions: Option<&mut Sessions>) -> anyhow::Result<Vec<HashMap<i32, u64>>> {
    let names: Vec<String> = watched
        .iter()
        .filter_map(|part| match &part.target {
            Target::Database { name, .. } => Some(name.clone()),
            Target::Process(_) => None,
        })
        .collect();
    let by_database = match sessions {
        Some(sessions) if !names.is_empty() => sessions.by_database(names).await?,
        _ => HashMap::new(),
    };
    let mut parts = Vec::with_capacity(watched.len());
    for part in watched {
        let ticks = match &part.target {
            Target::Process(pid) => HashMap::from([(*pid as i32, process_ticks(*pid as i32)?)]),
            Target::Database { name, .. } => by_database
                .get(name)
                .into_iter()
                .flatten()
                .filter_map(|pid| process_ticks(*pid).ok().map(|ticks| (*pid, ticks)))
                .collect(),
        };
        parts.push(ticks);
    }
    Ok(parts)
}

/// Busy and total ticks of all cores since boot.
fn machine_ticks() -> anyhow::Result<(u64, u64)> {
    let total = KernelStats::current().context("read /proc/stat")?.total;
    let busy = total.user
        + total.nice
        + total.system
        + total.irq.unwrap_or(0)
        + total.softirq.unwrap_or(0)
        + total.steal.unwrap_or(0);
    Ok((busy, busy + total.idle + total.iowait.unwrap_or(0)))
}

/// User and system ticks of one process and all its threads.
fn process_ticks(pid: i32) -> anyhow::Result<u64> {
    let stat = procfs::process::Process::new(pid)
        .and_then(|process| process.stat())
        .with_context(|| format!("read /proc/{pid}/stat"))?;
    Ok(stat.utime + stat.stime)
}

fn own_pid() -> i32 {
    std::process::id() as i32
}

impl CpuMeter {
    /// Takes the first readings of a window.
    pub async fn start(watched: &[Watched]) -> anyhow::Result<CpuMeter> {
        let mut sessions = Sessions::open(watched).await?;
        let start_parts = part_ticks(watched, sessions.as_mut()).await?;
        let (start_busy, start_all) = machine_ticks()?;
        Ok(CpuMeter {
            watched: watched.to_vec(),
            sessions,
            start_busy,
            start_all,
            start_parts,
            start_self: process_ticks(own_pid())?,
        })
    }

    /// Ends the window and divides each part's CPU time by `calls`. A session that opened
    /// during the window counts from its start.
    pub async fn finish(mut self, calls: u64) -> anyhow::Result<CpuUse> {
        let end_parts = part_ticks(&self.watched, self.sessions.as_mut()).await?;
        let (busy, all) = machine_ticks()?;
        let busy = busy.saturating_sub(self.start_busy);
        let all = all.saturating_sub(self.start_all);
        let micros_per_tick = 1_000_000.0 / procfs::ticks_per_second() as f64;
        let per_call = |ticks: u64| ticks as f64 * micros_per_tick / calls.max(1) as f64;

        let mut shares = Vec::with_capacity(self.watched.len() + 2);
        let mut accounted = 0;
        for ((part, start), end) in self.watched.iter().zip(&self.start_parts).zip(&end_parts) {
            let ticks: u64 = end
                .iter()
                .map(|(pid, ticks)| ticks.saturating_sub(start.get(pid).copied().unwrap_or(0)))
                .sum();
            accounted += ticks;
            shares.push(CpuShare { part: part.label.clone(), micros_per_call: per_call(ticks) });
        }
        let generator = process_ticks(own_pid())?.saturating_sub(self.start_self);
        accounted += generator;
        shares.push(CpuShare { part: "load generator".to_owned(), micros_per_call: per_call(generator) });
        // Ticks are counted separately for the machine and for each process, so the
        // difference can be slightly negative on a machine with nothing else running.
        shares.push(CpuShare {
            part: "rest of the machine".to_owned(),
            micros_per_call: per_call(busy.saturating_sub(accounted)),
        });
        Ok(CpuUse {
            busy_percent: if all > 0 { 100.0 * busy as f64 / all as f64 } else { 0.0 },
            total_micros_per_call: per_call(busy.max(accounted)),
            shares,
        })
    }
}
