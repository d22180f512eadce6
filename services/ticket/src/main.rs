use docket_ticket::{Error, Service, Settings};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings: Settings = docket_server::settings::parse_or_exit();
    let telemetry = docket_telemetry::init("docket-ticket", settings.common.log_format)?;

    let verifier = settings.common.auth.verifier_or_exit();
    docket_server::auth::reload_on_sighup(verifier.clone());
    let service = match Service::prepare_with_verifier(settings, verifier).await {
        Err(error @ Error::Config { .. }) => {
            eprintln!("error: {error}");
            std::process::exit(docket_server::EXIT_CONFIG);
        }
        prepared => prepared?,
    };
    let served = service.serve(docket_server::shutdown::signal()).await;
    telemetry.shutdown().await;
    served?;
    Ok(())
}
