//! The services under test: release binaries started as child processes on free ports of
//! 127.0.0.1, each on a fresh database named `docket_bench_<run>_<label>`, and the
//! databases themselves.

use std::fs::File;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, bail};
use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use serde::Serialize;

/// Prefix of every database the benchmark creates.
pub const DATABASE_PREFIX: &str = "docket_bench_";

/// Locations of one run: the PostgreSQL server, the binaries and the log folder.
#[derive(Clone, Debug)]
pub struct Context {
    /// Server URL without a database, such as `postgres://postgres@127.0.0.1:5432`.
    pub server: String,
    /// Folder of the release binaries `docket-ticket`, `docket-audit`, `docket-metrics`
    /// and `docket`.
    pub bin_dir: PathBuf,
    pub log_dir: PathBuf,
    /// Distinguishes this run's databases from those of other runs.
    pub run_id: String,
}

impl Context {
    /// Names the database of `label` in this run; nothing is created yet.
    pub fn database(&self, label: &str) -> Database {
        let name = format!("{DATABASE_PREFIX}{}_{label}", self.run_id);
        Database {
            url: format!("{}/{name}", self.server),
            server: self.server.clone(),
            name,
        }
    }

    pub fn binary(&self, name: &str) -> PathBuf {
        self.bin_dir.join(name)
    }
}

/// A database of this run.
#[derive(Clone, Debug)]
pub struct Database {
    pub name: String,
    pub url: String,
    server: String,
}

impl Database {
    pub async fn connect(&self) -> anyhow::Result<AsyncPgConnection> {
        AsyncPgConnection::establish(&self.url)
            .await
            .with_context(|| format!("connect to database {}", self.name))
    }

    /// URL of the server's maintenance database, for statements about this database.
    pub fn maintenance_url(&self) -> String {
        format!("{}/postgres", self.server)
    }

    /// Drops the database, ending every session still connected to it.
    pub async fn drop_database(&self) -> anyhow::Result<()> {
        let mut maintenance = AsyncPgConnection::establish(&self.maintenance_url())
            .await
            .context("connect to the postgres maintenance database")?;
        maintenance
            .batch_execute(&format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name))
            .await
            .with_context(|| format!("drop database {}", self.name))
    }
}

/// Returns a port of 127.0.0.1 that was free a moment ago.
fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("bind a free port on 127.0.0.1")?;
    Ok(listener.local_addr()?.port())
}

/// Resident memory of a process in KiB, from /proc/<pid>/status.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Memory {
    /// Current resident set size (VmRSS).
    pub rss_kib: u64,
    /// Peak resident set size since the process started (VmHWM).
    pub peak_kib: u64,
}

/// One service binary running as a child process of the benchmark.
pub struct ServiceProcess {
    pub name: &'static str,
    pub addr: SocketAddr,
    pub database: Database,
    child: Option<Child>,
}

impl ServiceProcess {
    /// Starts `docket-<name>` on a free port and on `database`, with the test keys, and
    /// waits until it reports SERVING. Its log goes to `<log_dir>/<run>-<label>.log`.
    pub async fn start(context: &Context, name: &'static str, label: &str, database: Database, extra: &[String]) -> anyhow::Result<ServiceProcess> {
        let port = free_port()?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let binary = context.binary(&format!("docket-{name}"));
        if !binary.exists() {
            bail!("{} is missing; build it with `cargo build --release -p docket-{name}`", binary.display());
        }
        let log_path = context.log_dir.join(format!("{}-{label}.log", context.run_id));
        let log = File::create(&log_path).with_context(|| format!("create {}", log_path.display()))?;

        let keys = docket_tests::keys();
        let mut command = Command::new(&binary);
        command
            .arg("--jwt-keys-dir")
            .arg(&keys.public_dir)
            .arg("--listen-addr")
            .arg(addr.to_string())
            .arg("--database-url")
            .arg(&database.url)
            .args(extra)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        // Spans are exported only when these name an endpoint; the benchmark measures the
        // services as they run without an exporter.
        for variable in ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] {
            command.env_remove(variable);
        }
        let child = command.spawn().with_context(|| format!("start {}", binary.display()))?;
        let mut process = ServiceProcess {
            name,
            addr,
            database,
            child: Some(child),
        };
        process.wait_until_serving(&log_path).await?;
        Ok(process)
    }

    async fn wait_until_serving(&mut self, log_path: &Path) -> anyhow::Result<()> {
        let health = tokio::spawn(docket_tests::wait_until_serving(self.addr));
        loop {
            if health.is_finished() {
                return health.await.map_err(|_| anyhow::anyhow!("docket-{} did not report SERVING within 30 s; see {}", self.name, log_path.display()));
            }
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                health.abort();
                bail!("docket-{} exited with {status} during start; see {}", self.name, log_path.display());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Reads the process's current and peak resident memory.
    pub fn memory(&self) -> anyhow::Result<Memory> {
        let pid = self.pid().context("the process was stopped")?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).with_context(|| format!("read /proc/{pid}/status"))?;
        let field = |name: &str| -> u64 {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|value| value.parse().ok())
                .unwrap_or(0)
        };
        Ok(Memory {
            rss_kib: field("VmRSS:"),
            peak_kib: field("VmHWM:"),
        })
    }

    /// Sends SIGTERM and waits up to 10 s for the process to exit, then kills it.
    pub async fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        for _ in 0..200 {
            if matches!(child.try_wait(), Ok(Some(_))) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        eprintln!("docket-{} (pid {}) did not stop within 10 s of SIGTERM; killing it", self.name, child.id());
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Stops the process and drops its database.
    pub async fn stop_and_drop(mut self) -> anyhow::Result<()> {
        self.stop().await;
        self.database.drop_database().await
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Arguments the metrics service needs beyond the common ones: the key it signs its calls
/// to audit with, and the audit service's address when one runs. The benchmark's calls are
/// never denied, so a metrics service without an audit service never calls it.
pub fn metrics_args(audit: Option<SocketAddr>) -> Vec<String> {
    let mut args = vec!["--service-signing-key".to_owned(), docket_tests::keys().metrics_service_key.display().to_string()];
    if let Some(audit) = audit {
        args.extend(["--audit-addr".to_owned(), audit.to_string()]);
    }
    args
}

/// Ticket, audit and metrics services wired together, each on a fresh database.
pub struct Suite {
    pub ticket: ServiceProcess,
    pub audit: ServiceProcess,
    pub metrics: ServiceProcess,
}

impl Suite {
    /// Starts audit and metrics, then the ticket service relaying to both. `label` names
    /// the databases, such as `docket_bench_<run>_<label>_ticket`.
    pub async fn start(context: &Context, label: &str) -> anyhow::Result<Suite> {
        let audit_label = format!("{label}_audit");
        let metrics_label = format!("{label}_metrics");
        let ticket_label = format!("{label}_ticket");
        let audit = ServiceProcess::start(context, "audit", &audit_label, context.database(&audit_label), &[]).await?;
        let metrics_args = metrics_args(Some(audit.addr));
        let metrics = ServiceProcess::start(context, "metrics", &metrics_label, context.database(&metrics_label), &metrics_args).await?;
        let keys = docket_tests::keys();
        let ticket_args = vec![
            "--audit-addr".to_owned(),
            audit.addr.to_string(),
            "--metrics-addr".to_owned(),
            metrics.addr.to_string(),
            "--service-signing-key".to_owned(),
            keys.service_key.display().to_string(),
        ];
        let ticket = ServiceProcess::start(context, "ticket", &ticket_label, context.database(&ticket_label), &ticket_args).await?;
        Ok(Suite { ticket, audit, metrics })
    }

    pub fn processes(&self) -> [&ServiceProcess; 3] {
        [&self.ticket, &self.audit, &self.metrics]
    }

    /// Stops the three processes, ticket first so its relay stops sending, and drops
    /// their databases.
    pub async fn stop_and_drop(mut self) -> anyhow::Result<()> {
        self.ticket.stop().await;
        self.audit.stop().await;
        self.metrics.stop().await;
        for process in [&self.ticket, &self.audit, &self.metrics] {
            process.database.drop_database().await?;
        }
        Ok(())
    }
}
