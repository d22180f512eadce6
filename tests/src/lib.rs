//! Harness for the cross-service tests: a fresh PostgreSQL database per service and test,
//! and the real services started in this process on free ports of 127.0.0.1.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use diesel_async::{AsyncConnection, AsyncPgConnection};
use docket_proto::audit::v1::audit_service_client::AuditServiceClient;
use docket_proto::metrics::v1::metrics_service_client::MetricsServiceClient;
use docket_proto::ticket::v1::ticket_service_client::TicketServiceClient;
use tokio::sync::oneshot;
use tonic::transport::Channel;

pub mod otlp;

/// Server that the tests use; override with DOCKET_TEST_POSTGRES.
pub const DEFAULT_POSTGRES: &str = "postgres://postgres@127.0.0.1:5432";

/// Prefix of every database a test creates; `make test` drops leftovers with this prefix.
pub const DATABASE_PREFIX: &str = "docket_test_";

fn postgres_server() -> String {
    std::env::var("DOCKET_TEST_POSTGRES").unwrap_or_else(|_| DEFAULT_POSTGRES.to_owned())
}

/// A database of its own for one service in one test. The services create it on start.
#[derive(Clone, Debug)]
pub struct TestDb {
    pub name: String,
    pub url: String,
}

impl TestDb {
    /// Names a new database `docket_test_<service>_<random>`; nothing is created until a
    /// service starts on it.
    pub fn create(service: &str) -> TestDb {
        let suffix = uuid::Uuid::new_v4().simple().to_string();
        let name = format!("{DATABASE_PREFIX}{service}_{}", &suffix[..12]);
        let url = format!("{}/{name}", postgres_server());
        TestDb { name, url }
    }

    /// Opens a connection as the database superuser, for tampering and direct checks.
    pub async fn superuser_conn(&self) -> AsyncPgConnection {
        AsyncPgConnection::establish(&self.url)
            .await
            .unwrap_or_else(|error| panic!("connect to test database {}: {error}", self.name))
    }
}

/// A service running in this process; it stops when this value is dropped.
pub struct Running {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Running {
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops the service and waits until its server has returned.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

fn common_args(db: &TestDb, binary: &str) -> Vec<String> {
    vec![
        binary.to_owned(),
        "--listen-addr".into(),
        "127.0.0.1:0".into(),
        "--database-url".into(),
        db.url.clone(),
        "--db-max-connections".into(),
        "8".into(),
        "--shutdown-grace".into(),
        "2s".into(),
    ]
}

fn spawn<F, E>(addr: SocketAddr, serve: impl FnOnce(oneshot::Receiver<()>) -> F) -> Running
where
    F: Future<Output = Result<(), E>> + Send + 'static,
    E: std::fmt::Display,
{
    let (stop_tx, stop_rx) = oneshot::channel();
    let future = serve(stop_rx);
    let task = tokio::spawn(async move {
        if let Err(error) = future.await {
            eprintln!("service on {addr} failed: {error}");
        }
    });
    Running {
        addr,
        stop: Some(stop_tx),
        task: Some(task),
    }
}

async fn until_stopped(stop: oneshot::Receiver<()>) {
    let _ = stop.await;
}

/// Starts the audit service on its own database.
pub async fn start_audit(db: &TestDb) -> Running {
    let settings = docket_audit::Settings::try_parse_from(common_args(db, "docket-audit")).expect("audit settings parse");
    let service = docket_audit::Service::prepare(settings).await.expect("audit service starts");
    let addr = service.local_addr();
    spawn(addr, |stop| service.serve(until_stopped(stop)))
}

/// Starts the metrics service on its own database.
pub async fn start_metrics(db: &TestDb) -> Running {
    let settings = docket_metrics::Settings::try_parse_from(common_args(db, "docket-metrics")).expect("metrics settings parse");
    let service = docket_metrics::Service::prepare(settings).await.expect("metrics service starts");
    let addr = service.local_addr();
    spawn(addr, |stop| service.serve(until_stopped(stop)))
}

/// Starts the ticket service on its own database, relaying to the given audit and metrics addresses.
pub async fn start_ticket(db: &TestDb, audit: SocketAddr, metrics: SocketAddr) -> Running {
    start_ticket_with(db, audit, metrics, &[]).await
}

/// Starts the ticket service with extra command-line flags.
pub async fn start_ticket_with(db: &TestDb, audit: SocketAddr, metrics: SocketAddr, extra: &[&str]) -> Running {
    let mut args = common_args(db, "docket-ticket");
    args.extend(["--audit-addr".into(), audit.to_string(), "--metrics-addr".into(), metrics.to_string()]);
    args.extend(extra.iter().map(|flag| flag.to_string()));
    let settings = docket_ticket::Settings::try_parse_from(args).expect("ticket settings parse");
    let service = docket_ticket::Service::prepare(settings).await.expect("ticket service starts");
    let addr = service.local_addr();
    spawn(addr, |stop| service.serve(until_stopped(stop)))
}

async fn channel(addr: SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .expect("a socket address is a valid URI")
        .connect()
        .await
        .unwrap_or_else(|error| panic!("connect to {addr}: {error}"))
}

pub async fn ticket_client(addr: SocketAddr) -> TicketServiceClient<Channel> {
    TicketServiceClient::new(channel(addr).await)
}

pub async fn audit_client(addr: SocketAddr) -> AuditServiceClient<Channel> {
    AuditServiceClient::new(channel(addr).await)
}

pub async fn metrics_client(addr: SocketAddr) -> MetricsServiceClient<Channel> {
    MetricsServiceClient::new(channel(addr).await)
}

/// The three services wired together, each on its own fresh database.
pub struct Suite {
    pub ticket_db: TestDb,
    pub audit_db: TestDb,
    pub metrics_db: TestDb,
    pub audit: Running,
    pub metrics: Running,
    pub ticket: Running,
}

impl Suite {
    pub async fn start() -> Suite {
        let ticket_db = TestDb::create("ticket");
        let audit_db = TestDb::create("audit");
        let metrics_db = TestDb::create("metrics");
        let audit = start_audit(&audit_db).await;
        let metrics = start_metrics(&metrics_db).await;
        let ticket = start_ticket(&ticket_db, audit.addr, metrics.addr).await;
        Suite {
            ticket_db,
            audit_db,
            metrics_db,
            audit,
            metrics,
            ticket,
        }
    }
}

/// Polls `check` every 50 ms until it returns `Some` or `timeout` passes.
pub async fn eventually<T, F, Fut>(timeout: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return Some(value);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Path of a file under the repository's data/ folder.
pub fn data_path(relative: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../data").join(relative)
}
