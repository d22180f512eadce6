//! Interoperability with a gRPC client the project did not write: Python's grpcio, from
//! the virtual environment that `make python-env` (a step of `make test`) installs.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use docket_auth::Role;
use docket_tests::{Suite, user_token};

fn python() -> PathBuf {
    let venv = docket_tests::data_path("../target/python-venv/bin/python");
    assert!(
        venv.exists(),
        "{} is missing; run `make python-env` (or `make test`, which runs it) to install grpcio",
        venv.display()
    );
    venv
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcio_client_checks_health_reflection_and_tickets() {
    let python = python();
    let script = docket_tests::data_path("../tests/interop/grpc_client.py");
    let suite = Suite::start().await;
    let token = user_token("interop", &[Role::Analyst]);
    let addr = suite.ticket.addr.to_string();

    let output = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::task::spawn_blocking(move || {
            Command::new(python)
                .arg(script)
                .args(["--addr", &addr, "--token", &token])
                .output()
                .expect("the Python interpreter starts")
        }),
    )
    .await
    .expect("the Python client finishes within 60 s")
    .expect("the client thread does not panic");

    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    assert!(output.status.success(), "grpc_client.py failed: {stdout}\n{stderr}");
    assert!(stdout.contains("reflection lists"), "{stdout}");
    assert!(stdout.contains("docket.ticket.v1.TicketService"), "{stdout}");
    assert!(stdout.contains("grpc.health.v1.Health"), "{stdout}");
    assert!(!stdout.contains("docket.audit.v1.AuditService"), "the ticket service lists a service it does not serve: {stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcio_client_without_token_is_unauthenticated() {
    let python = python();
    let script = docket_tests::data_path("../tests/interop/grpc_client.py");
    let suite = Suite::start().await;
    let addr = suite.ticket.addr.to_string();

    let output = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .arg(script)
            .args(["--addr", &addr])
            .output()
            .expect("the Python interpreter starts")
    })
    .await
    .expect("the client thread does not panic");

    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "a call without a token must fail: {stdout}");
    assert!(stderr.contains("FAIL CreateTicket: UNAUTHENTICATED"), "{stderr}");
}
