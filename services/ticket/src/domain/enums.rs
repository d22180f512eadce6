//! Closed vocabularies of a ticket. Each value has the lowercase name used in events,
//! snapshots and history, and the number it has on the wire in `docket.ticket.v1`.

use std::fmt;

/// Declares an enum with its wire numbers and lowercase names. Wire number 0 is the
/// protobuf "unspecified" value and maps to no variant.
macro_rules! vocabulary {
    ($(#[$meta:meta])* $name:ident { $($variant:ident = $code:literal => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $($variant),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// Lowercase name, as in events and snapshots.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }

            /// Number of the value in the protobuf enum.
            pub fn code(self) -> i32 {
                match self {
                    $($name::$variant => $code),+
                }
            }

            /// Maps a protobuf number to a value: `Ok(None)` for 0 (unspecified) and
            /// `Err(code)` for a number the contract does not define.
            pub fn from_code(code: i32) -> Result<Option<$name>, i32> {
                match code {
                    0 => Ok(None),
                    $($code => Ok(Some($name::$variant)),)+
                    other => Err(other),
                }
            }

            /// Parses a lowercase name.
            pub fn parse(text: &str) -> Option<$name> {
                match text {
                    $($text => Some($name::$variant),)+
                    _ => None,
                }
            }

            /// Lowercase names of every value, comma-separated, for error messages.
            pub fn names() -> String {
                $name::ALL.iter().map(|value| value.as_str()).collect::<Vec<_>>().join(", ")
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

vocabulary! {
    /// How much harm an incident does or could do.
    Severity {
        Critical = 1 => "critical",
        High = 2 => "high",
        Medium = 3 => "medium",
        Low = 4 => "low",
        Informational = 5 => "informational",
    }
}

vocabulary! {
    /// Kind of incident.
    Category {
        Malware = 1 => "malware",
        Phishing = 2 => "phishing",
        UnauthorizedAccess = 3 => "unauthorized_access",
        DataExfiltration = 4 => "data_exfiltration",
        DenialOfService = 5 => "denial_of_service",
        InsiderMisuse = 6 => "insider_misuse",
        HumanError = 7 => "human_error",
        PhysicalTheftOrLoss = 8 => "physical_theft_or_loss",
        PolicyViolation = 9 => "policy_violation",
        Vulnerability = 10 => "vulnerability",
        Other = 11 => "other",
    }
}

vocabulary! {
    /// Lifecycle state, after the incident handling phases of NIST SP 800-61.
    Status {
        New = 1 => "new",
        Acknowledged = 2 => "acknowledged",
        Investigating = 3 => "investigating",
        Contained = 4 => "contained",
        Eradicated = 5 => "eradicated",
        Recovered = 6 => "recovered",
        Resolved = 7 => "resolved",
        Closed = 8 => "closed",
    }
}

vocabulary! {
    /// Verdict recorded when a ticket is resolved.
    Resolution {
        TruePositive = 1 => "true_positive",
        FalsePositive = 2 => "false_positive",
        Benign = 3 => "benign",
        Duplicate = 4 => "duplicate",
    }
}

vocabulary! {
    /// Type of a threat indicator, which decides how its value is validated.
    IndicatorType {
        Ipv4 = 1 => "ipv4",
        Ipv6 = 2 => "ipv6",
        Domain = 3 => "domain",
        Url = 4 => "url",
        Email = 5 => "email",
        Md5 = 6 => "md5",
        Sha1 = 7 => "sha1",
        Sha256 = 8 => "sha256",
        Filename = 9 => "filename",
    }
}

vocabulary! {
    /// Kind of an affected asset.
    AssetKind {
        Host = 1 => "host",
        Account = 2 => "account",
        Service = 3 => "service",
    }
}

vocabulary! {
    /// Confidence of the responders that an asset was compromised.
    CompromiseStatus {
        Suspected = 1 => "suspected",
        Confirmed = 2 => "confirmed",
        Cleared = 3 => "cleared",
    }
}

impl Status {
    /// Returns whether work on the ticket is still going on (new up to recovered).
    pub fn is_open(self) -> bool {
        !matches!(self, Status::Resolved | Status::Closed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_for_every_status() {
        for status in Status::ALL {
            assert_eq!(Status::from_code(status.code()), Ok(Some(*status)));
        }
    }

    #[test]
    fn zero_code_is_unspecified() {
        assert_eq!(Severity::from_code(0), Ok(None));
    }

    #[test]
    fn unknown_code_is_rejected() {
        assert_eq!(Category::from_code(99), Err(99));
    }

    #[test]
    fn names_parse_back() {
        for category in Category::ALL {
            assert_eq!(Category::parse(category.as_str()), Some(*category));
        }
    }
}
