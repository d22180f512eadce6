//! Prometheus metrics of one service: the registry, the per-call gRPC metrics layer, the
//! connection pool gauges and the HTTP endpoint that serves them at `/metrics`.
//!
//! Call metrics use the names of go-grpc-prometheus (`grpc_server_handled_total`,
//! `grpc_server_handling_seconds`), which dashboards for gRPC servers expect. Docket's own
//! metrics start with `docket_`. Help texts carry no final period, because prometheus-client
//! 0.26 adds one when it encodes them.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use futures::future::BoxFuture;
use http_body::{Frame, SizeHint};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tower::Service;

/// Media type of the text exposition format that the endpoint writes.
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Runs before each scrape, to read values that only a database query can tell.
pub type Refresh = Arc<dyn Fn() -> BoxFuture<'static, ()> + Send + Sync>;

/// Collects the metrics of one service while it starts; [`MetricsBuilder::build`] freezes
/// them for the endpoint.
pub struct MetricsBuilder {
    registry: Registry,
    refreshes: Vec<Refresh>,
}

impl Default for MetricsBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl MetricsBuilder {
    pub fn new() -> Self {
        Self { registry: Registry::default(), refreshes: Vec::new() }
    }

    pub fn registry(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// Adds a hook that runs before each scrape.
    pub fn on_scrape(&mut self, refresh: Refresh) {
        self.refreshes.push(refresh);
    }

    /// Registers the gauges and counters of a connection pool, read at each scrape.
    pub fn register_pool(&mut self, pool: docket_db::Pool) {
        self.registry.register_collector(Box::new(PoolCollector { pool }));
    }

    /// Registers a gauge that a one-row query with an `int8` column named `value` reads at
    /// each scrape. A failed query logs a warning and keeps the last value, so the scrape
    /// still succeeds.
    pub fn register_query_gauge(&mut self, name: &'static str, help: &str, pool: docket_db::Pool, sql: &'static str) {
        let gauge = Gauge::<i64>::default();
        self.registry.register(name, help, gauge.clone());
        self.on_scrape(Arc::new(move || {
            let (pool, gauge) = (pool.clone(), gauge.clone());
            Box::pin(async move {
                match query_value(&pool, sql).await {
                    Ok(value) => {
                        gauge.set(value);
                    }
                    Err(error) => tracing::warn!(%error, metric = name, "cannot read a metric from the database"),
                }
            })
        }));
    }

    pub fn build(self) -> Metrics {
        Metrics { inner: Arc::new(self) }
    }
}

/// The frozen registry of one service, shared by the endpoint.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<MetricsBuilder>,
}

impl Metrics {
    /// Runs the scrape hooks and returns the registry in the text exposition format.
    pub async fn render(&self) -> String {
        for refresh in &self.inner.refreshes {
            refresh().await;
        }
        let mut text = String::new();
        // Writing into a String cannot fail, so an error here would come from a collector.
        if let Err(error) = prometheus_client::encoding::text::encode(&mut text, &self.inner.registry) {
            tracing::error!(%error, "encoding the metrics failed");
        }
        text
    }
}

/// Binds the metrics endpoint and returns it with its bound address (the port differs from
/// `address` when that asks for port 0). Binding happens before serving, so a port taken by
/// another process stops the service at start.
pub async fn bind(address: SocketAddr) -> std::io::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(address).await?;
    let local = listener.local_addr()?;
    Ok((listener, local))
}

/// Serves `GET /metrics` on `listener` until `stop` turns true.
pub async fn serve(listener: TcpListener, metrics: Metrics, mut stop: tokio::sync::watch::Receiver<bool>) {
    let address = listener.local_addr().ok();
    let router = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let metrics = metrics.clone();
            async move { ([(http::header::CONTENT_TYPE, CONTENT_TYPE)], metrics.render().await) }
        }),
    );
    tracing::info!(address = ?address, "metrics endpoint listening");
    let shutdown = async move {
        while !*stop.borrow() {
            if stop.changed().await.is_err() {
                break;
            }
        }
    };
    if let Err(error) = axum::serve(listener, router).with_graceful_shutdown(shutdown).await {
        tracing::error!(%error, "metrics endpoint failed");
    }
    tracing::info!("metrics endpoint stopped");
}

#[derive(diesel::QueryableByName)]
struct ValueRow {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    value: i64,
}

async fn query_value(pool: &docket_db::Pool, sql: &str) -> Result<i64, String> {
    use diesel_async::RunQueryDsl;

    let mut conn = pool.get().await.map_err(|error| docket_db::DbError::from(error).to_string())?;
    let row: ValueRow = diesel::sql_query(sql).get_result(&mut conn).await.map_err(|error| error.to_string())?;
    Ok(row.value)
}

#[derive(Debug)]
struct PoolCollector {
    pool: docket_db::Pool,
}

impl Collector for PoolCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let state = self.pool.state();
        let in_use = state.connections.saturating_sub(state.idle_connections);
        let max = self.pool.config().max_size;
        let gauges = [
            ("docket_db_pool_connections_in_use", "Database connections checked out of the pool", u64::from(in_use)),
            ("docket_db_pool_connections_idle", "Open database connections waiting in the pool", u64::from(state.idle_connections)),
            ("docket_db_pool_connections_max", "Upper bound on open database connections (--db-max-connections)", u64::from(max)),
            ("docket_db_pool_pending_acquires", "Requests waiting for a free database connection", state.statistics.pending_gets()),
        ];
        for (name, help, value) in gauges {
            let gauge = ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX));
            gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
        }
        let counters = [
            ("docket_db_pool_acquire_timeouts", "Requests that gave up waiting for a database connection", state.statistics.get_timed_out),
            ("docket_db_pool_connections_created", "Database connections opened", state.statistics.connections_created),
            (
                "docket_db_pool_connections_closed_broken",
                "Database connections closed because they were broken, including those left inside a transaction",
                state.statistics.connections_closed_broken,
            ),
        ];
        for (name, help, value) in counters {
            let counter = ConstCounter::new(value);
            counter.encode(encoder.encode_descriptor(name, help, None, counter.metric_type())?)?;
        }
        Ok(())
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    grpc_service: String,
    grpc_method: String,
    grpc_code: String,
}

type HistogramFamily = Family<CallLabels, Histogram, fn() -> Histogram>;

fn handling_histogram() -> Histogram {
    // From 0.5 ms to about 16 s, doubling.
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// Counts every call by service, method and status code, and records how long it took
/// until its status was sent.
#[derive(Clone, Debug)]
pub struct RpcMetricsLayer {
    handled: Family<CallLabels, Counter>,
    handling: HistogramFamily,
}

impl RpcMetricsLayer {
    pub fn new(builder: &mut MetricsBuilder) -> Self {
        let handled = Family::<CallLabels, Counter>::default();
        let handling: HistogramFamily = Family::new_with_constructor(handling_histogram);
        let registry = builder.registry();
        registry.register("grpc_server_handled", "Calls completed on the server, by status code", handled.clone());
        registry.register(
            "grpc_server_handling_seconds",
            "Time from the start of a call to its status, in seconds",
            handling.clone(),
        );
        Self { handled, handling }
    }

    /// Wraps one gRPC service, keeping its name for the router.
    pub fn wrap<S>(&self, inner: S) -> RpcMetrics<S> {
        RpcMetrics { inner, layer: self.clone() }
    }
}

#[derive(Clone, Debug)]
pub struct RpcMetrics<S> {
    inner: S,
    layer: RpcMetricsLayer,
}

impl<S: tonic::server::NamedService> tonic::server::NamedService for RpcMetrics<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B> Service<http::Request<B>> for RpcMetrics<S>
where
    S: Service<http::Request<B>, Response = http::Response<tonic::body::Body>> + Send,
    S::Future: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let path = request.uri().path().trim_start_matches('/');
        let (service, method) = path.split_once('/').unwrap_or((path, ""));
        let mut call = CallRecord {
            layer: self.layer.clone(),
            service: service.to_owned(),
            method: method.to_owned(),
            started: Instant::now(),
            done: false,
        };
        let future = self.inner.call(request);
        Box::pin(async move {
            let response = future.await?;
            // A trailers-only response (every error status) carries grpc-status in its headers.
            if let Some(code) = response.headers().get("grpc-status") {
                call.finish(code_name(code.as_bytes()));
            }
            Ok(response.map(|body| tonic::body::Body::new(MeteredBody { inner: body, call })))
        })
    }
}

/// The labels and start time of one call, recorded once: when its status is known, or as
/// `Canceled` when the call or its response is dropped before that.
struct CallRecord {
    layer: RpcMetricsLayer,
    service: String,
    method: String,
    started: Instant,
    done: bool,
}

impl CallRecord {
    fn finish(&mut self, code: &str) {
        if self.done {
            return;
        }
        self.done = true;
        let labels = CallLabels {
            grpc_service: std::mem::take(&mut self.service),
            grpc_method: std::mem::take(&mut self.method),
            grpc_code: code.to_owned(),
        };
        self.layer.handling.get_or_create(&labels).observe(self.started.elapsed().as_secs_f64());
        self.layer.handled.get_or_create(&labels).inc();
    }
}

impl Drop for CallRecord {
    fn drop(&mut self) {
        self.finish("Canceled");
    }
}

/// A response body that records the call when the trailers carry its status.
struct MeteredBody {
    inner: tonic::body::Body,
    call: CallRecord,
}

impl http_body::Body for MeteredBody {
    type Data = bytes::Bytes;
    type Error = tonic::Status;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(code) = frame.trailers_ref().and_then(|trailers| trailers.get("grpc-status")) {
                    this.call.finish(code_name(code.as_bytes()));
                }
            }
            Poll::Ready(Some(Err(_))) => this.call.finish("Internal"),
            // A body that ends without trailers sent no status, which clients read as an error.
            Poll::Ready(None) => this.call.finish("Unknown"),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Returns the `grpc_code` label of a numeric grpc-status value, spelt as Go's
/// `codes.Code.String()` spells it (`OK`, `NotFound`, `Canceled`) because go-grpc-prometheus
/// dashboards filter on those names. A value outside the gRPC codes becomes `Unknown`.
fn code_name(value: &[u8]) -> &'static str {
    const NAMES: [&str; 17] = [
        "OK",
        "Canceled",
        "Unknown",
        "InvalidArgument",
        "DeadlineExceeded",
        "NotFound",
        "AlreadyExists",
        "PermissionDenied",
        "ResourceExhausted",
        "FailedPrecondition",
        "Aborted",
        "OutOfRange",
        "Unimplemented",
        "Internal",
        "Unavailable",
        "DataLoss",
        "Unauthenticated",
    ];
    let number = std::str::from_utf8(value).ok().and_then(|text| text.parse::<usize>().ok());
    number.and_then(|index| NAMES.get(index)).copied().unwrap_or("Unknown")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_name_follows_go_spelling() {
        assert_eq!(code_name(b"0"), "OK");
        assert_eq!(code_name(b"1"), "Canceled");
        assert_eq!(code_name(b"5"), "NotFound");
        assert_eq!(code_name(b"16"), "Unauthenticated");
    }

    #[test]
    fn code_name_of_bad_value_is_unknown() {
        assert_eq!(code_name(b"17"), "Unknown");
        assert_eq!(code_name(b"-1"), "Unknown");
        assert_eq!(code_name(b"ok"), "Unknown");
    }
}
