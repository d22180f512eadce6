//! Service binaries run as child processes, for tests that signal, kill or restart a
//! service. The binaries come from the same target directory as the test executable, so
//! `cargo build --workspace --all-targets` must run first; `make test` does.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::process::{Child, Command};

use crate::{TestDb, common_args_at, keys};

/// Returns the path of a Docket binary built next to the running test executable, or the
/// one under DOCKET_TEST_BIN_DIR when that is set.
pub fn binary_path(name: &str) -> PathBuf {
    let directory = match std::env::var_os("DOCKET_TEST_BIN_DIR") {
        Some(directory) => PathBuf::from(directory),
        None => {
            // A test executable lives in target/<profile>/deps/, its binaries in target/<profile>/.
            let executable = std::env::current_exe().expect("the test executable has a path");
            executable.parent().and_then(|deps| deps.parent()).expect("the test executable is under target/<profile>/deps").to_path_buf()
        }
    };
    let path = directory.join(name);
    assert!(
        path.is_file(),
        "{} is missing: build the service binaries first with `cargo build --workspace --all-targets` (make test does), or set DOCKET_TEST_BIN_DIR",
        path.display()
    );
    path
}

/// What a service process is started with: the binary, its database, its gRPC address and
/// the flags beyond the defaults every test service gets.
pub struct ProcessArgs {
    pub binary: &'static str,
    pub db: TestDb,
    pub addr: SocketAddr,
    pub extra: Vec<String>,
}

/// A service binary running as a child process with its output in a log file. Dropping it
/// kills the process.
pub struct ServiceProcess {
    pub addr: SocketAddr,
    /// Address of the process's Prometheus endpoint.
    pub prometheus: SocketAddr,
    binary: &'static str,
    child: Child,
    log_path: PathBuf,
    _log_dir: tempfile::TempDir,
}

impl ServiceProcess {
    /// Starts `binary` (`docket-ticket`, `docket-audit` or `docket-metrics`) on `addr` and
    /// `db` with the test keys, the arguments every test service gets, and `extra`. The
    /// environment of the child keeps no DOCKET_* or OTEL_* variable of the test.
    pub fn spawn(binary: &'static str, db: &TestDb, addr: SocketAddr, extra: &[String]) -> ServiceProcess {
        ServiceProcess::spawn_with_env(ProcessArgs { binary, db: db.clone(), addr, extra: extra.to_vec() }, &[])
    }

    /// Like [`ServiceProcess::spawn`], with extra environment variables for the child.
    pub fn spawn_with_env(args: ProcessArgs, env: &[(&str, &str)]) -> ServiceProcess {
        let ProcessArgs { binary, db, addr, extra } = args;
        let extra = extra.as_slice();
        let db = &db;
        let log_dir = tempfile::tempdir().expect("create a log directory");
        let log_path = log_dir.path().join(format!("{binary}.log"));
        let log = std::fs::File::create(&log_path).expect("create the service log");
        let errors = log.try_clone().expect("share the service log with stderr");

        // Each default is a flag and its value; a flag that `extra` sets again is dropped,
        // because clap rejects a flag given twice.
        let prometheus = crate::unused_addr();
        let mut defaults = common_args_at(db, binary, addr);
        let port_zero = defaults.iter().position(|argument| argument == "--prometheus-listen-addr").expect("the defaults set the metrics endpoint") + 1;
        defaults[port_zero] = prometheus.to_string();
        let mut arguments = Vec::new();
        for pair in defaults[1..].chunks(2) {
            if !extra.contains(&pair[0]) {
                arguments.extend(pair.iter().cloned());
            }
        }
        arguments.extend(extra.iter().cloned());

        let mut command = Command::new(binary_path(binary));
        command.args(&arguments).stdin(Stdio::null()).stdout(log).stderr(errors).kill_on_drop(true);
        for (name, _) in std::env::vars_os() {
            let text = name.to_string_lossy();
            if text.starts_with("DOCKET_") || text.starts_with("OTEL_") {
                command.env_remove(&name);
            }
        }
        command.env("RUST_LOG", "info");
        command.envs(env.iter().copied());
        let child = command.spawn().unwrap_or_else(|error| panic!("start {binary}: {error}"));
        ServiceProcess { addr, prometheus, binary, child, log_path, _log_dir: log_dir }
    }

    /// Starts the audit service binary on a free port.
    pub fn audit(db: &TestDb) -> ServiceProcess {
        ServiceProcess::spawn("docket-audit", db, crate::unused_addr(), &[])
    }

    /// Starts the metrics service binary on a free port, sending denials to `audit`.
    pub fn metrics(db: &TestDb, audit: SocketAddr) -> ServiceProcess {
        let extra = [
            "--audit-addr".to_owned(),
            audit.to_string(),
            "--service-signing-key".to_owned(),
            keys().metrics_service_key.display().to_string(),
        ];
        ServiceProcess::spawn("docket-metrics", db, crate::unused_addr(), &extra)
    }

    /// Starts the ticket service binary on `addr`, relaying to `audit` and `metrics`.
    pub fn ticket(db: &TestDb, addr: SocketAddr, audit: SocketAddr, metrics: SocketAddr, extra: &[&str]) -> ServiceProcess {
        ServiceProcess::spawn_with_env(ServiceProcess::ticket_args(db, addr, audit, metrics, extra), &[])
    }

    /// Returns the arguments of a ticket service binary on `addr`, relaying to `audit` and
    /// `metrics`.
    pub fn ticket_args(db: &TestDb, addr: SocketAddr, audit: SocketAddr, metrics: SocketAddr, extra: &[&str]) -> ProcessArgs {
        let mut arguments = vec![
            "--audit-addr".to_owned(),
            audit.to_string(),
            "--metrics-addr".to_owned(),
            metrics.to_string(),
            "--service-signing-key".to_owned(),
            keys().service_key.display().to_string(),
        ];
        arguments.extend(extra.iter().map(|flag| flag.to_string()));
        ProcessArgs { binary: "docket-ticket", db: db.clone(), addr, extra: arguments }
    }

    pub fn pid(&self) -> u32 {
        self.child.id().expect("the process has not been waited for")
    }

    /// Waits until the service reports SERVING, showing its log when it does not.
    pub async fn wait_until_serving(&self) {
        let addr = self.addr;
        let serving = crate::eventually(Duration::from_secs(30), || async move { crate::health_status(addr).await.filter(|serving| *serving) }).await;
        assert!(serving.is_some(), "{} on {addr} did not report SERVING within 30 s; its log:\n{}", self.binary, self.log());
    }

    /// Sends SIGTERM, the signal that starts a graceful shutdown.
    pub fn terminate(&self) {
        self.send(rustix::process::Signal::TERM);
    }

    /// Sends SIGKILL: the process ends at once, without any cleanup.
    pub fn kill(&self) {
        self.send(rustix::process::Signal::KILL);
    }

    fn send(&self, signal: rustix::process::Signal) {
        let pid = rustix::process::Pid::from_raw(i32::try_from(self.pid()).expect("a pid fits in i32")).expect("a child's pid is positive");
        rustix::process::kill_process(pid, signal).unwrap_or_else(|error| panic!("send {signal:?} to {} ({pid:?}): {error}", self.binary));
    }

    /// Waits up to `timeout` for the process to exit and returns its status, or `None`
    /// when it is still running.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        tokio::time::timeout(timeout, self.child.wait()).await.ok().map(|status| status.expect("wait for the child process"))
    }

    /// Returns everything the process has written to stdout and stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_else(|error| format!("(cannot read {}: {error})", self.log_path.display()))
    }
}
