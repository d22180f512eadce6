//! The ticket service: incident tickets and their lifecycle.

mod convert;
pub mod domain;
mod error;
mod events;
mod grpc;
mod monitoring;
mod relay;
mod storage;

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use docket_auth::Verifier;
use docket_server::auth::AuthLayer;
use docket_server::outgoing::{ServiceCredentials, SigningSettings, parse_peer_address};

use docket_proto::ticket::v1::ticket_service_server::TicketServiceServer;
use docket_server::{CommonSettings, grpc as server_grpc, health};
use tokio_stream::wrappers::TcpListenerStream;

pub use error::Error;

/// Migrations embedded in the binary and run at start.
pub const MIGRATIONS: docket_db::EmbeddedMigrations =
    diesel_migrations::embed_migrations!("migrations");

/// Advisory lock key that serializes migrations of the ticket database.
const MIGRATION_LOCK_KEY: i64 = 0x646f_636b_7469_6301;

/// Default listen address of the ticket service.
pub const DEFAULT_ADDR: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 50051);

/// Default address of the ticket service's Prometheus endpoint.
pub const DEFAULT_PROMETHEUS_ADDR: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 9101);

/// Fully qualified gRPC service name, as reported by gRPC health.
pub const SERVICE_NAME: &str = "docket.ticket.v1.TicketService";

/// Subject of the tokens the ticket service signs for its calls to audit and metrics.
pub const SERVICE_SUBJECT: &str = "docket-ticket";

/// Settings of the ticket service.
#[derive(clap::Parser, Clone, Debug)]
#[command(
    name = "docket-ticket",
    version,
    about = "Docket ticket service: incident tickets and their lifecycle"
)]
pub struct Settings {
    #[command(flatten)]
    pub common: CommonSettings,

    /// Address of the audit service that receives every ticket event.
    #[arg(long, env = "DOCKET_AUDIT_ADDR", value_parser = parse_peer_address, default_value = "127.0.0.1:50052")]
    pub audit_addr: String,

    /// Address of the metrics service that receives every ticket event.
    #[arg(long, env = "DOCKET_METRICS_ADDR", value_parser = parse_peer_address, default_value = "127.0.0.1:50053")]
    pub metrics_addr: String,

    /// Maximum number of events the relay sends to a sink in one call.
    #[arg(long, env = "DOCKET_RELAY_BATCH_SIZE", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub relay_batch_size: u32,

    /// How often the relay looks for pending events when no local commit woke it, for example 500ms.
    #[arg(long, env = "DOCKET_RELAY_POLL_INTERVAL", default_value = "500ms", value_parser = parse_positive_duration)]
    pub relay_poll_interval: Duration,

    /// Pause after a delivery that emptied the outbox for a sink, so the next delivery
    /// carries the events of that time in one batch, for example 20ms; 0s sends at once.
    #[arg(long, env = "DOCKET_RELAY_LINGER", default_value = "20ms",
        value_parser = docket_server::settings::duration_between(Duration::ZERO, Duration::from_secs(1)))]
    pub relay_linger: Duration,

    /// Maximum wait between two delivery attempts after failures, for example 30s.
    #[arg(long, env = "DOCKET_RELAY_MAX_BACKOFF", default_value = "30s", value_parser = parse_positive_duration)]
    pub relay_max_backoff: Duration,

    #[command(flatten)]
    pub signing: SigningSettings,
}

/// Parses a duration that must be longer than zero, so the relay never polls in a busy loop.
fn parse_positive_duration(text: &str) -> Result<Duration, String> {
    let duration = docket_server::settings::parse_duration(text)?;
    if duration.is_zero() {
        return Err(format!(
            "duration {text:?} must be longer than 0, for example 500ms"
        ));
    }
    Ok(duration)
}

/// A ticket service whose database is migrated and whose socket is bound.
pub struct Service {
    settings: Settings,
    pool: docket_db::Pool,
    incoming: TcpListenerStream,
    local_addr: SocketAddr,
    prometheus: tokio::net::TcpListener,
    prometheus_addr: SocketAddr,
    audit: tonic::transport::Channel,
    metrics: tonic::transport::Channel,
    verifier: Arc<Verifier>,
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
        let url = settings.common.database_url.clone();

        let audit = docket_server::outgoing::channel(&settings.audit_addr).map_err(|error| {
            Error::Config {
                setting: "--audit-addr",
                reason: format!("{:?} is not a valid address: {error}", settings.audit_addr),
            }
        })?;
        let metrics =
            docket_server::outgoing::channel(&settings.metrics_addr).map_err(|error| {
                Error::Config {
                    setting: "--metrics-addr",
                    reason: format!(
                        "{:?} is not a valid address: {error}",
                        settings.metrics_addr
                    ),
                }
            })?;

        let pool = docket_db::connect(&url, &settings.common.pool_options());
        let address = settings.common.listen_addr.unwrap_or(DEFAULT_ADDR);
        let (incoming, local_addr) = server_grpc::bind_with(address, &settings.common.grpc)
            .await
            .map_err(|source| Error::Bind { address, source })?;
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
            audit,
            metrics,
            verifier,
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
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), Error> {
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
        let relay_metrics = monitoring::RelayMetrics::register(&mut metrics_builder, self.pool.clone());
        let prometheus_task = tokio::spawn(docket_server::prometheus::serve(self.prometheus, metrics_builder.build(), stop_rx.clone()));

        let wake = Arc::new(relay::Wake::default());
        let relay_settings = relay::RelaySettings {
            batch_size: i64::from(self.settings.relay_batch_size),
            poll_interval: self.settings.relay_poll_interval,
            linger: self.settings.relay_linger,
            max_backoff: self.settings.relay_max_backoff,
        };
        // The relay reads the outbox, so it starts once the migrations have run.
        let relay = relay::Relay {
            pool: self.pool.clone(),
            settings: relay_settings,
            credentials: self.credentials.clone(),
            wake: wake.clone(),
            metrics: relay_metrics,
        };
        let (audit, metrics, relay_stop) = (self.audit, self.metrics, stop_rx.clone());
        let relay_task = tokio::spawn(async move {
            if ready_rx.await.is_err() {
                return;
            }
            for task in relay::spawn(relay, audit, metrics, relay_stop) {
                let _ = task.await;
            }
        });

        let store = storage::Store::new(self.pool.clone(), wake);
        let auth = AuthLayer::new(self.verifier.clone()).on_denied(Arc::new(grpc::DenialLog::new(store.clone())));
        let ticket = grpc::TicketApi::new(store);
        let router = server_grpc::server_builder_with(&self.settings.common.grpc)
            .add_service(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_service(docket_telemetry::GrpcTraceLayer::new("ticket").wrap(rpc_metrics.wrap(
                auth.wrap(
                    TicketServiceServer::new(ticket)
                        .max_decoding_message_size(self.settings.common.grpc.max_decoding_message_size)
                        .max_encoding_message_size(self.settings.common.grpc.max_encoding_message_size),
                ),
            )));

        tracing::info!(address = %self.local_addr, "ticket service listening");
        let served = server_grpc::serve_with_grace(
            router,
            self.incoming,
            shutdown,
            self.settings.common.shutdown_grace,
            &stop_tx,
        ).await;
        let _ = stop_tx.send(true);
        let _ = health_task.await;
        let _ = relay_task.await;
        let _ = prometheus_task.await;
        tracing::info!("ticket service stopped");
        served.map_err(Error::Serve)
    }
}
