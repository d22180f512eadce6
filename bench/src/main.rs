//! `docket-bench`: measures Docket and, in the same run, the limit each figure is held
//! against, then prints a table and writes target/bench/results.json. `make bench` runs
//! it against release builds; docs/benchmarks.md describes each step.

mod cluster;
mod cpu;
mod load;
mod machine;
mod raw;
mod report;
mod steps;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;

/// Benchmark Docket against the raw PostgreSQL limit, side by side in one run.
#[derive(Parser, Debug)]
#[command(name = "docket-bench", version)]
struct Args {
    /// Short steps and small data sets, for a smoke check in under 3 minutes.
    #[arg(long)]
    quick: bool,

    /// PostgreSQL server for the benchmark databases, without a database name.
    #[arg(long, env = "DOCKET_BENCH_POSTGRES", default_value = "postgres://postgres@127.0.0.1:5432")]
    postgres: String,

    /// Steps to run, comma-separated: tickets, metrics, audit, import, auth.
    #[arg(long, value_delimiter = ',', default_value = "tickets,metrics,audit,import,auth")]
    steps: Vec<Step>,

    /// JSON file the results are written to.
    #[arg(long, default_value = "target/bench/results.json")]
    out: PathBuf,

    /// VERIS file that the import step imports.
    #[arg(long, default_value = "data/vcdb/vcdb-veris.jsonl.gz")]
    veris_file: PathBuf,

    /// Folder of the release binaries; defaults to the folder of this executable.
    #[arg(long)]
    bin_dir: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Step {
    Tickets,
    Metrics,
    Audit,
    Import,
    Auth,
}

/// Durations and data sizes of one run.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Plan {
    pub mode: &'static str,
    /// Measured seconds of each load point.
    pub load_seconds: u64,
    /// Unmeasured seconds before each load point.
    pub warmup_seconds: u64,
    pub propagation_seconds: u64,
    pub metrics_tickets: u64,
    /// Seconds each GetResponseMetrics query is repeated for.
    pub query_seconds: u64,
    pub ledger_records: u64,
    pub verify_runs: u32,
    /// Calls of each variant in the authentication and tracing step.
    pub auth_iterations: u64,
}

impl Plan {
    fn full() -> Plan {
        Plan {
            mode: "full",
            load_seconds: 15,
            warmup_seconds: 2,
            propagation_seconds: 30,
            metrics_tickets: 1_000_000,
            query_seconds: 30,
            ledger_records: 1_000_000,
            verify_runs: 3,
            auth_iterations: 100_000,
        }
    }

    fn quick() -> Plan {
        Plan {
            mode: "quick",
            load_seconds: 3,
            warmup_seconds: 1,
            propagation_seconds: 5,
            metrics_tickets: 50_000,
            query_seconds: 3,
            ledger_records: 50_000,
            verify_runs: 1,
            auth_iterations: 20_000,
        }
    }

    pub fn load(&self) -> Duration {
        Duration::from_secs(self.load_seconds)
    }

    pub fn warmup(&self) -> Duration {
        Duration::from_secs(self.warmup_seconds)
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let plan = if args.quick { Plan::quick() } else { Plan::full() };
    let bin_dir = match &args.bin_dir {
        Some(dir) => dir.clone(),
        None => std::env::current_exe()?.parent().context("the executable has a folder")?.to_path_buf(),
    };
    let out_dir = args.out.parent().map(PathBuf::from).unwrap_or_default();
    let log_dir = out_dir.join("logs");
    std::fs::create_dir_all(&log_dir).with_context(|| format!("create {}", log_dir.display()))?;

    let machine = machine::describe_machine();
    let postgres = machine::describe_postgres(&args.postgres).await?;
    let started_at = chrono::Utc::now();
    let context = cluster::Context {
        server: args.postgres.trim_end_matches('/').to_owned(),
        bin_dir,
        log_dir,
        run_id: started_at.format("%Y%m%d%H%M%S").to_string(),
    };
    report::print_header(&machine, &postgres, &plan, &context);

    let mut results = report::Results {
        command: std::env::args().collect::<Vec<_>>().join(" "),
        started_at,
        finished_at: None,
        machine,
        postgres,
        plan: plan.clone(),
        tickets: None,
        metrics: None,
        audit: None,
        import: None,
        auth_cost: None,
        table: Vec::new(),
        failures: Vec::new(),
    };
    // A failed step is reported and the others still run, so one fault does not hide the
    // remaining figures.
    let mut failures = Vec::new();
    if args.steps.contains(&Step::Tickets) {
        results.tickets = keep(steps::tickets::run(&context, &plan).await, "CreateTicket and GetTicket steps", &mut failures);
    }
    if args.steps.contains(&Step::Metrics) {
        results.metrics = keep(steps::metrics::run(&context, &plan).await, "GetResponseMetrics step", &mut failures);
    }
    if args.steps.contains(&Step::Audit) {
        results.audit = keep(steps::audit::run(&context, &plan).await, "audit step", &mut failures);
    }
    if args.steps.contains(&Step::Import) {
        results.import = keep(steps::import::run(&context, &args.veris_file).await, "VERIS import step", &mut failures);
    }
    // Last, because it installs the global tracing subscriber, which then prints the log
    // lines of everything that runs after it.
    if args.steps.contains(&Step::Auth) {
        results.auth_cost = keep(steps::auth_cost::run(plan.auth_iterations).await, "authentication and tracing step", &mut failures);
    }
    results.failures = failures;
    results.finished_at = Some(chrono::Utc::now());
    results.table = report::rows(&results);

    report::print_table(&results);
    report::print_cpu_table(&results);
    let json = serde_json::to_string_pretty(&results)?;
    std::fs::write(&args.out, json + "\n").with_context(|| format!("write {}", args.out.display()))?;
    println!("results written to {}", args.out.display());
    if !results.failures.is_empty() {
        anyhow::bail!("{} step(s) failed: {}", results.failures.len(), results.failures.join("; "));
    }
    Ok(())
}

/// Returns the step's results, or prints its error, adds it to `failures` and returns None.
fn keep<T>(outcome: anyhow::Result<T>, step: &str, failures: &mut Vec<String>) -> Option<T> {
    match outcome {
        Ok(results) => Some(results),
        Err(error) => {
            eprintln!("error: {step} failed: {error:#}");
            failures.push(format!("{step}: {error:#}"));
            None
        }
    }
}
