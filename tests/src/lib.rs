//! Harness for the cross-service tests: a fresh PostgreSQL database per service and test,
//! and the real services started in this process on free ports of 127.0.0.1.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::task::{Context, Poll};
use std::time::Duration;

use clap::Parser;
use diesel_async::{AsyncConnection, AsyncPgConnection};
use docket_auth::{Role, Signer};
use docket_proto::audit::v1::audit_service_client::AuditServiceClient;
use docket_proto::metrics::v1::metrics_service_client::MetricsServiceClient;
use docket_proto::ticket::v1::ticket_service_client::TicketServiceClient;
use tokio::sync::oneshot;
use tonic::transport::Channel;

pub mod chaos;
pub mod load;
pub mod otlp;
pub mod process;

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
    /// Address of the service's Prometheus endpoint.
    pub prometheus: SocketAddr,
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

/// Key id of the test users' signing key, the file stem of its public key.
pub const USERS_KEY_ID: &str = "users";

/// Issuer and audience of the test tokens: the services' defaults.
pub const ISSUER: &str = "docket";
pub const AUDIENCE: &str = "docket";

/// Subject of the test users' default token.
pub const TEST_USER: &str = "alice";

/// Signing keys made once per test process, with their public keys in one directory that
/// every service verifies tokens with.
pub struct TestKeys {
    /// Directory of the public keys: `users.pem`, `docket-ticket.pem` and `docket-metrics.pem`.
    pub public_dir: PathBuf,
    /// The ticket service's private key, for its --service-signing-key.
    pub service_key: PathBuf,
    /// The metrics service's private key, for its --service-signing-key.
    pub metrics_service_key: PathBuf,
    /// The test users' key pair in PEM form, for tests that sign hand-made claims.
    pub users_public_pem: String,
    pub users_private_pem: String,
    pub users: Signer,
    pub service: Signer,
    _dir: tempfile::TempDir,
}

/// Returns the process's test keys, generating them on first use.
pub fn keys() -> &'static TestKeys {
    static KEYS: OnceLock<TestKeys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let dir = tempfile::tempdir().expect("create the test key directory");
        let public_dir = dir.path().join("public");
        std::fs::create_dir(&public_dir).expect("create the public key directory");

        let users = docket_auth::generate_ed25519_keypair().expect("generate the users key pair");
        let service = docket_auth::generate_ed25519_keypair().expect("generate the ticket service key pair");
        std::fs::write(public_dir.join(format!("{USERS_KEY_ID}.pem")), &users.public_pem).expect("write users.pem");
        std::fs::write(public_dir.join(format!("{}.pem", docket_ticket::SERVICE_SUBJECT)), &service.public_pem)
            .expect("write the ticket service public key");
        let service_key = dir.path().join("ticket-service.pem");
        std::fs::write(&service_key, &service.private_pem).expect("write the ticket service private key");

        let metrics_service = docket_auth::generate_ed25519_keypair().expect("generate the metrics service key pair");
        std::fs::write(public_dir.join(format!("{}.pem", docket_metrics::SERVICE_SUBJECT)), &metrics_service.public_pem)
            .expect("write the metrics service public key");
        let metrics_service_key = dir.path().join("metrics-service.pem");
        std::fs::write(&metrics_service_key, &metrics_service.private_pem).expect("write the metrics service private key");

        TestKeys {
            public_dir,
            service_key,
            metrics_service_key,
            users_public_pem: users.public_pem.clone(),
            users_private_pem: users.private_pem.clone(),
            users: Signer::from_pem(users.private_pem.as_bytes(), USERS_KEY_ID, ISSUER, AUDIENCE).expect("users signer"),
            service: Signer::from_pem(service.private_pem.as_bytes(), docket_ticket::SERVICE_SUBJECT, ISSUER, AUDIENCE)
                .expect("ticket service signer"),
            _dir: dir,
        }
    })
}

/// Mints a one-hour token for a test user.
pub fn user_token(subject: &str, roles: &[Role]) -> String {
    keys().users.mint(subject, roles, Duration::from_secs(3600)).expect("mint a user token")
}

/// Mints a one-hour token for the ticket service, as its outbox relay sends.
pub fn service_token() -> String {
    keys().service.mint(docket_ticket::SERVICE_SUBJECT, &[Role::Service], Duration::from_secs(3600)).expect("mint a service token")
}

fn bearer(token: &str) -> http::HeaderValue {
    http::HeaderValue::try_from(format!("Bearer {token}")).expect("a JWT is valid header text")
}

fn common_args(db: &TestDb, binary: &str) -> Vec<String> {
    common_args_at(db, binary, "127.0.0.1:0".parse().expect("a valid socket address"))
}

pub(crate) fn common_args_at(db: &TestDb, binary: &str, listen: SocketAddr) -> Vec<String> {
    vec![
        binary.to_owned(),
        "--jwt-keys-dir".into(),
        keys().public_dir.display().to_string(),
        "--listen-addr".into(),
        listen.to_string(),
        "--prometheus-listen-addr".into(),
        "127.0.0.1:0".into(),
        "--database-url".into(),
        db.url.clone(),
        "--db-max-connections".into(),
        "8".into(),
        "--shutdown-grace".into(),
        "2s".into(),
    ]
}

fn spawn<F, E>(addr: SocketAddr, prometheus: SocketAddr, serve: impl FnOnce(oneshot::Receiver<()>) -> F) -> Running
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
        prometheus,
        stop: Some(stop_tx),
        task: Some(task),
    }
}

/// Returns whether the service on `addr` reports SERVING for the empty service name, or
/// `None` when the health check fails.
pub async fn health_status(addr: SocketAddr) -> Option<bool> {
    let channel = Channel::from_shared(format!("http://{addr}")).ok()?.connect().await.ok()?;
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let request = tonic_health::pb::HealthCheckRequest { service: String::new() };
    let status = health.check(request).await.ok()?.into_inner().status;
    Some(status == tonic_health::pb::health_check_response::ServingStatus::Serving as i32)
}

/// Waits until the service on `addr` reports SERVING, which it does once its migrations ran.
pub async fn wait_until_serving(addr: SocketAddr) {
    let serving = eventually(Duration::from_secs(30), || async move { health_status(addr).await.filter(|serving| *serving).map(|_| ()) }).await;
    assert!(serving.is_some(), "the service on {addr} did not report SERVING within 30 s");
}

async fn until_stopped(stop: oneshot::Receiver<()>) {
    let _ = stop.await;
}

/// Starts the audit service without waiting for it to report SERVING.
pub async fn start_audit_without_waiting(db: &TestDb) -> Running {
    let settings = docket_audit::Settings::try_parse_from(common_args(db, "docket-audit")).expect("audit settings parse");
    let service = docket_audit::Service::prepare(settings).await.expect("audit service starts");
    let (addr, prometheus) = (service.local_addr(), service.prometheus_addr());
    spawn(addr, prometheus, |stop| service.serve(until_stopped(stop)))
}

/// Starts the audit service on its own database.
pub async fn start_audit(db: &TestDb) -> Running {
    start_audit_at(db, "127.0.0.1:0".parse().expect("a valid socket address")).await
}

/// Starts the audit service on `addr`, for a test that lets a peer wait for it there.
pub async fn start_audit_at(db: &TestDb, addr: SocketAddr) -> Running {
    let settings = docket_audit::Settings::try_parse_from(common_args_at(db, "docket-audit", addr)).expect("audit settings parse");
    let service = docket_audit::Service::prepare(settings).await.expect("audit service starts");
    let (addr, prometheus) = (service.local_addr(), service.prometheus_addr());
    let running = spawn(addr, prometheus, |stop| service.serve(until_stopped(stop)));
    wait_until_serving(addr).await;
    running
}

/// Starts the metrics service on its own database, sending the records of denied calls to
/// the audit service at `audit`.
pub async fn start_metrics(db: &TestDb, audit: SocketAddr) -> Running {
    let mut args = common_args(db, "docket-metrics");
    args.extend(["--audit-addr".into(), audit.to_string()]);
    args.extend(["--service-signing-key".into(), keys().metrics_service_key.display().to_string()]);
    let settings = docket_metrics::Settings::try_parse_from(args).expect("metrics settings parse");
    let service = docket_metrics::Service::prepare(settings).await.expect("metrics service starts");
    let (addr, prometheus) = (service.local_addr(), service.prometheus_addr());
    let running = spawn(addr, prometheus, |stop| service.serve(until_stopped(stop)));
    wait_until_serving(addr).await;
    running
}

/// Starts the ticket service on its own database, relaying to the given audit and metrics addresses.
pub async fn start_ticket(db: &TestDb, audit: SocketAddr, metrics: SocketAddr) -> Running {
    start_ticket_with(db, audit, metrics, &[]).await
}

/// Starts the ticket service with extra command-line flags.
pub async fn start_ticket_with(db: &TestDb, audit: SocketAddr, metrics: SocketAddr, extra: &[&str]) -> Running {
    let mut args = common_args(db, "docket-ticket");
    args.extend(["--audit-addr".into(), audit.to_string(), "--metrics-addr".into(), metrics.to_string()]);
    args.extend(["--service-signing-key".into(), keys().service_key.display().to_string()]);
    args.extend(extra.iter().map(|flag| flag.to_string()));
    let settings = docket_ticket::Settings::try_parse_from(args).expect("ticket settings parse");
    let service = docket_ticket::Service::prepare(settings).await.expect("ticket service starts");
    let (addr, prometheus) = (service.local_addr(), service.prometheus_addr());
    let running = spawn(addr, prometheus, |stop| service.serve(until_stopped(stop)));
    wait_until_serving(addr).await;
    running
}

/// Ports that [`unused_addr`] picks from: below Linux's default ephemeral range (32768 to
/// 60999), so the local end of an outgoing connection never takes a port that a test
/// stopped a service on and starts it again.
const TEST_PORTS: std::ops::Range<u16> = 20_000..32_768;

/// Returns an address of 127.0.0.1 where nothing listens, for a peer that a test leaves
/// down or stops and starts again. The port was free a moment ago, and it is drawn at
/// random, so parallel tests rarely draw the same one.
pub fn unused_addr() -> SocketAddr {
    let span = u128::from(TEST_PORTS.end - TEST_PORTS.start);
    for _ in 0..1000 {
        let offset = u16::try_from(uuid::Uuid::new_v4().as_u128() % span).expect("the offset is below the span");
        let candidate = SocketAddr::from(([127, 0, 0, 1], TEST_PORTS.start + offset));
        if std::net::TcpListener::bind(candidate).is_ok() {
            return candidate;
        }
    }
    panic!("no free port of 127.0.0.1 in {TEST_PORTS:?} after 1000 draws");
}

/// Opens a channel that sends no token, for tests that set the `authorization` header
/// themselves.
pub async fn raw_channel(addr: SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .expect("a socket address is a valid URI")
        .connect()
        .await
        .unwrap_or_else(|error| panic!("connect to {addr}: {error}"))
}

/// Which token an [`AuthChannel`] attaches.
#[derive(Clone, Debug)]
enum Credentials {
    /// A service token for AppendEvents and RecordEvents, which only services may call, and
    /// an admin token for every other RPC.
    ByMethod { admin: http::HeaderValue, service: http::HeaderValue },
    Fixed(http::HeaderValue),
}

/// A channel that adds `authorization: Bearer <token>` to each request that has none, so a
/// test can still send its own header.
#[derive(Clone, Debug)]
pub struct AuthChannel {
    inner: Channel,
    credentials: Credentials,
}

impl AuthChannel {
    /// Connects a channel whose calls pass the permission check of every RPC the tests make.
    pub async fn admin(addr: SocketAddr) -> AuthChannel {
        let credentials = Credentials::ByMethod {
            admin: bearer(&user_token(TEST_USER, &[Role::Admin])),
            service: bearer(&service_token()),
        };
        AuthChannel { inner: raw_channel(addr).await, credentials }
    }

    /// Connects a channel that sends `token` with every call.
    pub async fn with_token(addr: SocketAddr, token: &str) -> AuthChannel {
        AuthChannel { inner: raw_channel(addr).await, credentials: Credentials::Fixed(bearer(token)) }
    }

    fn header_for(&self, path: &str) -> &http::HeaderValue {
        match &self.credentials {
            Credentials::Fixed(value) => value,
            Credentials::ByMethod { admin, service } => {
                if path == "/docket.audit.v1.AuditService/AppendEvents" || path == "/docket.metrics.v1.MetricsService/RecordEvents" {
                    service
                } else {
                    admin
                }
            }
        }
    }
}

impl tower::Service<http::Request<tonic::body::Body>> for AuthChannel {
    type Response = <Channel as tower::Service<http::Request<tonic::body::Body>>>::Response;
    type Error = <Channel as tower::Service<http::Request<tonic::body::Body>>>::Error;
    type Future = <Channel as tower::Service<http::Request<tonic::body::Body>>>::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        tower::Service::poll_ready(&mut self.inner, cx)
    }

    fn call(&mut self, mut request: http::Request<tonic::body::Body>) -> Self::Future {
        if !request.headers().contains_key(http::header::AUTHORIZATION) {
            let value = self.header_for(request.uri().path()).clone();
            request.headers_mut().insert(http::header::AUTHORIZATION, value);
        }
        tower::Service::call(&mut self.inner, request)
    }
}

/// Connects a ticket client that may call every ticket RPC, as admin `alice`.
pub async fn ticket_client(addr: SocketAddr) -> TicketServiceClient<AuthChannel> {
    TicketServiceClient::new(AuthChannel::admin(addr).await)
}

/// Connects an audit client that appends as the ticket service and reads as admin `alice`.
pub async fn audit_client(addr: SocketAddr) -> AuditServiceClient<AuthChannel> {
    AuditServiceClient::new(AuthChannel::admin(addr).await)
}

/// Connects a metrics client that records as the ticket service and reads as admin `alice`.
pub async fn metrics_client(addr: SocketAddr) -> MetricsServiceClient<AuthChannel> {
    MetricsServiceClient::new(AuthChannel::admin(addr).await)
}

/// Connects a ticket client that calls as `subject` with `roles`.
pub async fn ticket_client_as(addr: SocketAddr, subject: &str, roles: &[Role]) -> TicketServiceClient<AuthChannel> {
    TicketServiceClient::new(AuthChannel::with_token(addr, &user_token(subject, roles)).await)
}

/// Connects an audit client that calls as `subject` with `roles`.
pub async fn audit_client_as(addr: SocketAddr, subject: &str, roles: &[Role]) -> AuditServiceClient<AuthChannel> {
    AuditServiceClient::new(AuthChannel::with_token(addr, &user_token(subject, roles)).await)
}

/// Connects a metrics client that calls as `subject` with `roles`.
pub async fn metrics_client_as(addr: SocketAddr, subject: &str, roles: &[Role]) -> MetricsServiceClient<AuthChannel> {
    MetricsServiceClient::new(AuthChannel::with_token(addr, &user_token(subject, roles)).await)
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
        let metrics = start_metrics(&metrics_db, audit.addr).await;
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

/// Fetches the Prometheus endpoint at `addr` and returns the text, using a plain HTTP/1.1
/// request so the test reads exactly what a scraper reads.
pub async fn scrape(addr: SocketAddr) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap_or_else(|error| panic!("connect to the metrics endpoint {addr}: {error}"));
    let request = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("send the scrape request");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read the scrape response");
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or_else(|| panic!("an HTTP response: {response}"));
    assert!(head.starts_with("HTTP/1.1 200"), "the metrics endpoint answers 200: {head}");
    body.to_owned()
}

/// Returns the value of the sample `series` (name and labels, as the text format writes
/// them) in a scraped text, or `None` when it is absent.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let value = line.strip_prefix(series)?.strip_prefix(' ')?;
        value.split_whitespace().next()?.parse().ok()
    })
}

/// Path of a file under the repository's data/ folder.
pub fn data_path(relative: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../data").join(relative)
}

/// Builds the event the ticket service relays for `snapshot`, with a fresh event id:
/// `ticket.created` for version 1 and `ticket.updated` after it.
pub fn snapshot_event(snapshot: &docket_proto::events::v1::TicketSnapshot) -> docket_proto::events::v1::Event {
    use docket_proto::events::v1::{Actor, ActorKind, Event, Resource};

    let action = if snapshot.version == 1 { "ticket.created" } else { "ticket.updated" };
    Event {
        event_id: uuid::Uuid::now_v7().to_string(),
        action: action.into(),
        resource: Some(Resource {
            r#type: "ticket".into(),
            id: snapshot.ticket_id.clone(),
            key: snapshot.key.clone(),
        }),
        resource_version: snapshot.version,
        actor: Some(Actor {
            subject: "analyst@example.com".into(),
            kind: ActorKind::Human as i32,
            relayed_by: "docket-ticket".into(),
        }),
        occurred_at: snapshot.created_at,
        source_service: "docket-ticket".into(),
        ticket: Some(snapshot.clone()),
        ..Default::default()
    }
}
