//! Ticket fields derived from the VERIS classification of an incident: category, severity,
//! resolution, detection source, tags and title.

use docket_proto::ticket::v1::{Category, Resolution, Severity};
use serde_json::{Map, Value};

use super::MapError;

/// Maximum length of a derived title, in characters.
pub const TITLE_MAX_CHARS: usize = 200;

/// Categories in order of precedence: when a record's actions suggest several categories,
/// the first one in this list wins. Malware and denial of service name what the responders
/// must handle. Social engineering is usually the entry point that let the later hacking
/// happen. Deliberate acts come before accidents, and `other` comes last.
const PRECEDENCE: [Category; 9] = [
    Category::Malware,
    Category::DenialOfService,
    Category::Phishing,
    Category::UnauthorizedAccess,
    Category::InsiderMisuse,
    Category::PolicyViolation,
    Category::PhysicalTheftOrLoss,
    Category::HumanError,
    Category::Other,
];

/// Chooses the ticket category from `action`, the VERIS record's map of action kinds.
///
/// Each action kind, and each of its varieties, suggests one category:
///
/// | VERIS action | variety | category |
/// |---|---|---|
/// | malware | any | malware |
/// | hacking | DoS | denial_of_service |
/// | hacking | any other | unauthorized_access |
/// | social | Bribery | insider_misuse |
/// | social | Extortion | other |
/// | social | any other (Phishing, Pretexting, ...) | phishing |
/// | misuse | Unapproved hardware/software/workaround, Email misuse, Net misuse, Illicit content | policy_violation |
/// | misuse | any other (Privilege abuse, Data mishandling, ...) | insider_misuse |
/// | physical | any | physical_theft_or_loss |
/// | error | Loss | physical_theft_or_loss |
/// | error | any other | human_error |
/// | environmental, unknown, or no action | | other |
///
/// Among the suggested categories the earliest in [`PRECEDENCE`] wins. VERIS actions never
/// yield `data_exfiltration` or `vulnerability`: VERIS records disclosure as an attribute
/// of the incident and a vulnerability only when it was exploited (a hacking action).
pub fn category(record: &Map<String, Value>) -> Category {
    let Some(Value::Object(actions)) = record.get("action") else {
        return Category::Other;
    };

    let mut suggested = Vec::new();
    for (kind, detail) in actions {
        let varieties = strings(detail.get("variety"));
        if varieties.is_empty() {
            suggested.push(category_of(kind, None));
        }
        for variety in varieties {
            suggested.push(category_of(kind, Some(variety)));
        }
    }

    PRECEDENCE
        .into_iter()
        .find(|category| suggested.contains(category))
        .unwrap_or(Category::Other)
}

fn category_of(kind: &str, variety: Option<&str>) -> Category {
    match (kind, variety) {
        ("malware", _) => Category::Malware,
        ("hacking", Some("DoS")) => Category::DenialOfService,
        ("hacking", _) => Category::UnauthorizedAccess,
        ("social", Some("Bribery")) => Category::InsiderMisuse,
        ("social", Some("Extortion")) => Category::Other,
        ("social", _) => Category::Phishing,
        (
            "misuse",
            Some("Unapproved hardware" | "Unapproved software" | "Unapproved workaround" | "Email misuse" | "Net misuse" | "Illicit content"),
        ) => Category::PolicyViolation,
        ("misuse", _) => Category::InsiderMisuse,
        ("physical", _) => Category::PhysicalTheftOrLoss,
        ("error", Some("Loss")) => Category::PhysicalTheftOrLoss,
        ("error", _) => Category::HumanError,
        _ => Category::Other,
    }
}

/// Maps `impact.overall_rating`; `Unknown`, a missing rating or any other value leaves the
/// ticket unrated.
pub fn severity(record: &Map<String, Value>) -> Severity {
    let rating = record.get("impact").and_then(|impact| impact.get("overall_rating")).and_then(Value::as_str);
    match rating {
        Some("Catastrophic") => Severity::Critical,
        Some("Damaging") => Severity::High,
        Some("Painful") => Severity::Medium,
        Some("Distracting") => Severity::Low,
        Some("Insignificant") => Severity::Informational,
        _ => Severity::Unspecified,
    }
}

/// Maps `security_incident`. A near miss was a real threat that was stopped before it did
/// harm, so it counts as a true positive (and gets the tag `near-miss`).
pub fn resolution(record: &Map<String, Value>) -> Result<Resolution, MapError> {
    match record.get("security_incident") {
        Some(Value::String(value)) => match value.as_str() {
            "Confirmed" | "Suspected" | "Near miss" => Ok(Resolution::TruePositive),
            "False positive" => Ok(Resolution::FalsePositive),
            _ => Err(MapError::invalid(
                "security_incident",
                &Value::String(value.clone()),
                "one of Confirmed, Suspected, Near miss, False positive",
            )),
        },
        None | Some(Value::Null) => Err(MapError::MissingSecurityIncident),
        Some(other) => Err(MapError::invalid("security_incident", other, "a string")),
    }
}

/// Names who discovered the incident, from the keys of `discovery_method`. When a record
/// names several, the first of internal, partner, external, other wins, because it is the
/// party closest to the victim. A record that names none gets `unknown`.
pub fn detection_source(record: &Map<String, Value>) -> &'static str {
    let Some(Value::Object(methods)) = record.get("discovery_method") else {
        return "unknown";
    };
    ["internal", "partner", "external", "other"]
        .into_iter()
        .find(|source| methods.contains_key(*source))
        .unwrap_or("unknown")
}

/// Builds the tags: `veris`, one `action:<kind>` per VERIS action, `suspected` or `near-miss`
/// for those incident states, and the victim's `country:<code>` and `industry:<NAICS code>`.
pub fn tags(record: &Map<String, Value>) -> Vec<String> {
    let mut tags = vec!["veris".to_owned()];

    if let Some(Value::Object(actions)) = record.get("action") {
        let mut kinds: Vec<&String> = actions.keys().collect();
        kinds.sort();
        tags.extend(kinds.into_iter().map(|kind| format!("action:{}", slug(kind))));
    }

    match record.get("security_incident").and_then(Value::as_str) {
        Some("Suspected") => tags.push("suspected".to_owned()),
        Some("Near miss") => tags.push("near-miss".to_owned()),
        _ => {}
    }

    let victim = record.get("victim");
    for country in strings(victim.and_then(|victim| victim.get("country"))) {
        if country.len() == 2 && country.chars().all(|c| c.is_ascii_alphabetic()) {
            push_unique(&mut tags, format!("country:{}", country.to_ascii_lowercase()));
        }
    }
    if let Some(industry) = victim.and_then(|victim| victim.get("industry")).and_then(Value::as_str) {
        let all_digits = !industry.is_empty() && industry.chars().all(|c| c.is_ascii_digit());
        // VCDB writes 0 or 000000 for an unknown industry.
        if all_digits && industry.chars().any(|c| c != '0') {
            tags.push(format!("industry:{industry}"));
        }
    }

    tags
}

fn push_unique(tags: &mut Vec<String>, tag: String) {
    if !tags.contains(&tag) {
        tags.push(tag);
    }
}

/// Lowercases a VERIS name and joins its words with `-`, so `Near miss` becomes `near-miss`.
fn slug(text: &str) -> String {
    let mut slug = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c.to_ascii_lowercase());
        } else if !slug.is_empty() && !slug.ends_with('-') {
            slug.push('-');
        }
    }
    slug.trim_end_matches('-').to_owned()
}

/// Derives a title: the first sentence of the summary, with whitespace collapsed, at most
/// [`TITLE_MAX_CHARS`] characters (cut at a word and ended with `…` when longer), or
/// `VERIS incident <id>` when the summary is empty.
pub fn title(summary: &str, id: &str) -> String {
    let text = summary.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.is_empty() {
        return format!("VERIS incident {id}");
    }

    let sentence = first_sentence(&text);
    let sentence = sentence.strip_suffix('.').unwrap_or(sentence);
    if sentence.chars().count() <= TITLE_MAX_CHARS {
        return sentence.to_owned();
    }

    let limit = TITLE_MAX_CHARS - 1;
    let cut: String = sentence.chars().take(limit).collect();
    let at_word = match cut.rfind(' ') {
        Some(space) if space > limit / 2 => &cut[..space],
        _ => cut.as_str(),
    };
    format!("{}…", at_word.trim_end())
}

/// Returns the text up to and including the first `.`, `!` or `?` that is followed by a
/// space and does not end an abbreviation, or all of it.
fn first_sentence(text: &str) -> &str {
    let mut characters = text.char_indices().peekable();
    while let Some((index, c)) = characters.next() {
        let ends_sentence = matches!(c, '.' | '!' | '?');
        let followed_by_space = matches!(characters.peek(), Some((_, ' ')));
        let end = index + c.len_utf8();
        if ends_sentence && followed_by_space && !(c == '.' && ends_abbreviation(&text[..end])) {
            return &text[..end];
        }
    }
    text
}

/// Returns whether the last word of `text`, which ends with a period, is an abbreviation
/// such as `St.`, `Dr.` or `U.S.`: a word with an inner period, or a capitalized word of at
/// most three letters.
fn ends_abbreviation(text: &str) -> bool {
    let word = text.rsplit(' ').next().unwrap_or(text);
    let stem = word
        .trim_end_matches('.')
        .trim_start_matches(|c: char| !c.is_alphanumeric());
    let short_capitalized = stem.chars().count() <= 3 && stem.chars().next().is_some_and(char::is_uppercase);
    stem.contains('.') || short_capitalized
}

/// Reads a JSON array of strings, skipping anything else.
fn strings(value: Option<&Value>) -> Vec<&str> {
    match value {
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn title_keeps_abbreviations_inside_the_first_sentence() {
        assert_eq!(
            title("St. Mary's County servers were breached. Data was taken.", "x"),
            "St. Mary's County servers were breached"
        );
        assert_eq!(title("\"U.S. agency lost a laptop. More later.", "x"), "\"U.S. agency lost a laptop");
        assert_eq!(title("Dr. Smith emailed records. Then more.", "x"), "Dr. Smith emailed records");
        assert_eq!(title("A clerk faxed a report. Then more.", "x"), "A clerk faxed a report");
    }

    fn object(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn category_follows_precedence_across_actions() {
        let cases = [
            (json!({ "action": { "hacking": { "variety": ["Unknown"] }, "malware": { "variety": ["Ransomware"] }, "social": { "variety": ["Phishing"] } } }), Category::Malware),
            (json!({ "action": { "hacking": { "variety": ["Use of stolen creds"] }, "social": { "variety": ["Phishing"] } } }), Category::Phishing),
            (json!({ "action": { "hacking": { "variety": ["DoS"] } } }), Category::DenialOfService),
            (json!({ "action": { "hacking": { "variety": ["SQLi", "DoS"] } } }), Category::DenialOfService),
            (json!({ "action": { "misuse": { "variety": ["Privilege abuse"] }, "social": { "variety": ["Bribery"] } } }), Category::InsiderMisuse),
            (json!({ "action": { "misuse": { "variety": ["Unapproved hardware"] } } }), Category::PolicyViolation),
            (json!({ "action": { "error": { "variety": ["Loss"] } } }), Category::PhysicalTheftOrLoss),
            (json!({ "action": { "error": { "variety": ["Misdelivery"] }, "physical": { "variety": ["Theft"] } } }), Category::PhysicalTheftOrLoss),
            (json!({ "action": { "error": { "variety": ["Misconfiguration"] } } }), Category::HumanError),
            (json!({ "action": { "social": { "variety": ["Extortion"] } } }), Category::Other),
            (json!({ "action": { "environmental": { "variety": ["Fire"] } } }), Category::Other),
            (json!({ "action": { "unknown": {} } }), Category::Other),
            (json!({ "action": { "hacking": {} } }), Category::UnauthorizedAccess),
            (json!({}), Category::Other),
        ];
        for (record, expected) in cases {
            assert_eq!(category(&object(record.clone())), expected, "record {record}");
        }
    }

    #[test]
    fn severity_from_overall_rating() {
        let cases = [
            ("Catastrophic", Severity::Critical),
            ("Damaging", Severity::High),
            ("Painful", Severity::Medium),
            ("Distracting", Severity::Low),
            ("Insignificant", Severity::Informational),
            ("Unknown", Severity::Unspecified),
        ];
        for (rating, expected) in cases {
            assert_eq!(severity(&object(json!({ "impact": { "overall_rating": rating } }))), expected, "rating {rating}");
        }
        assert_eq!(severity(&object(json!({ "impact": {} }))), Severity::Unspecified);
        assert_eq!(severity(&object(json!({}))), Severity::Unspecified);
    }

    #[test]
    fn resolution_from_security_incident() {
        let cases = [
            ("Confirmed", Resolution::TruePositive),
            ("Suspected", Resolution::TruePositive),
            ("Near miss", Resolution::TruePositive),
            ("False positive", Resolution::FalsePositive),
        ];
        for (state, expected) in cases {
            assert_eq!(resolution(&object(json!({ "security_incident": state }))), Ok(expected), "state {state}");
        }
        assert_eq!(resolution(&object(json!({}))), Err(MapError::MissingSecurityIncident));
        assert!(resolution(&object(json!({ "security_incident": "Maybe" }))).is_err());
    }

    #[test]
    fn detection_source_prefers_internal() {
        assert_eq!(detection_source(&object(json!({ "discovery_method": { "external": {}, "internal": {} } }))), "internal");
        assert_eq!(detection_source(&object(json!({ "discovery_method": { "partner": {} } }))), "partner");
        assert_eq!(detection_source(&object(json!({ "discovery_method": { "unknown": true } }))), "unknown");
        assert_eq!(detection_source(&object(json!({}))), "unknown");
    }

    #[test]
    fn tags_name_actions_state_and_victim() {
        let record = object(json!({
            "action": { "social": {}, "hacking": {} },
            "security_incident": "Near miss",
            "victim": { "country": ["US", "Unknown", "US"], "industry": "522110" }
        }));
        assert_eq!(tags(&record), ["veris", "action:hacking", "action:social", "near-miss", "country:us", "industry:522110"]);
    }

    #[test]
    fn tags_skip_unknown_industry() {
        let record = object(json!({ "victim": { "industry": "000000" } }));
        assert_eq!(tags(&record), ["veris"]);
    }

    #[test]
    fn title_is_the_first_sentence() {
        assert_eq!(title("A clerk  filed a claim. The bill was cancelled.", "x"), "A clerk filed a claim");
        assert_eq!(title("Misconfigured s3 buckets", "x"), "Misconfigured s3 buckets");
        assert_eq!(title("Version 2.5 leaked! Then more.", "x"), "Version 2.5 leaked!");
    }

    #[test]
    fn empty_summary_titles_by_id() {
        assert_eq!(title("  ", "0001AA7F"), "VERIS incident 0001AA7F");
    }

    #[test]
    fn long_title_is_cut_at_a_word() {
        let summary = "word ".repeat(80);
        let title = title(&summary, "x");
        assert!(title.chars().count() <= TITLE_MAX_CHARS, "{} characters", title.chars().count());
        assert!(title.ends_with("word…"), "{title}");
    }

    #[test]
    fn slug_joins_words() {
        assert_eq!(slug("Near miss"), "near-miss");
        assert_eq!(slug("Use of stolen creds!"), "use-of-stolen-creds");
    }
}
