//! Step 8: the per-request cost of authentication plus tracing. One in-process tonic
//! service is called bare and wrapped in the layers every Docket service uses,
//! `docket_telemetry::GrpcTraceLayer` around `docket_server::auth::AuthLayer`, with a real
//! Ed25519-signed token and a `traceparent`. The calls alternate in blocks, so both
//! variants see the same machine load, and the difference of their latencies is the cost
//! of the layers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use docket_auth::{KeySource, Role, Verifier, VerifierConfig};
use docket_proto::metrics::v1::metrics_service_server::{MetricsService, MetricsServiceServer};
use docket_proto::metrics::v1::{GetResponseMetricsRequest, GetResponseMetricsResponse, GroupBy, RecordEventsRequest, RecordEventsResponse};
use docket_server::auth::AuthLayer;
use hdrhistogram::Histogram;
use http_body_util::BodyExt;
use prost::Message;
use serde::Serialize;
use tonic::codegen::Bytes;
use tonic::{Request, Response, Status};
use tower::{Service, ServiceExt};

/// A metrics service that answers at once, so the measured time is the call path itself.
struct Immediate;

#[tonic::async_trait]
impl MetricsService for Immediate {
    async fn record_events(&self, _request: Request<RecordEventsRequest>) -> Result<Response<RecordEventsResponse>, Status> {
        Ok(Response::new(RecordEventsResponse::default()))
    }

    async fn get_response_metrics(&self, _request: Request<GetResponseMetricsRequest>) -> Result<Response<GetResponseMetricsResponse>, Status> {
        Ok(Response::new(GetResponseMetricsResponse::default()))
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct AuthCostResults {
    /// Calls per variant.
    pub iterations: u64,
    pub bare_mean_us: f64,
    pub bare_p50_us: f64,
    pub bare_p99_us: f64,
    pub layered_mean_us: f64,
    pub layered_p50_us: f64,
    pub layered_p99_us: f64,
    /// Mean of the layered calls minus mean of the bare ones.
    pub cost_mean_us: f64,
    /// p50 of the layered calls minus p50 of the bare ones.
    pub cost_p50_us: f64,
}

/// Calls of one variant before the other takes its turn.
const BLOCK: u64 = 1_000;

const PATH: &str = "/docket.metrics.v1.MetricsService/GetResponseMetrics";

/// A traceparent as a caller that continues a trace sends it.
const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

pub async fn run(iterations: u64) -> anyhow::Result<AuthCostResults> {
    // The services install this subscriber at start; without it, spans cost nothing.
    let _telemetry = docket_telemetry::init("docket-bench", docket_telemetry::LogFormat::Text).context("install the tracing subscriber")?;

    let keys = docket_tests::keys();
    let verifier = Arc::new(
        Verifier::new(VerifierConfig {
            issuer: docket_tests::ISSUER.to_owned(),
            audience: docket_tests::AUDIENCE.to_owned(),
            leeway: Duration::from_secs(30),
            keys: vec![KeySource::PemDirectory(keys.public_dir.clone())],
            dev_hs256_secret: None,
        })
        .context("build the token verifier")?,
    );
    let token = docket_tests::user_token("alice", &[Role::Analyst]);
    let authorization = http::HeaderValue::try_from(format!("Bearer {token}"))?;

    let bare = MetricsServiceServer::new(Immediate);
    let layered = docket_telemetry::GrpcTraceLayer::new("metrics").wrap(AuthLayer::new(verifier).wrap(MetricsServiceServer::new(Immediate)));

    let body = grpc_frame(&GetResponseMetricsRequest {
        group_by: GroupBy::Severity as i32,
        ..Default::default()
    });
    check_ok(call(bare.clone(), &authorization, &body).await, "bare")?;
    check_ok(call(layered.clone(), &authorization, &body).await, "layered")?;

    let mut bare_histogram = nanos_histogram();
    let mut layered_histogram = nanos_histogram();
    let rounds = iterations.div_ceil(BLOCK);
    for round in 0..rounds {
        if round % 2 == 0 {
            measure(&bare, &authorization, &body, &mut bare_histogram).await;
            measure(&layered, &authorization, &body, &mut layered_histogram).await;
        } else {
            measure(&layered, &authorization, &body, &mut layered_histogram).await;
            measure(&bare, &authorization, &body, &mut bare_histogram).await;
        }
    }

    let micros = |nanos: f64| nanos / 1000.0;
    let bare_mean = bare_histogram.mean();
    let layered_mean = layered_histogram.mean();
    let bare_p50 = bare_histogram.value_at_quantile(0.5) as f64;
    let layered_p50 = layered_histogram.value_at_quantile(0.5) as f64;
    Ok(AuthCostResults {
        iterations: bare_histogram.len(),
        bare_mean_us: micros(bare_mean),
        bare_p50_us: micros(bare_p50),
        bare_p99_us: micros(bare_histogram.value_at_quantile(0.99) as f64),
        layered_mean_us: micros(layered_mean),
        layered_p50_us: micros(layered_p50),
        layered_p99_us: micros(layered_histogram.value_at_quantile(0.99) as f64),
        cost_mean_us: micros(layered_mean - bare_mean),
        cost_p50_us: micros(layered_p50 - bare_p50),
    })
}

fn nanos_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 10_000_000_000, 3).expect("the histogram bounds are valid")
}

/// Encodes `message` as one uncompressed gRPC frame: a zero flag byte, the length as a
/// big-endian u32, then the message.
fn grpc_frame(message: &impl Message) -> Bytes {
    let encoded = message.encode_to_vec();
    let mut frame = Vec::with_capacity(5 + encoded.len());
    frame.push(0);
    frame.extend_from_slice(&u32::try_from(encoded.len()).expect("a small message").to_be_bytes());
    frame.extend_from_slice(&encoded);
    Bytes::from(frame)
}

fn request(authorization: &http::HeaderValue, body: &Bytes) -> http::Request<tonic::body::Body> {
    http::Request::builder()
        .method(http::Method::POST)
        .uri(format!("http://127.0.0.1{PATH}"))
        .header(http::header::CONTENT_TYPE, "application/grpc")
        .header(http::header::TE, "trailers")
        .header(http::header::AUTHORIZATION, authorization.clone())
        .header("traceparent", TRACEPARENT)
        .body(tonic::body::Body::new(http_body_util::Full::new(body.clone())))
        .expect("the request parts are valid")
}

/// Sends one request and reads the whole response, trailers included, returning its
/// `grpc-status`.
async fn call<S>(service: S, authorization: &http::HeaderValue, body: &Bytes) -> Option<String>
where
    S: Service<http::Request<tonic::body::Body>, Response = http::Response<tonic::body::Body>>,
    S::Error: std::fmt::Debug,
{
    let response = service.oneshot(request(authorization, body)).await.expect("the service is infallible");
    let from_headers = response.headers().get("grpc-status").map(|value| value.to_str().unwrap_or_default().to_owned());
    let collected = response.into_body().collect().await.ok()?;
    let from_trailers = collected
        .trailers()
        .and_then(|trailers| trailers.get("grpc-status"))
        .map(|value| value.to_str().unwrap_or_default().to_owned());
    from_trailers.or(from_headers)
}

fn check_ok(status: Option<String>, variant: &str) -> anyhow::Result<()> {
    match status.as_deref() {
        Some("0") => Ok(()),
        other => bail!("the {variant} service answered grpc-status {other:?} instead of 0 (OK)"),
    }
}

async fn measure<S>(service: &S, authorization: &http::HeaderValue, body: &Bytes, histogram: &mut Histogram<u64>)
where
    S: Service<http::Request<tonic::body::Body>, Response = http::Response<tonic::body::Body>> + Clone,
    S::Error: std::fmt::Debug,
{
    for _ in 0..BLOCK {
        let started = Instant::now();
        let status = call(service.clone(), authorization, body).await;
        let nanos = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        histogram.saturating_record(nanos.max(1));
        debug_assert_eq!(status.as_deref(), Some("0"));
    }
}
