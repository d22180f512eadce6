//! Rules of the audit ledger: validation, the canonical record form, hashing, paging
//! and verification. Nothing here depends on gRPC or database types.

pub mod canonical;
pub mod chain;
pub mod event;
pub mod listing;
pub mod record;
pub mod verify;

/// Maximum number of field violations returned for one request. The details travel in a gRPC trailer,
/// and clients commonly reject header blocks above 16 KiB, so the list is capped.
pub const MAX_REPORTED_VIOLATIONS: usize = 20;

/// One invalid field of a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldViolation {
    /// Path of the field in the request, for example `events[3].event_id`.
    pub field: String,
    /// Description of the problem and of the fix.
    pub description: String,
}

/// Invalid fields of a request, in request order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Violations {
    reported: Vec<FieldViolation>,
    total: usize,
}

impl Violations {
    pub fn push(&mut self, field: impl Into<String>, description: impl Into<String>) {
        self.total += 1;
        if self.reported.len() < MAX_REPORTED_VIOLATIONS {
            self.reported.push(FieldViolation {
                field: field.into(),
                description: description.into(),
            });
        }
    }

    pub fn single(field: impl Into<String>, description: impl Into<String>) -> Violations {
        let mut violations = Violations::default();
        violations.push(field, description);
        violations
    }

    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// Returns the violations kept for the response, at most [`MAX_REPORTED_VIOLATIONS`].
    pub fn reported(&self) -> &[FieldViolation] {
        &self.reported
    }

    /// Number of violations found, including those not kept.
    pub fn total(&self) -> usize {
        self.total
    }

    /// Returns `Err(self)` when any violation was found.
    pub fn into_result(self) -> Result<(), Violations> {
        if self.is_empty() { Ok(()) } else { Err(self) }
    }
}

impl std::fmt::Display for Violations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.reported.first() {
            None => write!(f, "invalid request"),
            Some(first) => {
                write!(f, "invalid {}: {}", first.field, first.description)?;
                let others = self.total - 1;
                if others > 0 {
                    let plural = if others == 1 { "" } else { "s" };
                    write!(
                        f,
                        " (and {others} more invalid field{plural}, listed in the error details)"
                    )?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for Violations {}

/// Quotes a client-supplied value for an error message, shortened so a huge value cannot
/// blow up the response.
pub(crate) fn quote(value: &str) -> String {
    const MAX_CHARS: usize = 64;
    if value.chars().count() <= MAX_CHARS {
        format!("{value:?}")
    } else {
        let head: String = value.chars().take(MAX_CHARS).collect();
        format!("{head:?}...")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn violations_keep_count_beyond_cap() {
        let mut violations = Violations::default();
        for i in 0..(MAX_REPORTED_VIOLATIONS + 5) {
            violations.push(format!("events[{i}].action"), "is required");
        }
        assert_eq!(violations.reported().len(), MAX_REPORTED_VIOLATIONS);
        assert_eq!(violations.total(), MAX_REPORTED_VIOLATIONS + 5);
    }

    #[test]
    fn violations_message_names_first_field() {
        let mut violations = Violations::default();
        violations.push("events[3].event_id", "is required");
        violations.push("events[4].action", "is required");
        assert_eq!(
            violations.to_string(),
            "invalid events[3].event_id: is required (and 1 more invalid field, listed in the error details)"
        );
    }

    #[test]
    fn quote_shortens_long_values() {
        let quoted = quote(&"x".repeat(100));
        assert_eq!(quoted, format!("{:?}...", "x".repeat(64)));
    }
}
