use std::io::IsTerminal;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Log line format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// The installed tracer provider; [`Telemetry::shutdown`] flushes spans still buffered.
pub struct Telemetry {
    provider: SdkTracerProvider,
    exporting: bool,
}

impl Telemetry {
    /// Returns whether spans are exported over OTLP.
    pub fn exporting(&self) -> bool {
        self.exporting
    }

    /// Exports the spans buffered so far.
    ///
    /// The batch processor blocks its caller until the export ends, and the export needs the
    /// Tokio workers, so the wait happens on a blocking thread.
    pub async fn flush(&self) {
        let provider = self.provider.clone();
        match tokio::task::spawn_blocking(move || provider.force_flush()).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::warn!(%error, "flushing spans failed"),
            Err(error) => tracing::warn!(%error, "flushing spans panicked"),
        }
    }

    /// Flushes buffered spans and stops the exporter. Call once, on the way out.
    pub async fn shutdown(self) {
        self.flush().await;
        let provider = self.provider;
        match tokio::task::spawn_blocking(move || provider.shutdown()).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::warn!(%error, "stopping the span exporter failed"),
            Err(error) => tracing::warn!(%error, "stopping the span exporter panicked"),
        }
    }
}

/// Returns whether the OTEL_* variables request an OTLP exporter: an endpoint is set and the SDK
/// is not disabled with OTEL_SDK_DISABLED=true.
fn otlp_requested() -> bool {
    let disabled = std::env::var("OTEL_SDK_DISABLED").is_ok_and(|value| value.trim().eq_ignore_ascii_case("true"));
    let endpoint = ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"]
        .iter()
        .any(|name| std::env::var(name).is_ok_and(|value| !value.trim().is_empty()));
    endpoint && !disabled
}

/// Installs the global subscriber and tracer provider.
///
/// `service_name` is used when OTEL_SERVICE_NAME is unset; OTEL_RESOURCE_ATTRIBUTES adds
/// resource attributes. Log lines are filtered by RUST_LOG (default `info`). Must be called
/// inside a Tokio runtime because the OTLP exporter runs on it.
pub fn init(service_name: &'static str, format: LogFormat) -> Result<Telemetry, opentelemetry_otlp::ExporterBuildError> {
    let resource = Resource::builder().with_service_name(service_name).build();
    let resource = match std::env::var("OTEL_SERVICE_NAME") {
        Ok(name) if !name.trim().is_empty() => Resource::builder().with_service_name(name).build(),
        _ => resource,
    };

    let exporting = otlp_requested();
    let mut builder = SdkTracerProvider::builder().with_resource(resource);
    if exporting {
        let exporter = opentelemetry_otlp::SpanExporter::builder().with_tonic().build()?;
        builder = builder.with_batch_exporter(exporter);
    }
    let provider = builder.build();
    let tracer = provider.tracer(service_name);
    opentelemetry::global::set_text_map_propagator(opentelemetry_sdk::propagation::TraceContextPropagator::new());
    opentelemetry::global::set_tracer_provider(provider.clone());

    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let otel = tracing_opentelemetry::layer().with_tracer(tracer);
    let registry = tracing_subscriber::registry().with(filter).with(otel);
    // A second call, as in tests that start several services in one process, keeps the
    // first subscriber.
    let _ = match format {
        LogFormat::Text => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_target(false)
                    .with_ansi(std::io::stdout().is_terminal()),
            )
            .try_init(),
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(false)
                    .with_target(false),
            )
            .try_init(),
    };
    Ok(Telemetry { provider, exporting })
}
