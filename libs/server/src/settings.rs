//! Settings every service shares. Each is a flag with a `DOCKET_*` environment variable.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, ValueEnum};

/// Exit code for a bad setting, as in BSD's sysexits.h (EX_USAGE).
pub const EXIT_CONFIG: i32 = 64;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Settings shared by the ticket, audit and metrics services.
#[derive(Clone, Debug, Args)]
pub struct CommonSettings {
    /// Address the gRPC server listens on.
    #[arg(long, env = "DOCKET_LISTEN_ADDR")]
    pub listen_addr: Option<SocketAddr>,

    /// PostgreSQL URL of this service's own database, for example
    /// postgres://postgres@127.0.0.1:5432/docket_ticket. The database is created when missing.
    #[arg(long, env = "DOCKET_DATABASE_URL")]
    pub database_url: String,

    /// Upper bound on open database connections.
    #[arg(long, env = "DOCKET_DB_MAX_CONNECTIONS", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub db_max_connections: u32,

    /// How long a request waits for a free database connection, for example 5s.
    #[arg(long, env = "DOCKET_DB_ACQUIRE_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub db_acquire_timeout: Duration,

    /// Log line format.
    #[arg(long, env = "DOCKET_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// How long in-flight calls may run after SIGTERM or SIGINT before the process exits.
    #[arg(long, env = "DOCKET_SHUTDOWN_GRACE", default_value = "20s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,
}

impl CommonSettings {
    pub fn pool_options(&self) -> docket_db::PoolOptions {
        docket_db::PoolOptions {
            max_connections: self.db_max_connections,
            acquire_timeout: self.db_acquire_timeout,
        }
    }
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
        "m" => Duration::from_secs(number * 60),
        "h" => Duration::from_secs(number * 3600),
        _ => return Err(format!("invalid duration {text:?}: the unit must be ms, s, m or h")),
    };
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use super::*;

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
