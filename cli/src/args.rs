//! Command-line arguments of `docket`.

use std::path::PathBuf;

use chrono::{DateTime, NaiveDate, Utc};
use clap::{Args, Parser, Subcommand, ValueEnum};
use docket_proto::metrics::v1::GroupBy;
use docket_proto::ticket::v1::{AssetKind, Category, CompromiseStatus, IndicatorType, Resolution, Severity, Status};

/// Command-line client for the Docket incident-ticketing services.
#[derive(Debug, Parser)]
#[command(name = "docket", version, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
#[command(next_help_heading = "Global options")]
pub struct Global {
    /// Address (HOST:PORT) of the ticket service.
    #[arg(long, global = true, env = "DOCKET_TICKET_ADDR", default_value = "127.0.0.1:50051")]
    pub ticket_addr: String,

    /// Address (HOST:PORT) of the audit service.
    #[arg(long, global = true, env = "DOCKET_AUDIT_ADDR", default_value = "127.0.0.1:50052")]
    pub audit_addr: String,

    /// Address (HOST:PORT) of the metrics service.
    #[arg(long, global = true, env = "DOCKET_METRICS_ADDR", default_value = "127.0.0.1:50053")]
    pub metrics_addr: String,

    /// Bearer token (a JWT) sent with every call. The services record its subject as the
    /// actor of each change. `docket token mint` makes a development token.
    #[arg(long, global = true, env = "DOCKET_TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    /// Seconds that one call may take before it fails with DEADLINE_EXCEEDED.
    #[arg(long, global = true, env = "DOCKET_TIMEOUT", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout: u64,

    /// Prints machine-readable JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Creates, reads, lists and works tickets.
    #[command(subcommand)]
    Ticket(TicketCommand),
    /// Reads and verifies the audit ledger.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Queries response-time metrics.
    #[command(subcommand)]
    Metrics(MetricsCommand),
    /// Imports historical incidents.
    #[command(subcommand)]
    Import(ImportCommand),
    /// Makes development tokens.
    #[command(subcommand)]
    Token(TokenCommand),
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Prints a token signed with an Ed25519 private key, for --token or DOCKET_TOKEN. The
    /// services accept it when their key directory contains the matching public key under --kid.
    Mint(MintArgs),
    /// Writes a new Ed25519 key pair: the private key for `token mint` or a service's
    /// --service-signing-key, and the public key for the services' --jwt-keys-dir.
    Keygen {
        /// Path of the private key (PKCS#8 PEM), written with mode 0600.
        #[arg(long)]
        private: PathBuf,
        /// Path of the public key (SPKI PEM).
        #[arg(long)]
        public: PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct MintArgs {
    /// Subject (`sub`): the user name recorded as the actor of each change.
    #[arg(long)]
    pub sub: String,
    /// Role to grant; repeat for several: viewer, analyst, lead, auditor, admin or service.
    #[arg(long = "role", required = true)]
    pub roles: Vec<docket_auth::Role>,
    /// Lifetime of the token, for example 30m or 8h (at most 24h).
    #[arg(long, default_value = "8h", value_parser = parse_ttl)]
    pub ttl: std::time::Duration,
    /// Ed25519 private key (PKCS#8 PEM) that signs the token.
    #[arg(long, default_value = "target/dev-keys/dev-user.pem")]
    pub key: PathBuf,
    /// Key id (`kid`): the file stem of the public key in the services' key directory.
    #[arg(long, default_value = "dev-user")]
    pub kid: String,
    /// Issuer (`iss`), as the services' --jwt-issuer.
    #[arg(long, default_value = "docket")]
    pub issuer: String,
    /// Audience (`aud`), as the services' --jwt-audience.
    #[arg(long, default_value = "docket")]
    pub audience: String,
}

/// Parses a token lifetime: a whole number with the unit s, m or h.
fn parse_ttl(text: &str) -> Result<std::time::Duration, String> {
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().map_err(|_| format!("invalid duration {text:?}: write a whole number and a unit, for example 8h"))?;
    let seconds = match unit {
        "s" => Some(number),
        "m" => number.checked_mul(60),
        "h" => number.checked_mul(3600),
        _ => return Err(format!("invalid duration {text:?}: the unit must be s, m or h")),
    };
    seconds
        .map(std::time::Duration::from_secs)
        .ok_or_else(|| format!("invalid duration {text:?}: the value is too large"))
}

#[derive(Debug, Subcommand)]
pub enum TicketCommand {
    /// Creates a ticket and prints it.
    Create(CreateArgs),
    /// Prints one ticket with its worklog.
    Get {
        /// Ticket key (INC-1042) or id (UUID).
        ticket: String,
    },
    /// Lists tickets, oldest first.
    List(ListArgs),
    /// Moves a ticket to another lifecycle state.
    Transition {
        /// Ticket key or id.
        ticket: String,
        /// Target state.
        status: StatusArg,
        /// Resolution; required when moving to `resolved`.
        #[arg(long)]
        resolution: Option<ResolutionArg>,
        /// Note kept in the ticket history.
        #[arg(long)]
        note: Option<String>,
    },
    /// Adds an entry to a ticket's worklog.
    Comment {
        /// Ticket key or id.
        ticket: String,
        /// Text of the comment.
        text: String,
    },
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Short summary of the incident.
    #[arg(long)]
    pub title: String,
    #[arg(long)]
    pub severity: SeverityArg,
    #[arg(long)]
    pub category: CategoryArg,
    /// Longer free text.
    #[arg(long)]
    pub description: Option<String>,
    /// Person who works the ticket.
    #[arg(long)]
    pub assignee: Option<String>,
    /// Team that owns the ticket.
    #[arg(long)]
    pub team: Option<String>,
    /// System or person that detected the incident, for example `edr`.
    #[arg(long)]
    pub detection_source: Option<String>,
    /// Detection method, for example a rule name.
    #[arg(long)]
    pub detection_method: Option<String>,
    /// Threat indicator as TYPE:VALUE (types: ipv4, ipv6, domain, url, email, md5, sha1,
    /// sha256, filename); repeat for several.
    #[arg(long = "indicator", value_name = "TYPE:VALUE", value_parser = parse_indicator)]
    pub indicators: Vec<(IndicatorType, String)>,
    /// Affected asset as KIND:NAME[:COMPROMISE] (kinds: host, account, service; compromise:
    /// suspected, confirmed or cleared, default suspected); repeat for several.
    #[arg(long = "asset", value_name = "KIND:NAME", value_parser = parse_asset)]
    pub assets: Vec<(AssetKind, String, CompromiseStatus)>,
    /// Tag; repeat for several.
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    /// When the malicious activity began (RFC 3339 or YYYY-MM-DD, UTC).
    #[arg(long, value_parser = parse_instant)]
    pub occurred_at: Option<DateTime<Utc>>,
    /// When it was first detected (RFC 3339 or YYYY-MM-DD, UTC).
    #[arg(long, value_parser = parse_instant)]
    pub detected_at: Option<DateTime<Utc>>,
    /// Idempotency key; a retry with the same key returns the first ticket [default: a new UUID].
    #[arg(long)]
    pub request_id: Option<String>,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only tickets in this state; repeat for several.
    #[arg(long = "status")]
    pub statuses: Vec<StatusArg>,
    /// Only tickets with this severity; repeat for several.
    #[arg(long = "severity")]
    pub severities: Vec<SeverityArg>,
    /// Only tickets in this category; repeat for several.
    #[arg(long = "category")]
    pub categories: Vec<CategoryArg>,
    /// Only tickets assigned to this person.
    #[arg(long)]
    pub assignee: Option<String>,
    /// Only tickets of this team.
    #[arg(long)]
    pub team: Option<String>,
    /// Maximum number of tickets to print; 0 prints all.
    #[arg(long, default_value_t = 100)]
    pub limit: usize,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Lists ledger records in sequence order.
    List {
        /// Only records of this ticket (key or id).
        #[arg(long)]
        ticket: Option<String>,
        /// Only records made by this actor.
        #[arg(long)]
        actor: Option<String>,
        /// Only records with this action, for example `ticket.created`.
        #[arg(long)]
        action: Option<String>,
        /// Maximum number of records to print; 0 prints all.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Recomputes every hash of the ledger; exits with 1 when it is not intact.
    Verify,
}

#[derive(Debug, Subcommand)]
pub enum MetricsCommand {
    /// Prints TTD, TTA, TTC and TTR statistics per group and population.
    Response(ResponseArgs),
}

#[derive(Debug, Args)]
pub struct ResponseArgs {
    /// Groups the figures by this field.
    #[arg(long)]
    pub group_by: Option<GroupByArg>,
    /// Start of the window, inclusive, on each metric's end event (RFC 3339 or YYYY-MM-DD, UTC).
    #[arg(long, value_parser = parse_instant)]
    pub from: Option<DateTime<Utc>>,
    /// End of the window, exclusive (RFC 3339 or YYYY-MM-DD, which means 00:00 UTC that day).
    #[arg(long, value_parser = parse_instant)]
    pub to: Option<DateTime<Utc>>,
    /// Severity; `unrated` selects tickets without one. Repeat for several.
    #[arg(long = "severity", value_parser = METRIC_SEVERITIES)]
    pub severities: Vec<String>,
    /// Category; `none` selects tickets without one. Repeat for several.
    #[arg(long = "category", value_parser = METRIC_CATEGORIES)]
    pub categories: Vec<String>,
    /// Team; `none` selects tickets without one. Repeat for several.
    #[arg(long = "team")]
    pub teams: Vec<String>,
    /// Detection source; repeat for several.
    #[arg(long = "source")]
    pub sources: Vec<String>,
    /// Only imported tickets (true) or only live ones (false).
    #[arg(long)]
    pub imported: Option<bool>,
}

/// Severity filters of the metrics service: the ticket severities and `unrated`.
const METRIC_SEVERITIES: [&str; 6] = ["critical", "high", "medium", "low", "informational", "unrated"];

/// Category filters of the metrics service: the ticket categories and `none`.
const METRIC_CATEGORIES: [&str; 12] = [
    "malware",
    "phishing",
    "unauthorized_access",
    "data_exfiltration",
    "denial_of_service",
    "insider_misuse",
    "human_error",
    "physical_theft_or_loss",
    "policy_violation",
    "vulnerability",
    "other",
    "none",
];

#[derive(Debug, Subcommand)]
pub enum ImportCommand {
    /// Imports a VERIS JSON Lines file (.jsonl or .jsonl.gz); records imported before are skipped.
    Veris {
        file: PathBuf,
        /// Records per ImportTickets call (1 to 1000).
        #[arg(long, default_value_t = 250, value_parser = clap::value_parser!(u64).range(1..=1000))]
        batch_size: u64,
        /// ImportTickets calls in flight at once.
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=64))]
        concurrency: u64,
    },
}

/// Declares a lowercase command-line enum that converts to its protobuf enum.
macro_rules! proto_enum {
    ($name:ident => $proto:ty { $($variant:ident = $text:literal),+ $(,)? }) => {
        #[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
        pub enum $name {
            $(#[value(name = $text)] $variant,)+
        }

        impl From<$name> for $proto {
            fn from(value: $name) -> $proto {
                match value {
                    $($name::$variant => <$proto>::$variant,)+
                }
            }
        }

        impl $name {
            /// Returns the lowercase name the services use in events and metric filters.
            pub fn name(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }
    };
}

proto_enum!(SeverityArg => Severity {
    Critical = "critical",
    High = "high",
    Medium = "medium",
    Low = "low",
    Informational = "informational",
});

proto_enum!(CategoryArg => Category {
    Malware = "malware",
    Phishing = "phishing",
    UnauthorizedAccess = "unauthorized_access",
    DataExfiltration = "data_exfiltration",
    DenialOfService = "denial_of_service",
    InsiderMisuse = "insider_misuse",
    HumanError = "human_error",
    PhysicalTheftOrLoss = "physical_theft_or_loss",
    PolicyViolation = "policy_violation",
    Vulnerability = "vulnerability",
    Other = "other",
});

proto_enum!(StatusArg => Status {
    New = "new",
    Acknowledged = "acknowledged",
    Investigating = "investigating",
    Contained = "contained",
    Eradicated = "eradicated",
    Recovered = "recovered",
    Resolved = "resolved",
    Closed = "closed",
});

proto_enum!(ResolutionArg => Resolution {
    TruePositive = "true_positive",
    FalsePositive = "false_positive",
    Benign = "benign",
    Duplicate = "duplicate",
});

proto_enum!(GroupByArg => GroupBy {
    Severity = "severity",
    Category = "category",
    Team = "team",
    Source = "source",
    Resolution = "resolution",
});

/// Parses `TYPE:VALUE`; the value may itself contain colons (URLs, IPv6).
pub fn parse_indicator(text: &str) -> Result<(IndicatorType, String), String> {
    let (kind, value) = text.split_once(':').ok_or("expected TYPE:VALUE, for example ipv4:203.0.113.7")?;
    let kind = match kind.to_ascii_lowercase().as_str() {
        "ipv4" => IndicatorType::Ipv4,
        "ipv6" => IndicatorType::Ipv6,
        "domain" => IndicatorType::Domain,
        "url" => IndicatorType::Url,
        "email" => IndicatorType::Email,
        "md5" => IndicatorType::Md5,
        "sha1" => IndicatorType::Sha1,
        "sha256" => IndicatorType::Sha256,
        "filename" => IndicatorType::Filename,
        other => return Err(format!("unknown indicator type {other:?}; expected ipv4, ipv6, domain, url, email, md5, sha1, sha256 or filename")),
    };
    if value.is_empty() {
        return Err("the indicator value after the colon is empty".to_owned());
    }
    Ok((kind, value.to_owned()))
}

/// Parses `KIND:NAME[:COMPROMISE]`. A last segment that is not a compromise status stays part
/// of the name, and an asset is suspected unless the text gives another status.
pub fn parse_asset(text: &str) -> Result<(AssetKind, String, CompromiseStatus), String> {
    let (kind, name) = text.split_once(':').ok_or("expected KIND:NAME, for example host:web-01")?;
    let (name, compromise) = match name.rsplit_once(':') {
        Some((name, "suspected")) => (name, CompromiseStatus::Suspected),
        Some((name, "confirmed")) => (name, CompromiseStatus::Confirmed),
        Some((name, "cleared")) => (name, CompromiseStatus::Cleared),
        _ => (name, CompromiseStatus::Suspected),
    };
    let kind = match kind.to_ascii_lowercase().as_str() {
        "host" => AssetKind::Host,
        "account" => AssetKind::Account,
        "service" => AssetKind::Service,
        other => return Err(format!("unknown asset kind {other:?}; expected host, account or service")),
    };
    if name.is_empty() {
        return Err("the asset name after the colon is empty".to_owned());
    }
    Ok((kind, name.to_owned(), compromise))
}

/// Parses an RFC 3339 instant, or a date `YYYY-MM-DD` meaning 00:00 UTC that day.
pub fn parse_instant(text: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(instant) = DateTime::parse_from_rfc3339(text) {
        return Ok(instant.with_timezone(&Utc));
    }
    if let Ok(date) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(date.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc());
    }
    Err("expected an RFC 3339 time such as 2024-05-01T12:00:00Z or a date such as 2024-05-01".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn indicator_value_keeps_its_colons() {
        assert_eq!(parse_indicator("url:https://example.test/a").unwrap(), (IndicatorType::Url, "https://example.test/a".to_owned()));
        assert_eq!(parse_indicator("ipv6:2001:db8::1").unwrap(), (IndicatorType::Ipv6, "2001:db8::1".to_owned()));
        assert!(parse_indicator("hash:abc").is_err());
        assert!(parse_indicator("md5").is_err());
    }

    #[test]
    fn asset_kinds() {
        assert_eq!(parse_asset("host:web-01").unwrap(), (AssetKind::Host, "web-01".to_owned(), CompromiseStatus::Suspected));
        assert_eq!(parse_asset("service:db:5432:confirmed").unwrap(), (AssetKind::Service, "db:5432".to_owned(), CompromiseStatus::Confirmed));
        assert_eq!(parse_asset("service:db:5432").unwrap(), (AssetKind::Service, "db:5432".to_owned(), CompromiseStatus::Suspected));
        assert!(parse_asset("printer:p1").is_err());
    }

    #[test]
    fn instants_accept_dates() {
        assert_eq!(parse_instant("2024-05-01").unwrap().to_rfc3339(), "2024-05-01T00:00:00+00:00");
        assert_eq!(parse_instant("2024-05-01T14:00:00+02:00").unwrap().to_rfc3339(), "2024-05-01T12:00:00+00:00");
        assert!(parse_instant("yesterday").is_err());
    }

    #[test]
    fn enums_use_lowercase_names() {
        let cli = Cli::try_parse_from(["docket", "ticket", "list", "--category", "unauthorized_access", "--status", "new"]).unwrap();
        let Command::Ticket(TicketCommand::List(list)) = cli.command else {
            panic!("parsed as another command");
        };
        assert_eq!(list.categories, [CategoryArg::UnauthorizedAccess]);
        assert_eq!(Category::from(list.categories[0]), Category::UnauthorizedAccess);
        assert_eq!(list.statuses, [StatusArg::New]);
    }

    #[test]
    fn imported_flag_takes_true_or_false() {
        let cli = Cli::try_parse_from(["docket", "metrics", "response", "--imported", "false", "--group-by", "source"]).unwrap();
        let Command::Metrics(MetricsCommand::Response(response)) = cli.command else {
            panic!("parsed as another command");
        };
        assert_eq!(response.imported, Some(false));
        assert_eq!(response.group_by, Some(GroupByArg::Source));
    }

    #[test]
    fn metric_filters_accept_unset_values() {
        let cli = Cli::try_parse_from(["docket", "metrics", "response", "--severity", "unrated", "--category", "none"]).unwrap();
        let Command::Metrics(MetricsCommand::Response(response)) = cli.command else {
            panic!("parsed as another command");
        };
        assert_eq!(response.severities, ["unrated"]);
        assert_eq!(response.categories, ["none"]);
        assert!(Cli::try_parse_from(["docket", "metrics", "response", "--severity", "severe"]).is_err());
    }
}
