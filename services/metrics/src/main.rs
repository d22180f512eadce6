use docket_metrics::{Service, Settings};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings: Settings = docket_server::settings::parse_or_exit();
    let telemetry = docket_telemetry::init("docket-metrics", settings.common.log_format)?;

    let verifier = settings.common.auth.verifier_or_exit();
    docket_server::auth::reload_on_sighup(verifier.clone());
    let service = Service::prepare_with_verifier(settings, verifier).await?;
    let served = service.serve(docket_server::shutdown::signal()).await;
    telemetry.shutdown().await;
    served?;
    Ok(())
}
