//! The metrics service: metrics projection and response-time queries.

mod denials;
mod domain;
mod error;
mod grpc;
mod mirror;
mod monitoring;
mod storage;

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use docket_auth::Verifier;
use docket_server::auth::AuthLayer;
use docket_server::outgoing::{ServiceCredentials, SigningSettings, parse_peer_address};

use docket_proto::metrics::v1::metrics_service_server::MetricsServiceServer;
use docket_server::{CommonSettings, grpc as server_grpc, health};
use tokio_stream::wrappers::TcpListenerStream;

pub use error::Error;

/// Migrations embedded in the binary and run at start.
pub const MIGRATIONS: docket_db::EmbeddedMigrations = diesel_migrations::embed_migrations!("migrations");

/// Advisory lock key that serializes migrations of the metrics database.
const MIGRATION_LOCK_KEY: i64 = 0x646f_636b_6d65_7401;

/// Default listen address of the metrics service.
pub const DEFAULT_ADDR: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 50053);

/// Default address of the metrics service's Prometheus endpoint.
pub const DEFAULT_PROMETHEUS_ADDR: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 9103);

/// Fully qualified gRPC service name, as reported by gRPC health.
pub const SERVICE_NAME: &str = "docket.metrics.v1.MetricsService";

/// Subject of the tokens the metrics service signs for its calls to audit.
pub const SERVICE_SUBJECT: &str = "docket-metrics";

/// Settings of the metrics service.
#[derive(clap::Parser, Clone, Debug)]
#[command(name = "docket-metrics", version, about = "Docket metrics service: metrics projection and response-time queries")]
pub struct Settings {
    #[command(flatten)]
    pub common: CommonSettings,

    /// Address of the audit service that receives the record of every denied call.
    #[arg(long, env = "DOCKET_AUDIT_ADDR", value_parser = parse_peer_address, default_value = "127.0.0.1:50052")]
    pub audit_addr: String,

    #[command(flatten)]
    pub signing: SigningSettings,
}

/// A metrics service whose database is migrated and whose socket is bound.
pub struct Service {
    settings: Settings,
    pool: docket_db::Pool,
    incoming: TcpListenerStream,
    local_addr: SocketAddr,
    prometheus: tokio::net::TcpListener,
    prometheus_addr: SocketAddr,
    verifier: Arc<Verifier>,
    audit: tonic::transport::Channel,
    credentials: Arc<ServiceCredentials>,
}

impl Service {
    /// Creates the database when missing, runs the migrations and binds the listener.
    pub async fn prepare(settings: Settings) -> Result<Service, Error> {
        let verifier = settings.common.auth.verifier()?;
        Service::prepare_with_verifier(settings, verifier).await
    }

    /// Like [`Service::prepare`], with a verifier already built from `settings.common.auth`.
    pub async fn prepare_with_verifier(settings: Settings, verifier: Arc<Verifier>) -> Result<Service, Error> {
        let credentials = Arc::new(settings.signing.credentials(SERVICE_SUBJECT, &settings.common.auth)?);
        let audit = docket_server::outgoing::channel(&settings.audit_addr).map_err(|error| Error::Config {
            setting: "--audit-addr",
            reason: format!("{:?} is not a valid address: {error}", settings.audit_addr),
        })?;
        let url = settings.common.database_url.clone();

        let pool = docket_db::connect(&url, &settings.common.pool_options());
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
            audit,
            credentials,
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
            stop_rx.clone(),
            move || {
                let url = url.clone();
                async move {
                    docket_db::ensure_database(&url).await?;
                    docket_db::run_migrations(&url, MIGRATIONS, MIGRATION_LOCK_KEY).await
                }
            },
            ready_tx,
        ));
        let (reflection_v1, reflection_v1alpha) = server_grpc::reflection(SERVICE_NAME);

        let mut metrics_builder = docket_server::prometheus::MetricsBuilder::new();
        metrics_builder.register_pool(self.pool.clone());
        let rpc_metrics = docket_server::prometheus::RpcMetricsLayer::new(&mut metrics_builder);
        let counters = monitoring::ProjectionMetrics::register(&mut metrics_builder, self.pool.clone());
        let mirror = Arc::new(mirror::Mirror::new(monitoring::register_mirror(&mut metrics_builder)));
        let prometheus_task = tokio::spawn(docket_server::prometheus::serve(self.prometheus, metrics_builder.build(), stop_tx.subscribe()));
        let wake = Arc::new(tokio::sync::Notify::new());
        let forwarder_task = tokio::spawn(after_migrations(ready_rx, self.pool.clone(), mirror.clone(), self.audit, self.credentials, wake.clone(), stop_rx));

        let metrics = grpc::MetricsApi::new(self.pool.clone(), mirror, counters);
        let auth = AuthLayer::new(self.verifier.clone()).on_denied(Arc::new(denials::DenialOutbox::new(self.pool.clone(), wake)));
        let router = server_grpc::server_builder_with(&self.settings.common.grpc)
            .add_service(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_service(docket_telemetry::GrpcTraceLayer::new("metrics").wrap(rpc_metrics.wrap(
                auth.wrap(
                    MetricsServiceServer::new(metrics)
                        .max_decoding_message_size(self.settings.common.grpc.max_decoding_message_size)
                        .max_encoding_message_size(self.settings.common.grpc.max_encoding_message_size),
                ),
            )));

        tracing::info!(address = %self.local_addr, "metrics service listening");
        let served = server_grpc::serve_with_grace(router, self.incoming, shutdown, self.settings.common.shutdown_grace, &stop_tx).await;
        let _ = stop_tx.send(true);
        let _ = health_task.await;
        let _ = prometheus_task.await;
        let _ = forwarder_task.await;
        tracing::info!("metrics service stopped");
        served.map_err(Error::Serve)
    }
}

/// Work that reads tables the migrations create, started once they have run: loading the
/// projection into memory, so the first query does not wait for it, and forwarding the
/// denial outbox.
async fn after_migrations(
    ready: tokio::sync::oneshot::Receiver<()>,
    pool: docket_db::Pool,
    mirror: Arc<mirror::Mirror>,
    audit: tonic::transport::Channel,
    credentials: Arc<ServiceCredentials>,
    wake: Arc<tokio::sync::Notify>,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    if ready.await.is_err() {
        return;
    }
    let load_pool = pool.clone();
    tokio::spawn(async move {
        if let Err(error) = mirror.refresh(&load_pool, std::time::Instant::now()).await {
            tracing::warn!(%error, "could not load the projection into memory at start; the first query will try again");
        }
    });
    denials::forward(pool, audit, credentials, wake, stop).await;
}
