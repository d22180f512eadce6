//! The commands of `docket`: each turns its arguments into calls and prints the result.

mod audit;
mod import;
pub use import::summary_text;
mod metrics;
mod ticket;
mod token;

use std::time::Duration;

use crate::args::{Cli, Command, Global};
use crate::client::{self, Target, TokenInterceptor};
use crate::error::Error;

/// Result of a command that ran to the end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// `audit verify` found a record that fails verification.
    LedgerNotIntact,
}

/// Settings shared by every command.
pub struct Context {
    pub global: Global,
    pub token: TokenInterceptor,
}

impl Context {
    fn timeout(&self) -> Duration {
        Duration::from_secs(self.global.timeout)
    }

    async fn ticket_client(&self) -> Result<client::TicketClient, Error> {
        let target = Target {
            service: "ticket",
            flag: "--ticket-addr",
            addr: self.global.ticket_addr.clone(),
        };
        client::ticket_client(&target, &self.token, self.timeout()).await
    }

    async fn audit_client(&self) -> Result<client::AuditClient, Error> {
        let target = Target {
            service: "audit",
            flag: "--audit-addr",
            addr: self.global.audit_addr.clone(),
        };
        client::audit_client(&target, &self.token, self.timeout()).await
    }

    async fn metrics_client(&self) -> Result<client::MetricsClient, Error> {
        let target = Target {
            service: "metrics",
            flag: "--metrics-addr",
            addr: self.global.metrics_addr.clone(),
        };
        client::metrics_client(&target, &self.token, self.timeout()).await
    }
}

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> Result<Outcome, Error> {
    let context = Context {
        token: TokenInterceptor::new(cli.global.token.as_deref())?,
        global: cli.global,
    };
    match cli.command {
        Command::Ticket(command) => ticket::run(&context, command).await,
        Command::Audit(command) => audit::run(&context, command).await,
        Command::Metrics(command) => metrics::run(&context, command).await,
        Command::Import(command) => import::run(&context, command).await,
        Command::Token(command) => token::run(command),
    }
}

/// Wraps a failed call's status with the name of the RPC.
fn rpc_error(rpc: &'static str) -> impl FnOnce(tonic::Status) -> Error {
    move |status| Error::Rpc { rpc, status }
}

/// Page size for a listing that stops after `limit` items (0: no limit).
fn page_size(limit: usize, collected: usize) -> i32 {
    const MAX_PAGE: usize = 1000;
    if limit == 0 { MAX_PAGE as i32 } else { (limit - collected).min(MAX_PAGE) as i32 }
}
