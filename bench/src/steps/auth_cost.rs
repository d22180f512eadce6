//! Step 8: the per-request cost of authentication plus tracing. One in-process tonic
//! service is called bare and wrapped in the layers every Docket service uses,
//! `docket_telemetry::GrpcTraceLayer` around `docket_server::auth::AuthLayer`, with real
//! Ed25519-signed tokens and a `traceparent`. The wrapped service is called in two ways.
//! One token on every call, as a client reuses its token, is checked in full once and then
//! found among the verifier's verified tokens. A new token on every call is checked in full
//! each time. The three variants alternate in blocks, so
//! they see the same machine load, and the difference of their latencies from the bare
//! calls is the cost of the layers. The Ed25519 signature check of the same new tokens,
//! done straight with ed25519-dalek and a key decoded once, is measured too: it is the
//! part of a new token's cost that no code around it can remove.

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

/// A metrics service that returns an empty response at once, so the measured time is the
/// call path itself.
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
    pub bare: LatencyMicros,
    /// Wrapped, with the same token on every call.
    pub repeated_token: LatencyMicros,
    /// Wrapped, with a new token on every call.
    pub new_token: LatencyMicros,
    /// Mean and p50 of the wrapped calls with a repeated token minus those of the bare calls.
    pub repeated_token_cost_mean_us: f64,
    pub repeated_token_cost_p50_us: f64,
    /// Mean and p50 of the wrapped calls with a new token minus those of the bare calls.
    pub new_token_cost_mean_us: f64,
    pub new_token_cost_p50_us: f64,
    /// The Ed25519 signature check alone, per new token.
    pub signature_check: LatencyMicros,
}

/// Latency of one variant in microseconds.
#[derive(Clone, Debug, Serialize)]
pub struct LatencyMicros {
    pub mean: f64,
    pub p50: f64,
    pub p99: f64,
}

impl LatencyMicros {
    fn from_nanos(histogram: &Histogram<u64>) -> LatencyMicros {
        LatencyMicros {
            mean: histogram.mean() / 1000.0,
            p50: histogram.value_at_quantile(0.5) as f64 / 1000.0,
            p99: histogram.value_at_quantile(0.99) as f64 / 1000.0,
        }
    }
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
    let bearer = |token: String| http::HeaderValue::try_from(format!("Bearer {token}"));
    let repeated = [bearer(docket_tests::user_token("alice", &[Role::Analyst]))?];
    // Minted before the measurement, because signing is the caller's cost, not the layers'.
    let mut fresh = Vec::with_capacity(iterations as usize);
    for _ in 0..iterations {
        fresh.push(bearer(docket_tests::user_token("alice", &[Role::Analyst]))?);
    }

    let bare = MetricsServiceServer::new(Immediate);
    let layered = docket_telemetry::GrpcTraceLayer::new("metrics").wrap(AuthLayer::new(verifier).wrap(MetricsServiceServer::new(Immediate)));

    let body = grpc_frame(&GetResponseMetricsRequest {
        group_by: GroupBy::Severity as i32,
        ..Default::default()
    });
    check_ok(call(bare.clone(), &repeated[0], &body).await, "bare")?;
    check_ok(call(layered.clone(), &repeated[0], &body).await, "layered")?;

    let mut bare_calls = Calls::new(&repeated);
    let mut repeated_calls = Calls::new(&repeated);
    let mut fresh_calls = Calls::new(&fresh);
    let rounds = iterations.div_ceil(BLOCK);
    for round in 0..rounds {
        // Each variant goes first, second and third in turn.
        for turn in 0..3 {
            match (round + turn) % 3 {
                0 => bare_calls.measure(&bare, &body).await,
                1 => repeated_calls.measure(&layered, &body).await,
                _ => fresh_calls.measure(&layered, &body).await,
            }
        }
    }

    let signature_check = LatencyMicros::from_nanos(&signature_checks(&fresh, &keys.users_public_pem)?);
    let bare = LatencyMicros::from_nanos(&bare_calls.histogram);
    let repeated_token = LatencyMicros::from_nanos(&repeated_calls.histogram);
    let new_token = LatencyMicros::from_nanos(&fresh_calls.histogram);
    Ok(AuthCostResults {
        iterations: bare_calls.histogram.len(),
        repeated_token_cost_mean_us: repeated_token.mean - bare.mean,
        repeated_token_cost_p50_us: repeated_token.p50 - bare.p50,
        new_token_cost_mean_us: new_token.mean - bare.mean,
        new_token_cost_p50_us: new_token.p50 - bare.p50,
        bare,
        repeated_token,
        new_token,
        signature_check,
    })
}

/// Times the Ed25519 check of each token's signature over its header and payload, with
/// the public key decoded once, as the floor of a new token's cost.
fn signature_checks(tokens: &[http::HeaderValue], public_pem: &str) -> anyhow::Result<Histogram<u64>> {
    use base64::Engine as _;
    use ed25519_dalek::pkcs8::DecodePublicKey as _;

    let key = ed25519_dalek::VerifyingKey::from_public_key_pem(public_pem).context("decode the users' public key")?;
    let mut histogram = nanos_histogram();
    for token in tokens {
        let text = token.to_str()?.trim_start_matches("Bearer ");
        let (signed, signature) = text.rsplit_once('.').context("a token has three parts")?;
        let signature = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(signature)?;
        let signature = ed25519_dalek::Signature::from_slice(&signature)?;
        let started = Instant::now();
        key.verify_strict(signed.as_bytes(), &signature).context("a minted token's signature is valid")?;
        let nanos = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        histogram.saturating_record(nanos.max(1));
    }
    Ok(histogram)
}

/// The calls of one variant: the tokens it sends in turn and its latencies in nanoseconds.
struct Calls<'a> {
    tokens: &'a [http::HeaderValue],
    next_token: usize,
    histogram: Histogram<u64>,
}

impl<'a> Calls<'a> {
    fn new(tokens: &'a [http::HeaderValue]) -> Calls<'a> {
        Calls {
            tokens,
            next_token: 0,
            histogram: nanos_histogram(),
        }
    }

    async fn measure<S>(&mut self, service: &S, body: &Bytes)
    where
        S: Service<http::Request<tonic::body::Body>, Response = http::Response<tonic::body::Body>> + Clone,
        S::Error: std::fmt::Debug,
    {
        for _ in 0..BLOCK {
            let authorization = &self.tokens[self.next_token % self.tokens.len()];
            self.next_token += 1;
            let started = Instant::now();
            let status = call(service.clone(), authorization, body).await;
            let nanos = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
            self.histogram.saturating_record(nanos.max(1));
            debug_assert_eq!(status.as_deref(), Some("0"));
        }
    }
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
        other => bail!("the {variant} service returned grpc-status {other:?} instead of 0 (OK)"),
    }
}
