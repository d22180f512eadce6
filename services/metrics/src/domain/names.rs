//! The ticket enums as events and filters spell them: lowercase names, with the empty
//! string standing for an unset severity, category or resolution.

/// Declares an enum whose values are parsed from and written as fixed lowercase names.
macro_rules! named_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name {
            $($variant),+
        }

        impl $name {
            /// Every accepted name, in declaration order.
            pub const NAMES: &'static [&'static str] = &[$($text),+];

            /// Parses a lowercase name; any other spelling is rejected.
            pub fn parse(text: &str) -> Option<Self> {
                match text {
                    $($text => Some(Self::$variant),)+
                    _ => None,
                }
            }

            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text),+
                }
            }
        }
    };
}

named_enum! {
    /// Severity of a ticket.
    Severity {
        Critical => "critical",
        High => "high",
        Medium => "medium",
        Low => "low",
        Informational => "informational",
    }
}

named_enum! {
    /// Incident category of a ticket.
    Category {
        Malware => "malware",
        Phishing => "phishing",
        UnauthorizedAccess => "unauthorized_access",
        DataExfiltration => "data_exfiltration",
        DenialOfService => "denial_of_service",
        InsiderMisuse => "insider_misuse",
        HumanError => "human_error",
        PhysicalTheftOrLoss => "physical_theft_or_loss",
        PolicyViolation => "policy_violation",
        Vulnerability => "vulnerability",
        Other => "other",
    }
}

named_enum! {
    /// Lifecycle status of a ticket.
    Status {
        New => "new",
        Acknowledged => "acknowledged",
        Investigating => "investigating",
        Contained => "contained",
        Eradicated => "eradicated",
        Recovered => "recovered",
        Resolved => "resolved",
        Closed => "closed",
    }
}

named_enum! {
    /// Verdict on a resolved ticket.
    Resolution {
        TruePositive => "true_positive",
        FalsePositive => "false_positive",
        Benign => "benign",
        Duplicate => "duplicate",
    }
}

/// Group key of a ticket without a severity.
pub const UNRATED: &str = "unrated";

/// Group key of a ticket without a value in any other group-by field.
pub const NONE: &str = "none";

/// Formats allowed names for an error message: `critical, high, medium`.
pub fn list(names: &[&str]) -> String {
    names.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for name in Category::NAMES {
            assert_eq!(Category::parse(name).map(Category::as_str), Some(*name));
        }
    }

    #[test]
    fn parse_rejects_other_spellings() {
        assert_eq!(Severity::parse("High"), None);
        assert_eq!(Severity::parse(""), None);
        assert_eq!(Resolution::parse("false positive"), None);
    }
}
