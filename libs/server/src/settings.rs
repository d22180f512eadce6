//! Settings every service shares. Each is a flag with a `DOCKET_*` environment variable.

use std::net::SocketAddr;
use std::time::Duration;

use clap::builder::RangedU64ValueParser;
use clap::Args;

use crate::grpc;

/// Exit code for a bad setting, as in BSD's sysexits.h (EX_USAGE).
pub const EXIT_CONFIG: i32 = 64;

pub use docket_telemetry::LogFormat;

/// Settings shared by the ticket, audit and metrics services.
#[derive(Clone, Debug, Args)]
pub struct CommonSettings {
    /// Address the gRPC server listens on.
    #[arg(long, env = "DOCKET_LISTEN_ADDR")]
    pub listen_addr: Option<SocketAddr>,

    /// Address of the HTTP endpoint that serves Prometheus metrics at /metrics. Defaults to
    /// 127.0.0.1 with port 9101 (ticket), 9102 (audit) or 9103 (metrics).
    #[arg(long, env = "DOCKET_PROMETHEUS_LISTEN_ADDR", value_name = "ADDR")]
    pub prometheus_listen_addr: Option<SocketAddr>,

    /// PostgreSQL URL of this service's own database, for example
    /// postgres://postgres@127.0.0.1:5432/docket_ticket. The database is created when missing.
    #[arg(long, env = "DOCKET_DATABASE_URL", value_parser = parse_database_url)]
    pub database_url: String,

    /// Upper bound on open database connections.
    #[arg(long, env = "DOCKET_DB_MAX_CONNECTIONS", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub db_max_connections: u32,

    /// How long a request waits for a free database connection, from 1ms to 5m, for example 5s.
    #[arg(long, env = "DOCKET_DB_ACQUIRE_TIMEOUT", default_value = "5s",
          value_parser = duration_between(Duration::from_millis(1), Duration::from_secs(300)))]
    pub db_acquire_timeout: Duration,

    /// Log line format.
    #[arg(long, env = "DOCKET_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// How long in-flight calls may run after SIGTERM or SIGINT before the process exits, up to 1h.
    #[arg(long, env = "DOCKET_SHUTDOWN_GRACE", default_value = "20s",
          value_parser = duration_between(Duration::ZERO, Duration::from_secs(3600)))]
    pub shutdown_grace: Duration,

    #[command(flatten)]
    pub grpc: GrpcLimits,

    #[command(flatten)]
    pub auth: crate::auth::AuthSettings,
}

impl CommonSettings {
    pub fn pool_options(&self) -> docket_db::PoolOptions {
        docket_db::PoolOptions {
            max_connections: self.db_max_connections,
            acquire_timeout: self.db_acquire_timeout,
            session_role: None,
        }
    }
}

/// HTTP/2, TCP and message-size limits of the gRPC server. The defaults are the constants in
/// [`crate::grpc`], and docs/operations.md explains each choice and what tonic does without it.
#[derive(Clone, Debug, Args)]
pub struct GrpcLimits {
    /// Maximum number of concurrent HTTP/2 streams a client may open on one connection
    /// (SETTINGS_MAX_CONCURRENT_STREAMS).
    #[arg(long = "grpc-max-concurrent-streams", value_name = "COUNT", env = "DOCKET_GRPC_MAX_CONCURRENT_STREAMS",
        default_value_t = grpc::MAX_CONCURRENT_STREAMS, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub max_concurrent_streams: u32,

    /// Maximum number of requests one connection may have in its handlers at once. Further
    /// requests wait.
    #[arg(long = "grpc-concurrency-limit-per-connection", value_name = "COUNT", env = "DOCKET_GRPC_CONCURRENCY_LIMIT_PER_CONNECTION",
        default_value_t = grpc::CONCURRENCY_LIMIT_PER_CONNECTION,
        value_parser = RangedU64ValueParser::<usize>::new().range(1..=10_000))]
    pub concurrency_limit_per_connection: usize,

    /// Time a handler may take to return its response, for example 30s. A shorter
    /// grpc-timeout sent by the client wins.
    #[arg(long = "grpc-request-timeout", value_name = "DURATION", env = "DOCKET_GRPC_REQUEST_TIMEOUT", default_value = "30s",
        value_parser = duration_between(Duration::from_millis(100), Duration::from_secs(3600)))]
    pub request_timeout: Duration,

    /// Interval between HTTP/2 PING frames the server sends to check that a connection is alive.
    #[arg(long = "grpc-http2-keepalive-interval", value_name = "DURATION", env = "DOCKET_GRPC_HTTP2_KEEPALIVE_INTERVAL", default_value = "30s",
        value_parser = duration_between(Duration::from_secs(1), Duration::from_secs(3600)))]
    pub http2_keepalive_interval: Duration,

    /// Time to wait for the PING acknowledgement before the connection is closed.
    #[arg(long = "grpc-http2-keepalive-timeout", value_name = "DURATION", env = "DOCKET_GRPC_HTTP2_KEEPALIVE_TIMEOUT", default_value = "10s",
        value_parser = duration_between(Duration::from_secs(1), Duration::from_secs(300)))]
    pub http2_keepalive_timeout: Duration,

    /// Maximum size of a request's header list in bytes, counted as HTTP/2 counts it
    /// (SETTINGS_MAX_HEADER_LIST_SIZE): names, values and 32 bytes per entry.
    #[arg(long = "grpc-max-header-list-size", value_name = "BYTES", env = "DOCKET_GRPC_MAX_HEADER_LIST_SIZE",
        default_value_t = grpc::MAX_HEADER_LIST_SIZE, value_parser = clap::value_parser!(u32).range(4096..=1_048_576))]
    pub max_header_list_size: u32,

    /// Maximum number of streams the client reset before the server accepted them. Above it the
    /// connection is closed with GOAWAY ENHANCE_YOUR_CALM.
    #[arg(long = "grpc-max-pending-accept-reset-streams", value_name = "COUNT", env = "DOCKET_GRPC_MAX_PENDING_ACCEPT_RESET_STREAMS",
        default_value_t = grpc::MAX_PENDING_ACCEPT_RESET_STREAMS,
        value_parser = RangedU64ValueParser::<usize>::new().range(1..=10_000))]
    pub max_pending_accept_reset_streams: usize,

    /// Maximum number of streams the server resets because the client broke the protocol. Above
    /// it the connection is closed with GOAWAY ENHANCE_YOUR_CALM.
    #[arg(long = "grpc-max-local-error-reset-streams", value_name = "COUNT", env = "DOCKET_GRPC_MAX_LOCAL_ERROR_RESET_STREAMS",
        default_value_t = grpc::MAX_LOCAL_ERROR_RESET_STREAMS,
        value_parser = RangedU64ValueParser::<usize>::new().range(1..=100_000))]
    pub max_local_error_reset_streams: usize,

    /// Largest request message a service decodes, in bytes. A larger one fails with
    /// RESOURCE_EXHAUSTED as soon as its header arrives.
    #[arg(long = "grpc-max-decoding-message-size", value_name = "BYTES", env = "DOCKET_GRPC_MAX_DECODING_MESSAGE_SIZE",
        default_value_t = grpc::MAX_DECODING_MESSAGE_SIZE,
        value_parser = RangedU64ValueParser::<usize>::new().range(MESSAGE_SIZE_RANGE))]
    pub max_decoding_message_size: usize,

    /// Maximum number of bytes that request messages over 64 KiB may declare while they are
    /// still arriving, in all connections together. A message that does not fit fails with
    /// RESOURCE_EXHAUSTED, so set it to at least --grpc-max-decoding-message-size.
    #[arg(long = "grpc-max-buffered-request-bytes", value_name = "BYTES", env = "DOCKET_GRPC_MAX_BUFFERED_REQUEST_BYTES",
        default_value_t = grpc::MAX_BUFFERED_REQUEST_BYTES,
        value_parser = RangedU64ValueParser::<usize>::new().range(BUFFERED_BYTES_RANGE))]
    pub max_buffered_request_bytes: usize,

    /// Largest response message a service encodes, in bytes. Tonic 0.14 fails the call with
    /// OUT_OF_RANGE instead of sending a larger one.
    #[arg(long = "grpc-max-encoding-message-size", value_name = "BYTES", env = "DOCKET_GRPC_MAX_ENCODING_MESSAGE_SIZE",
        default_value_t = grpc::MAX_ENCODING_MESSAGE_SIZE,
        value_parser = RangedU64ValueParser::<usize>::new().range(MESSAGE_SIZE_RANGE))]
    pub max_encoding_message_size: usize,

    /// Idle time before TCP keepalive probes start on accepted connections, for example 60s.
    /// 0s turns TCP keepalive off.
    #[arg(long = "grpc-tcp-keepalive", value_name = "DURATION", env = "DOCKET_GRPC_TCP_KEEPALIVE", default_value = "0s",
        value_parser = zero_or_duration_between(Duration::from_secs(10), Duration::from_secs(7200)))]
    pub tcp_keepalive: Duration,
}

/// Message sizes accepted for the decoding and encoding limits: 1 KiB to 256 MiB.
const MESSAGE_SIZE_RANGE: std::ops::RangeInclusive<u64> = 1024..=256 * 1024 * 1024;

/// Values accepted for the buffered request bytes: 1 KiB to 16 GiB.
const BUFFERED_BYTES_RANGE: std::ops::RangeInclusive<u64> = 1024..=16 * 1024 * 1024 * 1024;

impl GrpcLimits {
    /// Returns the TCP keepalive idle time, or `None` when TCP keepalive is off.
    pub fn tcp_keepalive(&self) -> Option<Duration> {
        (!self.tcp_keepalive.is_zero()).then_some(self.tcp_keepalive)
    }
}

impl Default for GrpcLimits {
    /// Returns the same values as the flag defaults.
    fn default() -> Self {
        GrpcLimits {
            max_concurrent_streams: grpc::MAX_CONCURRENT_STREAMS,
            concurrency_limit_per_connection: grpc::CONCURRENCY_LIMIT_PER_CONNECTION,
            request_timeout: grpc::REQUEST_TIMEOUT,
            http2_keepalive_interval: grpc::HTTP2_KEEPALIVE_INTERVAL,
            http2_keepalive_timeout: grpc::HTTP2_KEEPALIVE_TIMEOUT,
            max_header_list_size: grpc::MAX_HEADER_LIST_SIZE,
            max_pending_accept_reset_streams: grpc::MAX_PENDING_ACCEPT_RESET_STREAMS,
            max_local_error_reset_streams: grpc::MAX_LOCAL_ERROR_RESET_STREAMS,
            max_decoding_message_size: grpc::MAX_DECODING_MESSAGE_SIZE,
            max_buffered_request_bytes: grpc::MAX_BUFFERED_REQUEST_BYTES,
            max_encoding_message_size: grpc::MAX_ENCODING_MESSAGE_SIZE,
            tcp_keepalive: Duration::ZERO,
        }
    }
}

/// Builds a value parser for a duration between `min` and `max`, both included.
pub fn duration_between(min: Duration, max: Duration) -> impl Fn(&str) -> Result<Duration, String> + Clone + Send + Sync + 'static {
    move |text| {
        let duration = parse_duration(text)?;
        if duration < min || duration > max {
            return Err(format!(
                "duration {text:?} is out of range: write a value from {} to {}",
                format_duration(min),
                format_duration(max)
            ));
        }
        Ok(duration)
    }
}

/// Builds a value parser like [`duration_between`] that also accepts zero, which turns the
/// setting off.
pub fn zero_or_duration_between(
    min: Duration,
    max: Duration,
) -> impl Fn(&str) -> Result<Duration, String> + Clone + Send + Sync + 'static {
    move |text| {
        let duration = parse_duration(text)?;
        if !duration.is_zero() && (duration < min || duration > max) {
            return Err(format!(
                "duration {text:?} is out of range: write 0s for off or a value from {} to {}",
                format_duration(min),
                format_duration(max)
            ));
        }
        Ok(duration)
    }
}

/// Formats a duration in the largest unit [`parse_duration`] reads back exactly.
fn format_duration(duration: Duration) -> String {
    let millis = duration.as_millis();
    if millis > 0 && millis.is_multiple_of(3_600_000) {
        format!("{}h", millis / 3_600_000)
    } else if millis > 0 && millis.is_multiple_of(60_000) {
        format!("{}m", millis / 60_000)
    } else if millis.is_multiple_of(1000) {
        format!("{}s", millis / 1000)
    } else {
        format!("{millis}ms")
    }
}

/// Returns the exit code for a failed settings parse: 0 for `--help` and `--version`, whose
/// text goes to stdout, and [`EXIT_CONFIG`] for every invalid, missing or unknown setting.
pub fn exit_code(error: &clap::Error) -> i32 {
    if error.use_stderr() { EXIT_CONFIG } else { 0 }
}

/// Parses the process arguments and `DOCKET_*` variables into `P`. On failure it prints
/// clap's message, which names the flag and the rejected value, and exits with
/// [`exit_code`].
pub fn parse_or_exit<P: clap::Parser>() -> P {
    P::try_parse().unwrap_or_else(|error| {
        let _ = error.print();
        std::process::exit(exit_code(&error));
    })
}

/// Checks a PostgreSQL URL: scheme `postgres` or `postgresql`, a host, and a database name of
/// letters, digits and underscores, which is the form the services can create when missing.
pub fn parse_database_url(text: &str) -> Result<String, String> {
    let parsed = url::Url::parse(text)
        .map_err(|error| format!("invalid database URL: {error}; write postgres://USER@HOST:PORT/DATABASE"))?;
    if !matches!(parsed.scheme(), "postgres" | "postgresql") {
        return Err(format!(
            "invalid database URL scheme {:?}; write postgres://USER@HOST:PORT/DATABASE",
            parsed.scheme()
        ));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err("invalid database URL: the host is missing; write postgres://USER@HOST:PORT/DATABASE".into());
    }
    let name = parsed.path().trim_start_matches('/');
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!(
            "invalid database name {name:?} in the database URL; use letters, digits and underscores"
        ));
    }
    Ok(text.to_owned())
}

/// Parses a duration written as a number and a unit: `250ms`, `5s`, `2m` or `1h`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("invalid duration {text:?}: write a whole number and a unit, for example 5s"))?;
    let duration = match unit {
        "ms" => Duration::from_millis(number),
        "s" => Duration::from_secs(number),
        "m" => Duration::from_secs(number.checked_mul(60).ok_or_else(|| too_long(text))?),
        "h" => Duration::from_secs(number.checked_mul(3600).ok_or_else(|| too_long(text))?),
        _ => return Err(format!("invalid duration {text:?}: the unit must be ms, s, m or h")),
    };
    Ok(duration)
}

fn too_long(text: &str) -> String {
    format!("invalid duration {text:?}: the value is too large, write a smaller number")
}

#[cfg(test)]
mod tests {
    use clap::error::ErrorKind;
    use clap::{CommandFactory, Parser};

    use super::*;

    /// The smallest binary settings: what each service's `Settings` flattens.
    #[derive(Debug, Parser)]
    struct TestSettings {
        #[command(flatten)]
        common: CommonSettings,
    }

    fn parse(extra: &[&str]) -> Result<TestSettings, clap::Error> {
        let mut args = vec!["docket-test", "--database-url", "postgres://postgres@127.0.0.1:5432/docket_settings"];
        args.extend_from_slice(extra);
        TestSettings::try_parse_from(args)
    }

    #[test]
    fn grpc_limits_default_to_the_grpc_constants() {
        let parsed = parse(&[]).expect("defaults parse").common.grpc;
        let expected = GrpcLimits::default();
        assert_eq!(parsed.max_concurrent_streams, expected.max_concurrent_streams);
        assert_eq!(parsed.concurrency_limit_per_connection, expected.concurrency_limit_per_connection);
        assert_eq!(parsed.request_timeout, expected.request_timeout);
        assert_eq!(parsed.http2_keepalive_interval, expected.http2_keepalive_interval);
        assert_eq!(parsed.http2_keepalive_timeout, expected.http2_keepalive_timeout);
        assert_eq!(parsed.max_header_list_size, expected.max_header_list_size);
        assert_eq!(parsed.max_pending_accept_reset_streams, expected.max_pending_accept_reset_streams);
        assert_eq!(parsed.max_local_error_reset_streams, expected.max_local_error_reset_streams);
        assert_eq!(parsed.max_decoding_message_size, grpc::MAX_DECODING_MESSAGE_SIZE);
        assert_eq!(parsed.max_buffered_request_bytes, expected.max_buffered_request_bytes);
        assert_eq!(parsed.max_encoding_message_size, grpc::MAX_ENCODING_MESSAGE_SIZE);
        assert_eq!(parsed.tcp_keepalive(), None);
    }

    #[test]
    fn grpc_limits_read_each_flag() {
        let parsed = parse(&[
            "--grpc-max-concurrent-streams=100",
            "--grpc-concurrency-limit-per-connection=64",
            "--grpc-request-timeout=5s",
            "--grpc-http2-keepalive-interval=1m",
            "--grpc-http2-keepalive-timeout=20s",
            "--grpc-max-header-list-size=32768",
            "--grpc-max-pending-accept-reset-streams=10",
            "--grpc-max-local-error-reset-streams=100",
            "--grpc-max-decoding-message-size=1048576",
            "--grpc-max-buffered-request-bytes=4194304",
            "--grpc-max-encoding-message-size=2097152",
            "--grpc-tcp-keepalive=2m",
        ])
        .expect("valid values parse")
        .common
        .grpc;
        assert_eq!(parsed.max_concurrent_streams, 100);
        assert_eq!(parsed.concurrency_limit_per_connection, 64);
        assert_eq!(parsed.request_timeout, Duration::from_secs(5));
        assert_eq!(parsed.http2_keepalive_interval, Duration::from_secs(60));
        assert_eq!(parsed.http2_keepalive_timeout, Duration::from_secs(20));
        assert_eq!(parsed.max_header_list_size, 32768);
        assert_eq!(parsed.max_pending_accept_reset_streams, 10);
        assert_eq!(parsed.max_local_error_reset_streams, 100);
        assert_eq!(parsed.max_decoding_message_size, 1_048_576);
        assert_eq!(parsed.max_buffered_request_bytes, 4_194_304);
        assert_eq!(parsed.max_encoding_message_size, 2_097_152);
        assert_eq!(parsed.tcp_keepalive(), Some(Duration::from_secs(120)));
    }

    #[test]
    fn database_acquire_timeout_of_zero_is_rejected() {
        let error = parse(&["--db-acquire-timeout", "0s"]).expect_err("0s must be rejected");
        assert_eq!(exit_code(&error), EXIT_CONFIG);
        assert!(error.to_string().contains("--db-acquire-timeout"), "{error}");
    }

    #[test]
    fn grpc_limit_out_of_range_is_rejected() {
        let cases = [
            ("--grpc-max-concurrent-streams", "0"),
            ("--grpc-max-concurrent-streams", "10001"),
            ("--grpc-concurrency-limit-per-connection", "0"),
            ("--grpc-request-timeout", "50ms"),
            ("--grpc-request-timeout", "2h"),
            ("--grpc-request-timeout", "30"),
            ("--grpc-http2-keepalive-interval", "0s"),
            ("--grpc-http2-keepalive-timeout", "10m"),
            ("--grpc-max-header-list-size", "1024"),
            ("--grpc-max-header-list-size", "-1"),
            ("--grpc-max-pending-accept-reset-streams", "0"),
            ("--grpc-max-local-error-reset-streams", "0"),
            ("--grpc-max-decoding-message-size", "100"),
            ("--grpc-max-decoding-message-size", "1GiB"),
            ("--grpc-max-encoding-message-size", "268435457"),
            ("--grpc-tcp-keepalive", "1s"),
            ("--grpc-tcp-keepalive", "3h"),
        ];
        for (flag, value) in cases {
            let argument = format!("{flag}={value}");
            let error = parse(&[&argument]).expect_err(&format!("{argument} must be rejected"));
            assert_eq!(error.kind(), ErrorKind::ValueValidation, "{flag} {value}");
            assert!(error.to_string().contains(flag), "message does not name {flag}: {error}");
            assert_eq!(exit_code(&error), EXIT_CONFIG, "{flag} {value}");
        }
    }

    #[test]
    fn help_exits_with_code_0() {
        let error = parse(&["--help"]).expect_err("--help stops parsing");
        assert_eq!(exit_code(&error), 0);
    }

    #[test]
    fn invalid_database_urls_exit_with_code_64() {
        for bad in [
            "postgres://postgres@127.0.0.1:5432/",
            "mysql://root@127.0.0.1/docket",
            "postgres://postgres@127.0.0.1:5432/bad;name",
            "not a url",
        ] {
            let error = TestSettings::try_parse_from(["docket-test", "--database-url", bad])
                .expect_err("an invalid database URL must be rejected");
            assert_eq!(exit_code(&error), EXIT_CONFIG, "{bad}");
            assert!(error.to_string().contains("--database-url"), "{error}");
        }
    }

    #[test]
    fn missing_database_url_exits_with_code_64() {
        let error = TestSettings::try_parse_from(["docket-test"]).expect_err("database url is required");
        assert_eq!(error.kind(), ErrorKind::MissingRequiredArgument);
        assert_eq!(exit_code(&error), EXIT_CONFIG);
    }

    #[test]
    fn every_setting_has_a_docket_env_var() {
        let command = TestSettings::command();
        for arg in command.get_arguments().filter(|arg| arg.get_long().is_some_and(|long| long != "help")) {
            let long = arg.get_long().unwrap_or_default();
            let expected = format!("DOCKET_{}", long.to_uppercase().replace('-', "_"));
            let env = arg.get_env().map(|name| name.to_string_lossy().into_owned());
            assert_eq!(env.as_deref(), Some(expected.as_str()), "--{long}");
        }
    }

    #[test]
    fn duration_between_includes_both_bounds() {
        let parser = duration_between(Duration::from_secs(1), Duration::from_secs(60));
        assert_eq!(parser("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(parser("1m"), Ok(Duration::from_secs(60)));
        assert!(parser("999ms").is_err());
        assert!(parser("61s").is_err());
    }

    #[test]
    fn duration_between_names_the_range() {
        let parser = duration_between(Duration::from_millis(100), Duration::from_secs(3600));
        let message = parser("50ms").expect_err("below the minimum");
        assert!(message.contains("from 100ms to 1h"), "{message}");
    }

    #[test]
    fn zero_or_duration_between_accepts_zero_as_off() {
        let parser = zero_or_duration_between(Duration::from_secs(10), Duration::from_secs(7200));
        assert_eq!(parser("0s"), Ok(Duration::ZERO));
        assert_eq!(parser("0ms"), Ok(Duration::ZERO));
        assert_eq!(parser("10s"), Ok(Duration::from_secs(10)));
        assert!(parser("9s").is_err());
        assert!(parser("121m").is_err());
    }

    #[test]
    fn parse_duration_rejects_overflowing_hours() {
        assert!(parse_duration("18446744073709551615h").is_err());
        assert!(parse_duration("18446744073709551615m").is_err());
    }

    #[test]
    fn parse_duration_accepts_each_unit() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
    }

    #[test]
    fn parse_duration_rejects_missing_unit() {
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("5 days").is_err());
    }
}
