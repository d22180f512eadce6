//! PostgreSQL stops under load: an immediate stop (`pg_ctl stop -m immediate`, no
//! checkpoint, every backend killed) of a cluster the test creates for itself, while
//! clients create and move tickets, and then a start of the same cluster.
//!
//! The three services run as real processes on that cluster. They must keep running,
//! report NOT_SERVING while it is down, reconnect without a restart, and lose no change a
//! client got OK for. Clients see only OK, UNAVAILABLE or DEADLINE_EXCEEDED.
//!
//! Settings (whole numbers), with the short defaults `make test` uses:
//! - DOCKET_CHAOS_PG_CYCLES (1): how often PostgreSQL is stopped and started again.
//! - DOCKET_CHAOS_PG_DOWN_SECS (2): how long it stays down once every service reports
//!   NOT_SERVING.
//! - DOCKET_CHAOS_PG_WORKERS (4): concurrent clients.
//!
//! `make chaos` should pass DOCKET_CHAOS_PG_CYCLES=3 DOCKET_CHAOS_PG_DOWN_SECS=20.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use docket_tests::chaos::{idle_in_transaction, settle};
use docket_tests::load::{Load, env_number, env_seconds};
use docket_tests::process::ServiceProcess;
use docket_tests::{TestDb, eventually, health_status, unused_addr};
use tonic::Code;

/// Time a client waits for one call before it gives up, longer than the services' 5 s
/// wait for a database connection, so a call normally ends with the server's response.
const CALL_DEADLINE: Duration = Duration::from_secs(10);

/// Time allowed for a health change and for the relay to catch up. Only a failure waits this long.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(30);
const SETTLE_TIMEOUT: Duration = Duration::from_secs(90);

/// A PostgreSQL cluster of this test alone, in a temporary directory, listening on
/// 127.0.0.1 only. Dropping it stops the server.
struct PrivateCluster {
    bin_dir: PathBuf,
    data_dir: PathBuf,
    port: u16,
    _dir: tempfile::TempDir,
}

impl PrivateCluster {
    /// Creates the cluster with initdb (trust authentication, superuser `postgres`) on a
    /// free port, without starting it.
    fn create() -> PrivateCluster {
        let bin_dir = postgres_bin_dir();
        let dir = tempfile::tempdir().expect("create the cluster directory");
        // PostgreSQL refuses to run as root, so root hands the directory to the postgres
        // user, as scripts/postgres.sh does.
        if running_as_root() {
            run(Command::new("chown").arg("postgres").arg(dir.path()), "chown the cluster directory to postgres");
        }
        let data_dir = dir.path().join("data");
        let initdb = bin_dir.join("initdb");
        let mut command = as_cluster_owner(&initdb);
        command.arg("-D").arg(&data_dir).args(["-U", "postgres", "--auth=trust", "--encoding=UTF8", "--locale=C.UTF-8", "--no-sync"]);
        run(&mut command, "initdb");
        let port = unused_addr().port();
        PrivateCluster { bin_dir, data_dir, port, _dir: dir }
    }

    fn pg_ctl(&self) -> Command {
        let mut command = as_cluster_owner(&self.bin_dir.join("pg_ctl"));
        command.arg("-D").arg(&self.data_dir);
        command
    }

    /// Starts the server and waits until it accepts connections.
    fn start(&self) {
        let options = format!(
            "-c listen_addresses=127.0.0.1 -c port={} -c unix_socket_directories={} -c max_connections=100",
            self.port,
            self.data_dir.display()
        );
        let log = self.data_dir.join("server.log");
        let mut command = self.pg_ctl();
        command.arg("-l").arg(&log).args(["-w", "-t", "60", "-o", &options, "start"]);
        run(&mut command, "pg_ctl start");
    }

    /// Stops the server the hard way: the postmaster kills every backend at once, without
    /// a checkpoint, so the next start runs crash recovery.
    fn stop_immediately(&self) {
        run(self.pg_ctl().args(["-m", "immediate", "-w", "stop"]), "pg_ctl stop -m immediate");
    }

    fn database(&self, service: &str) -> TestDb {
        let name = format!("{}{service}_{}", docket_tests::DATABASE_PREFIX, &uuid::Uuid::new_v4().simple().to_string()[..12]);
        TestDb { url: format!("postgres://postgres@127.0.0.1:{}/{name}", self.port), name }
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        if self.data_dir.join("postmaster.pid").exists() {
            let _ = self.pg_ctl().args(["-m", "immediate", "-w", "stop"]).output();
        }
    }
}

fn running_as_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Builds a command that runs `program` as the owner of the cluster: the current user, or
/// `postgres` when the test runs as root.
fn as_cluster_owner(program: &Path) -> Command {
    if running_as_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

fn run(command: &mut Command, description: &str) {
    let output = command.output().unwrap_or_else(|error| panic!("{description} failed to start: {error}"));
    assert!(
        output.status.success(),
        "{description} failed with {}:\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Returns the newest /usr/lib/postgresql/<version>/bin, or the directory of `initdb` on
/// the PATH.
fn postgres_bin_dir() -> PathBuf {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|entry| Some((entry.file_name().to_str()?.parse().ok()?, entry.path().join("bin"))))
                .filter(|(_, bin): &(u32, PathBuf)| bin.join("initdb").is_file())
                .collect()
        })
        .unwrap_or_default();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return bin;
    }
    let output = Command::new("sh").args(["-c", "command -v initdb"]).output().expect("run sh");
    let path = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    assert!(!path.is_empty(), "no PostgreSQL binaries found: install PostgreSQL 15 or later (initdb, pg_ctl)");
    PathBuf::from(path).parent().expect("initdb is in a directory").to_path_buf()
}

/// Waits until the service at `addr` reports `serving`, showing its log when it does not.
async fn wait_for_health(service: &ServiceProcess, name: &str, serving: bool) {
    let addr: SocketAddr = service.addr;
    let reached = eventually(HEALTH_TIMEOUT, || async move { (health_status(addr).await == Some(serving)).then_some(()) }).await;
    let expected = if serving { "SERVING" } else { "NOT_SERVING" };
    assert!(reached.is_some(), "{name} did not report {expected} within {HEALTH_TIMEOUT:?}; its log:\n{}", service.log());
}

async fn assert_running(service: &mut ServiceProcess, name: &str) {
    let exit = service.wait_exit(Duration::ZERO).await;
    assert!(exit.is_none(), "{name} exited with {exit:?} while PostgreSQL was down; its log:\n{}", service.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn immediate_stop_loses_no_acknowledged_change() {
    let cycles = env_number("DOCKET_CHAOS_PG_CYCLES", 1);
    let down = env_seconds("DOCKET_CHAOS_PG_DOWN_SECS", 2);
    let workers = usize::try_from(env_number("DOCKET_CHAOS_PG_WORKERS", 4)).expect("the worker count fits in usize");

    let cluster = PrivateCluster::create();
    cluster.start();
    let (ticket_db, audit_db, metrics_db) = (cluster.database("ticket"), cluster.database("audit"), cluster.database("metrics"));
    let mut audit = ServiceProcess::audit(&audit_db);
    audit.wait_until_serving().await;
    let mut metrics = ServiceProcess::metrics(&metrics_db, audit.addr);
    metrics.wait_until_serving().await;
    let mut ticket = ServiceProcess::ticket(&ticket_db, unused_addr(), audit.addr, metrics.addr, &["--relay-max-backoff", "1s"]);
    ticket.wait_until_serving().await;

    let load = Load::start(&[ticket.addr], workers, CALL_DEADLINE).await;
    for cycle in 1..=cycles {
        assert!(load.wait_for_progress(20, HEALTH_TIMEOUT).await, "cycle {cycle}: the load makes progress before the stop");

        cluster.stop_immediately();
        wait_for_health(&ticket, "the ticket service", false).await;
        wait_for_health(&audit, "the audit service", false).await;
        wait_for_health(&metrics, "the metrics service", false).await;
        tokio::time::sleep(down).await;
        assert_running(&mut ticket, "the ticket service").await;
        assert_running(&mut audit, "the audit service").await;
        assert_running(&mut metrics, "the metrics service").await;

        cluster.start();
        wait_for_health(&ticket, "the ticket service", true).await;
        wait_for_health(&audit, "the audit service", true).await;
        wait_for_health(&metrics, "the metrics service", true).await;
        assert!(
            load.wait_for_progress(20, HEALTH_TIMEOUT).await,
            "cycle {cycle}: calls succeed again after PostgreSQL restarted; ticket service log:\n{}",
            ticket.log()
        );
    }
    let report = load.stop().await;

    let tally = settle("PostgreSQL stops under load", &report.acknowledged, &ticket_db, &audit_db, &metrics_db, SETTLE_TIMEOUT).await;
    tally.print();
    println!("failed calls by code: {:?}", report.failures);

    let unexpected = report.unexpected_failures(&[Code::Unavailable, Code::DeadlineExceeded]);
    let internal_errors: Vec<String> = ticket.log().lines().filter(|line| line.contains("internal error")).map(str::to_owned).collect();
    assert!(
        unexpected.is_empty(),
        "clients see only OK, UNAVAILABLE or DEADLINE_EXCEEDED; also saw {unexpected:?}; internal errors the ticket service logged: {internal_errors:#?}"
    );
    assert!(!report.failures.is_empty(), "some calls failed, so the load overlapped the outage");
    assert_eq!(tally.lost, 0, "every acknowledged change reaches the tickets, the ledger and the metrics: {tally:?}");
    assert_eq!(tally.duplicated, 0, "no change is recorded twice: {tally:?}");
    for (db, name) in [(&ticket_db, "ticket"), (&audit_db, "audit"), (&metrics_db, "metrics")] {
        assert_eq!(idle_in_transaction(db).await, 0, "no session of the {name} database is left idle in a transaction");
    }
    for (service, name) in [(&ticket, "ticket"), (&audit, "audit"), (&metrics, "metrics")] {
        assert!(!service.log().contains("panicked"), "the {name} service panicked; its log:\n{}", service.log());
    }
}
