//! `docket`: exit code 0 on success, 1 when `audit verify` finds the ledger not intact,
//! 2 for invalid arguments and 3 when a call or the input fails.

use std::process::ExitCode;

use clap::Parser;
use docket_cli::args::Cli;
use docket_cli::commands::{self, Outcome};
use docket_cli::error::{Error, code_name};
use tonic_types::StatusExt;

const EXIT_NOT_INTACT: u8 = 1;
const EXIT_FAILED: u8 = 3;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(Outcome::Success) => ExitCode::SUCCESS,
        Ok(Outcome::LedgerNotIntact) => ExitCode::from(EXIT_NOT_INTACT),
        Err(error) => {
            report(&error);
            ExitCode::from(EXIT_FAILED)
        }
    }
}

/// Prints the error, the field violations a server attached to it, and for a stopped import
/// the counts up to then.
fn report(error: &Error) {
    eprintln!("error: {error}");
    if let Some(status) = error.status() {
        if let Some(bad_request) = status.get_details_bad_request() {
            // Services usually repeat the violations in the message; print only what it lacks.
            for violation in bad_request.field_violations {
                if !status.message().contains(&violation.description) {
                    eprintln!("  {}: {}", violation.field, violation.description);
                }
            }
        }
        if status.code() == tonic::Code::Unauthenticated {
            eprintln!("  (set --token or DOCKET_TOKEN; `docket token mint --sub NAME --role ROLE` makes a development token)");
        }
        if status.code() == tonic::Code::Unavailable {
            eprintln!("  ({} means the service is not reachable or not ready; try again)", code_name(status.code()));
        }
    }
    if let Error::ImportBatch { summary, .. } = error {
        eprintln!("{}", commands::summary_text(summary));
        eprintln!("running the same import again continues safely: records imported before are skipped");
    }
}
