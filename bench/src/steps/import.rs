//! Step 6: the VERIS import of the whole VCDB file end to end, with the release `docket`
//! command against the three services on fresh databases.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use diesel::QueryableByName;
use diesel::sql_types::BigInt;
use diesel_async::RunQueryDsl;
use docket_auth::Role;
use serde::Serialize;

use crate::cluster::{Context, Database, Suite};

#[derive(Clone, Debug, Serialize)]
pub struct ImportResults {
    pub file: String,
    /// Wall time of `docket import veris` until it exits.
    pub import_seconds: f64,
    /// Wall time from the start of the import until the audit ledger contains one record per
    /// imported ticket.
    pub until_ledger_seconds: f64,
    pub tickets: i64,
}

pub async fn run(context: &Context, file: &Path) -> anyhow::Result<ImportResults> {
    let suite = Suite::start(context, "import").await?;
    let outcome = run_with(context, &suite, file).await;
    suite.stop_and_drop().await?;
    outcome
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    count: i64,
}

async fn count(database: &Database, sql: &str) -> anyhow::Result<i64> {
    let mut conn = database.connect().await?;
    let rows: Vec<Count> = diesel::sql_query(sql).load(&mut conn).await?;
    Ok(rows.first().map_or(0, |row| row.count))
}

async fn run_with(context: &Context, suite: &Suite, file: &Path) -> anyhow::Result<ImportResults> {
    eprintln!("import: {}", file.display());
    let binary = context.binary("docket");
    let log_path = context.log_dir.join(format!("{}-import-cli.log", context.run_id));
    let log = std::fs::File::create(&log_path).with_context(|| format!("create {}", log_path.display()))?;
    let token = docket_tests::user_token("bench", &[Role::Admin]);

    let started = Instant::now();
    let mut child = Command::new(&binary)
        .args(["import", "veris"])
        .arg(file)
        .env("DOCKET_TOKEN", token)
        .env("DOCKET_TICKET_ADDR", suite.ticket.addr.to_string())
        .env("DOCKET_AUDIT_ADDR", suite.audit.addr.to_string())
        .env("DOCKET_METRICS_ADDR", suite.metrics.addr.to_string())
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("start {}", binary.display()))?;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let import_seconds = started.elapsed().as_secs_f64();
    if !status.success() {
        bail!("docket import veris exited with {status}; see {}", log_path.display());
    }

    let tickets = count(&suite.ticket.database, "SELECT count(*) AS count FROM tickets").await?;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let records = count(&suite.audit.database, "SELECT count(*) AS count FROM ledger").await?;
        if records >= tickets {
            break;
        }
        if Instant::now() > deadline {
            bail!("timed out: the audit ledger contains {records} records 120 s after the import of {tickets} tickets; see the audit log in the log folder");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(ImportResults {
        file: file.display().to_string(),
        import_seconds,
        until_ledger_seconds: started.elapsed().as_secs_f64(),
        tickets,
    })
}
