//! Load runners: closed loops of concurrent clients for a fixed duration, and latency
//! histograms in microseconds.

use std::future::Future;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::cpu::{CpuMeter, CpuUse, Watched};

/// Highest latency the histograms record, in microseconds; a slower call is clamped to it.
const MAX_LATENCY_MICROS: u64 = 120_000_000;

/// Creates an empty latency histogram in microseconds with 3 significant digits.
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_MICROS, 3).expect("the histogram bounds are valid")
}

/// Records `elapsed` into `histogram`, clamped to the histogram's range.
pub fn record(histogram: &mut Histogram<u64>, elapsed: Duration) {
    let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
    histogram.saturating_record(micros.clamp(1, MAX_LATENCY_MICROS));
}

/// One request that a client repeats. `iteration` counts the client's calls from 0.
pub trait Operation: Send + 'static {
    fn call(&mut self, iteration: u64) -> impl Future<Output = Result<(), String>> + Send;
}

/// Throughput and latency of one load point.
#[derive(Clone, Debug, Serialize)]
pub struct LoadSummary {
    pub clients: usize,
    pub requests: u64,
    pub errors: u64,
    /// First error message seen, so a failing run shows why.
    pub first_error: Option<String>,
    pub seconds: f64,
    pub per_second: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// CPU time of the measured window by part, or `None` when /proc could not be read.
    pub cpu: Option<CpuUse>,
}

impl LoadSummary {
    pub fn from_histogram(clients: usize, histogram: &Histogram<u64>, errors: u64, first_error: Option<String>, elapsed: Duration) -> LoadSummary {
        let requests = histogram.len();
        let seconds = elapsed.as_secs_f64();
        LoadSummary {
            clients,
            requests,
            errors,
            first_error,
            seconds,
            per_second: if seconds > 0.0 { requests as f64 / seconds } else { 0.0 },
            p50_ms: millis(histogram.value_at_quantile(0.50)),
            p99_ms: millis(histogram.value_at_quantile(0.99)),
            max_ms: millis(histogram.max()),
            cpu: None,
        }
    }
}

/// Converts microseconds to milliseconds.
pub fn millis(micros: u64) -> f64 {
    micros as f64 / 1000.0
}

struct ClientTally {
    histogram: Histogram<u64>,
    errors: u64,
    first_error: Option<String>,
}

/// Runs each operation in its own task, back to back, first for `warmup` without
/// recording and then for `duration`. Only successful calls enter the histogram; failed
/// ones are counted. The CPU time of the measured window is split between the `watched`
/// parts, this process and the rest of the machine.
pub async fn closed_loop<O: Operation>(operations: Vec<O>, warmup: Duration, duration: Duration, watched: &[Watched]) -> LoadSummary {
    let clients = operations.len();
    let started = Instant::now();
    let measure_from = started + warmup;
    let deadline = measure_from + duration;

    let mut tasks = Vec::with_capacity(clients);
    for mut operation in operations {
        tasks.push(tokio::spawn(async move {
            let mut tally = ClientTally {
                histogram: latency_histogram(),
                errors: 0,
                first_error: None,
            };
            let mut iteration = 0;
            loop {
                let call_started = Instant::now();
                if call_started >= deadline {
                    break;
                }
                let outcome = operation.call(iteration).await;
                iteration += 1;
                if call_started < measure_from {
                    continue;
                }
                match outcome {
                    Ok(()) => record(&mut tally.histogram, call_started.elapsed()),
                    Err(error) => {
                        tally.errors += 1;
                        tally.first_error.get_or_insert(error);
                    }
                }
            }
            tally
        }));
    }

    tokio::time::sleep_until(measure_from.into()).await;
    let meter = CpuMeter::start(watched)
        .await
        .inspect_err(|error| eprintln!("cannot read CPU times, the run reports none: {error:#}"))
        .ok();

    let mut histogram = latency_histogram();
    let mut errors = 0;
    let mut first_error = None;
    for task in tasks {
        let tally = task.await.expect("a load client does not panic");
        histogram.add(&tally.histogram).expect("histograms with equal bounds add");
        errors += tally.errors;
        if first_error.is_none() {
            first_error = tally.first_error;
        }
    }
    // Calls that started before the deadline may finish after it; they count, so the
    // elapsed time runs to the last of them.
    let elapsed = Instant::now().saturating_duration_since(measure_from);
    let mut summary = LoadSummary::from_histogram(clients, &histogram, errors, first_error, elapsed);
    if let Some(meter) = meter {
        summary.cpu = meter
            .finish(summary.requests)
            .await
            .inspect_err(|error| eprintln!("cannot read CPU times, the run reports none: {error:#}"))
            .ok();
    }
    summary
}
