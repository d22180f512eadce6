//! INVALID_ARGUMENT statuses of bounded size.
//!
//! The message and the BadRequest details travel in HTTP/2 trailers, which clients cap.
//! The docket CLI, a tonic client, failed with an HTTP/2 protocol error once a status
//! carried about 4 KB of violations, and grpcio rejects trailers over 16 KiB. So a status
//! lists at most [`MAX_REPORTED`] violations in its details and shortens each description.
//! Its message stays within [`MAX_MESSAGE_BYTES`] and counts the violations it left out.
//!
//! NOTE: which layer of the tonic client sets the 4 KB limit was not found, so the bounds
//! below are chosen to stay under it rather than derived from it.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// Violations listed in the BadRequest details of one status.
pub const MAX_REPORTED: usize = 10;

/// Bytes kept of one violation's description, because a description may quote a value of
/// any length that the client sent.
pub const MAX_DESCRIPTION_BYTES: usize = 100;

/// Bytes of violations listed in the message before the rest is only counted.
pub const MAX_MESSAGE_BYTES: usize = 800;

/// Builds an INVALID_ARGUMENT status from `(field, description)` pairs. The message starts
/// with `prefix` and lists the violations, separated by "; ", while they fit.
pub fn invalid_argument<I>(prefix: &str, violations: I) -> Status
where
    I: IntoIterator<Item = (String, String)>,
{
    let violations: Vec<(String, String)> = violations
        .into_iter()
        .map(|(field, description)| (field, shorten(&description)))
        .collect();

    let mut message = prefix.to_owned();
    let mut listed = 0;
    for (field, description) in &violations {
        let entry = format!("{field}: {description}");
        if listed > 0 && message.len() + entry.len() + 2 > MAX_MESSAGE_BYTES {
            break;
        }
        if listed > 0 {
            message.push_str("; ");
        }
        message.push_str(&entry);
        listed += 1;
    }
    let left_out = violations.len() - listed;
    if left_out > 0 {
        let noun = if left_out == 1 { "violation" } else { "violations" };
        let in_details = violations.len().min(MAX_REPORTED);
        message.push_str(&format!(" (and {left_out} more {noun}; the error details list the first {in_details})"));
    }

    let mut details = ErrorDetails::new();
    for (field, description) in violations.into_iter().take(MAX_REPORTED) {
        details.add_bad_request_violation(field, description);
    }
    Status::with_error_details(Code::InvalidArgument, message, details)
}

/// Cuts `description` to at most [`MAX_DESCRIPTION_BYTES`] bytes on a character boundary,
/// marking the cut with "...".
fn shorten(description: &str) -> String {
    if description.len() <= MAX_DESCRIPTION_BYTES {
        return description.to_owned();
    }
    let mut cut = MAX_DESCRIPTION_BYTES - 3;
    while !description.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}...", &description[..cut])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn violations(count: usize, description: &str) -> Vec<(String, String)> {
        (0..count).map(|index| (format!("indicators[{index}].value"), description.to_owned())).collect()
    }

    #[test]
    fn few_violations_are_all_listed() {
        let status = invalid_argument("invalid request: ", violations(2, "not an IPv4 address"));

        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(
            status.message(),
            "invalid request: indicators[0].value: not an IPv4 address; indicators[1].value: not an IPv4 address"
        );
        assert_eq!(status.get_details_bad_request().unwrap().field_violations.len(), 2);
    }

    #[test]
    fn many_violations_stay_bounded() {
        let status = invalid_argument("invalid request: ", violations(1000, "not an IPv4 address"));

        assert!(status.message().len() <= MAX_MESSAGE_BYTES + 100, "{}", status.message().len());
        assert!(status.message().ends_with("the error details list the first 10)"), "{}", status.message());
        assert!(status.message().contains("more violations"), "{}", status.message());
        assert_eq!(status.get_details_bad_request().unwrap().field_violations.len(), MAX_REPORTED);
    }

    #[test]
    fn long_description_is_shortened() {
        let long = format!("not a URL: \"{}\"", "é".repeat(5000));
        let status = invalid_argument("invalid request: ", violations(1, &long));

        let details = status.get_details_bad_request().unwrap();
        let description = &details.field_violations[0].description;
        assert!(description.len() <= MAX_DESCRIPTION_BYTES, "{}", description.len());
        assert!(description.starts_with("not a URL: \"éé"), "{description}");
        assert!(description.ends_with("..."), "{description}");
        assert!(status.message().len() < 200, "{}", status.message().len());
    }
}
