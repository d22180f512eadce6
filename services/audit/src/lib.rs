//! The audit service: an append-only, hash-chained ledger of every Docket event.

mod domain;
mod error;
mod grpc;
mod monitoring;
mod storage;

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use docket_auth::Verifier;
use docket_server::auth::AuthLayer;

use docket_proto::audit::v1::audit_service_server::AuditServiceServer;
use docket_server::{CommonSettings, grpc as server_grpc, health};
use tokio_stream::wrappers::TcpListenerStream;

pub use error::Error;

/// Migrations embedded in the binary and run at start.
pub const MIGRATIONS: docket_db::EmbeddedMigrations = diesel_migrations::embed_migrations!("migrations");

/// Advisory lock key that serializes migrations of the audit database.
const MIGRATION_LOCK_KEY: i64 = 0x646f_636b_6175_6401;

/// Default listen address of the audit service.
pub const DEFAULT_ADDR: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 50052);

/// Default address of the audit service's Prometheus endpoint.
pub const DEFAULT_PROMETHEUS_ADDR: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 9102);

/// Fully qualified gRPC service name, as reported by gRPC health.
pub const SERVICE_NAME: &str = "docket.audit.v1.AuditService";

/// Settings of the audit service.
#[derive(clap::Parser, Clone, Debug)]
#[command(name = "docket-audit", version, about = "Docket audit service: the tamper-evident ledger")]
pub struct Settings {
    #[command(flatten)]
    pub common: CommonSettings,

    /// Database role that the service's connections switch to with SET ROLE, whose
    /// privileges on the ledger are SELECT and INSERT only. The migrations create it; the
    /// login role must be a member of it (a superuser always is). An empty value keeps the
    /// login role, for a login role that is already restricted.
    #[arg(long, env = "DOCKET_DATABASE_ROLE", default_value = WRITER_ROLE, value_parser = parse_role)]
    pub database_role: String,
}

/// Role that the migrations create and grant SELECT and INSERT on the ledger.
pub const WRITER_ROLE: &str = "docket_audit_writer";

/// Accepts an empty value or a plain PostgreSQL identifier.
fn parse_role(text: &str) -> Result<String, String> {
    let plain = text.len() <= 63
        && text.chars().next().is_none_or(|first| first.is_ascii_lowercase() || first == '_')
        && text.chars().all(|character| character.is_ascii_lowercase() || character.is_ascii_digit() || character == '_');
    if !plain {
        return Err(format!("{text:?} is not a plain role name; use lowercase letters, digits and _ (at most 63), for example {WRITER_ROLE}"));
    }
    Ok(text.to_owned())
}

/// An audit service whose database is migrated and whose socket is bound.
pub struct Service {
    settings: Settings,
    pool: docket_db::Pool,
    incoming: TcpListenerStream,
    local_addr: SocketAddr,
    prometheus: tokio::net::TcpListener,
    prometheus_addr: SocketAddr,
    verifier: Arc<Verifier>,
}

impl Service {
    /// Creates the database when missing, runs the migrations and binds the listener.
    pub async fn prepare(settings: Settings) -> Result<Service, Error> {
        let verifier = settings.common.auth.verifier()?;
        Service::prepare_with_verifier(settings, verifier).await
    }

    /// Like [`Service::prepare`], with a verifier already built from `settings.common.auth`.
    pub async fn prepare_with_verifier(settings: Settings, verifier: Arc<Verifier>) -> Result<Service, Error> {
        let url = settings.common.database_url.clone();

        let mut pool_options = settings.common.pool_options();
        pool_options.session_role = Some(settings.database_role.clone()).filter(|role| !role.is_empty());
        let pool = docket_db::connect(&url, &pool_options);
        let address = settings.common.listen_addr.unwrap_or(DEFAULT_ADDR);
        let (incoming, local_addr) = server_grpc::bind_with(address, &settings.common.grpc).await.map_err(|source| Error::Bind { address, source })?;
        let prometheus_address = settings.common.prometheus_listen_addr.unwrap_or(DEFAULT_PROMETHEUS_ADDR);
        let (prometheus, prometheus_addr) = docket_server::prometheus::bind(prometheus_address)
            .await
            .map_err(|source| Error::Bind { address: prometheus_address, source })?;
        Ok(Service {
            settings,
            pool,
            incoming,
            local_addr,
            prometheus,
            prometheus_addr,
            verifier,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Address of the HTTP endpoint that serves Prometheus metrics at /metrics.
    pub fn prometheus_addr(&self) -> SocketAddr {
        self.prometheus_addr
    }

    /// Serves until `shutdown` completes, then drains in-flight calls within the grace period.
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), Error> {
        let (reporter, health_service) = tonic_health::server::health_reporter();
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        health::mark_not_serving(&reporter, SERVICE_NAME).await;
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let url = self.settings.common.database_url.clone();
        let health_task = tokio::spawn(health::prepare_then_follow(
            reporter,
            self.pool.clone(),
            SERVICE_NAME,
            stop_rx,
            move || {
                let url = url.clone();
                async move {
                    docket_db::ensure_database(&url).await?;
                    docket_db::run_migrations(&url, MIGRATIONS, MIGRATION_LOCK_KEY).await
                }
            },
            ready_tx,
        ));
        drop(ready_rx);
        let (reflection_v1, reflection_v1alpha) = server_grpc::reflection(SERVICE_NAME);

        let mut metrics_builder = docket_server::prometheus::MetricsBuilder::new();
        metrics_builder.register_pool(self.pool.clone());
        let rpc_metrics = docket_server::prometheus::RpcMetricsLayer::new(&mut metrics_builder);
        let counters = monitoring::AuditMetrics::register(&mut metrics_builder, self.pool.clone());
        let prometheus_task = tokio::spawn(docket_server::prometheus::serve(self.prometheus, metrics_builder.build(), stop_tx.subscribe()));

        let audit = grpc::AuditApi::new(self.pool.clone(), counters);
        let auth = AuthLayer::new(self.verifier.clone()).on_denied(Arc::new(grpc::DenialLedger::new(self.pool.clone())));
        let router = server_grpc::server_builder_with(&self.settings.common.grpc)
            .add_service(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_service(docket_telemetry::GrpcTraceLayer::new("audit").wrap(rpc_metrics.wrap(
                auth.wrap(
                    AuditServiceServer::new(audit)
                        .max_decoding_message_size(self.settings.common.grpc.max_decoding_message_size)
                        .max_encoding_message_size(self.settings.common.grpc.max_encoding_message_size),
                ),
            )));

        tracing::info!(address = %self.local_addr, "audit service listening");
        let served = server_grpc::serve_with_grace(router, self.incoming, shutdown, self.settings.common.shutdown_grace, &stop_tx).await;
        let _ = stop_tx.send(true);
        let _ = health_task.await;
        let _ = prometheus_task.await;
        tracing::info!("audit service stopped");
        served.map_err(Error::Serve)
    }
}
