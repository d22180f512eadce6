//! A steady load of ticket creates and transitions for the fault-injection tests. It
//! records every change a client got OK for and the status code of every failed call.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use docket_proto::ticket::v1::ticket_service_client::TicketServiceClient;
use docket_proto::ticket::v1::{Category, CreateTicketRequest, Resolution, Severity, Status, Ticket, TransitionTicketRequest};
use tonic::Code;

use crate::chaos::Change;
use crate::{AuthChannel, ticket_client};

/// The moves each ticket of the load goes through after its creation.
const LIFECYCLE: [Status; 4] = [Status::Acknowledged, Status::Investigating, Status::Contained, Status::Resolved];

/// Pause after a failed call, so a worker retries slowly instead of spinning while a
/// service or its database is down.
const PAUSE_AFTER_FAILURE: Duration = Duration::from_millis(50);

/// Outcome of a stopped load: the acknowledged changes and the failed calls.
#[derive(Debug, Default)]
pub struct LoadReport {
    /// Each change that a client got OK for.
    pub acknowledged: Vec<Change>,
    /// Failed calls by status code. A call that outlived the load's deadline counts as
    /// DEADLINE_EXCEEDED.
    pub failures: BTreeMap<String, usize>,
    /// Messages of failed calls, one per code and message, for the assertion output.
    pub failure_messages: BTreeMap<String, String>,
}

impl LoadReport {
    /// Returns the failure codes other than `allowed`, with one message each.
    pub fn unexpected_failures(&self, allowed: &[Code]) -> Vec<(String, String)> {
        let allowed: Vec<String> = allowed.iter().map(|code| format!("{code:?}")).collect();
        self.failure_messages
            .iter()
            .filter(|(code, _)| !allowed.contains(code))
            .map(|(code, message)| (code.clone(), message.clone()))
            .collect()
    }
}

/// Workers that create tickets and move each through [`LIFECYCLE`] until stopped.
pub struct Load {
    stop: Arc<AtomicBool>,
    acknowledged: Arc<AtomicUsize>,
    workers: Vec<tokio::task::JoinHandle<LoadReport>>,
}

impl Load {
    /// Starts `workers` workers. Each call goes to the next address of `targets` in turn,
    /// so with several ticket replicas one ticket's changes go through all of them. A call
    /// that takes longer than `deadline` is abandoned and counted as DEADLINE_EXCEEDED.
    ///
    /// The calls carry no `grpc-timeout` header: tonic 0.14 ends a call whose grpc-timeout
    /// expires with CANCELLED "Timeout expired", on the client and on the server, so the
    /// deadline is kept here instead.
    pub async fn start(targets: &[SocketAddr], workers: usize, deadline: Duration) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let acknowledged = Arc::new(AtomicUsize::new(0));
        let mut handles = Vec::new();
        for worker in 0..workers {
            let mut clients = Vec::new();
            for target in targets {
                clients.push(ticket_client(*target).await);
            }
            let worker = Worker { number: worker, clients, next_client: worker, deadline, report: LoadReport::default() };
            handles.push(tokio::spawn(worker.run(stop.clone(), acknowledged.clone())));
        }
        Load { stop, acknowledged, workers: handles }
    }

    /// Returns how many changes got OK so far.
    pub fn acknowledged(&self) -> usize {
        self.acknowledged.load(Ordering::Relaxed)
    }

    /// Waits until `more` further changes got OK, or `timeout` passes. Returns whether they did.
    pub async fn wait_for_progress(&self, more: usize, timeout: Duration) -> bool {
        let target = self.acknowledged() + more;
        crate::eventually(timeout, || async move { (self.acknowledged() >= target).then_some(()) }).await.is_some()
    }

    /// Stops every worker after its current call and returns their combined outcome.
    pub async fn stop(self) -> LoadReport {
        self.stop.store(true, Ordering::Relaxed);
        let mut report = LoadReport::default();
        for worker in self.workers {
            let part = worker.await.expect("a load worker does not panic");
            report.acknowledged.extend(part.acknowledged);
            for (code, count) in part.failures {
                *report.failures.entry(code).or_default() += count;
            }
            for (code, message) in part.failure_messages {
                report.failure_messages.entry(code).or_insert(message);
            }
        }
        report
    }
}

struct Worker {
    number: usize,
    clients: Vec<TicketServiceClient<AuthChannel>>,
    next_client: usize,
    deadline: Duration,
    report: LoadReport,
}

impl Worker {
    async fn run(mut self, stop: Arc<AtomicBool>, acknowledged: Arc<AtomicUsize>) -> LoadReport {
        let mut sequence = 0usize;
        'tickets: while !stop.load(Ordering::Relaxed) {
            sequence += 1;
            let request = create_request(self.number, sequence);
            let Some(created) = self.call(async |client| client.create_ticket(request).await).await else {
                tokio::time::sleep(PAUSE_AFTER_FAILURE).await;
                continue;
            };
            self.report.acknowledged.push(Change::of(&created));
            acknowledged.fetch_add(1, Ordering::Relaxed);

            // After a failed move the ticket's state is unknown (the change may have
            // committed), so the worker starts a new ticket rather than guess the next move.
            for to in LIFECYCLE {
                if stop.load(Ordering::Relaxed) {
                    break 'tickets;
                }
                let request = transition_request(&created.id, to, sequence);
                let Some(moved) = self.call(async |client| client.transition_ticket(request).await).await else {
                    tokio::time::sleep(PAUSE_AFTER_FAILURE).await;
                    continue 'tickets;
                };
                self.report.acknowledged.push(Change::of(&moved));
                acknowledged.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.report
    }

    /// Makes one call on the next client and returns its ticket, or records the failure.
    async fn call<F>(&mut self, call: F) -> Option<Ticket>
    where
        F: AsyncFnOnce(&mut TicketServiceClient<AuthChannel>) -> Result<tonic::Response<Ticket>, tonic::Status>,
    {
        let index = self.next_client % self.clients.len();
        self.next_client += 1;
        let client = &mut self.clients[index];
        let (code, message) = match tokio::time::timeout(self.deadline, call(client)).await {
            Ok(Ok(response)) => return Some(response.into_inner()),
            Ok(Err(status)) => (format!("{:?}", status.code()), status.message().to_owned()),
            Err(_) => (format!("{:?}", Code::DeadlineExceeded), format!("no response within {:?}", self.deadline)),
        };
        *self.report.failures.entry(code.clone()).or_default() += 1;
        self.report.failure_messages.entry(code).or_insert(message);
        None
    }
}

/// Builds a create request. Severity, team, detection and occurrence time vary with the
/// worker and the sequence number, so the metrics have several groups and non-zero durations.
fn create_request(worker: usize, sequence: usize) -> CreateTicketRequest {
    let severities = [Severity::Critical, Severity::High, Severity::Medium, Severity::Low];
    let detected_minutes_ago = u64::try_from((worker * 7 + sequence * 13) % 240).expect("a small number fits in u64");
    let detected_at = SystemTime::now() - Duration::from_secs(60 * detected_minutes_ago);
    let detected_at = detected_at.duration_since(UNIX_EPOCH).expect("the clock is after 1970").as_secs();
    CreateTicketRequest {
        request_id: format!("load-{}-{worker}-{sequence}", uuid::Uuid::new_v4().simple()),
        title: "Suspicious logins from a new country".to_owned(),
        severity: severities[(worker + sequence) % severities.len()] as i32,
        category: Category::UnauthorizedAccess as i32,
        team: if sequence.is_multiple_of(2) { "soc" } else { "cert" }.to_owned(),
        detection_source: "siem".to_owned(),
        detected_at: Some(timestamp(detected_at)),
        occurred_at: sequence.is_multiple_of(2).then(|| timestamp(detected_at - 60 * u64::try_from(worker % 5 + 1).expect("a small number fits in u64"))),
        ..Default::default()
    }
}

fn timestamp(seconds_since_1970: u64) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds: i64::try_from(seconds_since_1970).expect("seconds since 1970 fit in i64"), nanos: 0 }
}

/// Builds a move to `to`. Every third ticket is resolved as a false positive, so the
/// metrics have more than one population.
fn transition_request(ticket: &str, to: Status, sequence: usize) -> TransitionTicketRequest {
    let resolution = match to {
        Status::Resolved if sequence.is_multiple_of(3) => Resolution::FalsePositive,
        Status::Resolved => Resolution::TruePositive,
        _ => Resolution::Unspecified,
    };
    TransitionTicketRequest { ticket: ticket.to_owned(), to_status: to as i32, resolution: resolution as i32, ..Default::default() }
}

/// Reads a whole number from the environment variable `name`, or returns `default` when it
/// is unset. The fault-injection tests take their durations and counts this way, so
/// `make chaos` can run them longer than `make test` does.
pub fn env_number(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(text) => text.trim().parse().unwrap_or_else(|_| panic!("invalid {name}={text:?}: write a whole number such as {default}")),
        Err(_) => default,
    }
}

/// Reads a duration in whole seconds from `name`, as [`env_number`] does.
pub fn env_seconds(name: &str, default: u64) -> Duration {
    Duration::from_secs(env_number(name, default))
}
