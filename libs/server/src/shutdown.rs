//! Shutdown on SIGTERM or SIGINT.

/// Completes on the first SIGTERM or SIGINT. A second signal ends the process at once.
pub async fn signal() {
    wait_for_signal().await;
    tracing::info!("shutdown signal received, draining");
    tokio::spawn(async {
        wait_for_signal().await;
        tracing::warn!("second shutdown signal received, exiting now");
        std::process::exit(130);
    });
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};

    let mut terminate = signal(SignalKind::terminate()).expect("installing a SIGTERM handler succeeds on Unix");
    let mut interrupt = signal(SignalKind::interrupt()).expect("installing a SIGINT handler succeeds on Unix");
    tokio::select! {
        _ = terminate.recv() => {}
        _ = interrupt.recv() => {}
    }
}
