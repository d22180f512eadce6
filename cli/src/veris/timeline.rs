//! The VERIS timeline turned into UTC instants.
//!
//! VERIS gives the incident's start as a calendar date, with the year required and the
//! month, day and time of day optional. It gives three later moments as durations, each
//! measured from the moment before it: `compromise` (first action to compromise),
//! `discovery` (compromise to discovery) and `containment` (discovery to containment).
//! An instant is computed only when the record determines it, and nothing is estimated.

use chrono::{DateTime, NaiveDate, NaiveTime, TimeDelta, Utc};
use serde_json::{Map, Number, Value};

use super::MapError;

/// Microseconds in one VERIS time unit. A month is 30.4375 days (365.25 / 12) and a year
/// is 365.25 days, the mean Julian lengths, because VERIS gives no calendar for them.
const MICROS_PER_SECOND: i128 = 1_000_000;
const MICROS_PER_MINUTE: i128 = 60 * MICROS_PER_SECOND;
const MICROS_PER_HOUR: i128 = 60 * MICROS_PER_MINUTE;
const MICROS_PER_DAY: i128 = 24 * MICROS_PER_HOUR;
const MICROS_PER_WEEK: i128 = 7 * MICROS_PER_DAY;
const MICROS_PER_MONTH: i128 = 2_629_800 * MICROS_PER_SECOND;
const MICROS_PER_YEAR: i128 = 31_557_600 * MICROS_PER_SECOND;

/// Instants derived from one record's timeline; `None` where the record does not determine it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Timeline {
    pub occurred_at: DateTime<Utc>,
    pub detected_at: Option<DateTime<Utc>>,
    pub contained_at: Option<DateTime<Utc>>,
}

/// Computes the timeline of a VERIS record from its `timeline` object.
///
/// - `occurred_at` is `timeline.incident` (a missing month or day counts as 1, a missing
///   time of day as 00:00, and a given time of day is read as UTC because VERIS stores no
///   zone);
/// - `detected_at` is `occurred_at + compromise + discovery`, where a compromise without a
///   numeric value and time unit adds nothing, and a discovery without them leaves
///   `detected_at` unset;
/// - `contained_at` is `detected_at + containment` when both are known.
pub fn timeline(record: &Map<String, Value>) -> Result<Timeline, MapError> {
    let timeline = match record.get("timeline") {
        Some(Value::Object(timeline)) => timeline,
        Some(other) => return Err(MapError::invalid("timeline", other, "an object")),
        None => return Err(MapError::MissingYear),
    };
    let occurred_at = incident_start(timeline)?;

    let compromise = duration(timeline, &COMPROMISE)?;
    let discovery = duration(timeline, &DISCOVERY)?;
    let containment = duration(timeline, &CONTAINMENT)?;

    let detected_at = match discovery {
        Some(discovery) => {
            let since_start = compromise.unwrap_or(TimeDelta::zero()) + discovery;
            Some(add(occurred_at, since_start, "timeline.discovery")?)
        }
        None => None,
    };
    let contained_at = match (detected_at, containment) {
        (Some(detected_at), Some(containment)) => Some(add(detected_at, containment, "timeline.containment")?),
        _ => None,
    };

    Ok(Timeline {
        occurred_at,
        detected_at,
        contained_at,
    })
}

fn add(instant: DateTime<Utc>, delta: TimeDelta, field: &'static str) -> Result<DateTime<Utc>, MapError> {
    instant.checked_add_signed(delta).ok_or(MapError::OutOfRange { field })
}

/// Reads `timeline.incident` as an instant.
fn incident_start(timeline: &Map<String, Value>) -> Result<DateTime<Utc>, MapError> {
    let incident = match timeline.get("incident") {
        Some(Value::Object(incident)) => incident,
        Some(other) => return Err(MapError::invalid("timeline.incident", other, "an object")),
        None => return Err(MapError::MissingYear),
    };

    let year = match incident.get("year") {
        None | Some(Value::Null) => return Err(MapError::MissingYear),
        Some(value) => date_part(value, "timeline.incident.year", 1, 9999)?,
    };
    let month = match incident.get("month") {
        None | Some(Value::Null) => 1,
        Some(value) => date_part(value, "timeline.incident.month", 1, 12)?,
    };
    let day = match incident.get("day") {
        None | Some(Value::Null) => 1,
        Some(value) => date_part(value, "timeline.incident.day", 1, 31)?,
    };
    let date = NaiveDate::from_ymd_opt(year as i32, month, day).ok_or(MapError::InvalidDate { year, month, day })?;

    let time = match incident.get("time") {
        None | Some(Value::Null) => NaiveTime::MIN,
        Some(Value::String(text)) => parse_time_of_day(text).ok_or_else(|| MapError::InvalidTime { value: text.clone() })?,
        Some(other) => return Err(MapError::invalid("timeline.incident.time", other, "a time of day such as \"04:05:00 PM\"")),
    };

    Ok(date.and_time(time).and_utc())
}

/// Reads an integer date component; VERIS writes them as JSON integers, and an integral
/// float such as `2014.0` is accepted as the same number.
fn date_part(value: &Value, field: &'static str, min: u32, max: u32) -> Result<u32, MapError> {
    let expected = match field {
        "timeline.incident.year" => "an integer year from 1 to 9999",
        "timeline.incident.month" => "an integer from 1 to 12",
        _ => "an integer from 1 to 31",
    };
    let number = match value {
        Value::Number(number) => number,
        other => return Err(MapError::invalid(field, other, expected)),
    };
    let integer = match (number.as_u64(), number.as_f64()) {
        (Some(integer), _) => Some(integer),
        (None, Some(float)) if float.fract() == 0.0 && float >= 0.0 && float <= u32::MAX as f64 => Some(float as u64),
        _ => None,
    };
    match integer {
        Some(integer) if integer >= u64::from(min) && integer <= u64::from(max) => Ok(integer as u32),
        _ => Err(MapError::invalid(field, value, expected)),
    }
}

/// Parses a time of day as VCDB writes it: `04:05:00 PM`, `03:00 AM`, `08:20:00 PM UTC`,
/// or 24-hour `16:05[:00]`. A trailing `UTC`, `GMT` or `Z` is accepted. Any other zone is not,
/// because converting it would need the victim's location.
pub fn parse_time_of_day(text: &str) -> Option<NaiveTime> {
    let mut text = text.trim();
    for zone in [" UTC", " GMT", "UTC", "GMT", "Z"] {
        if text.len() >= zone.len() && text[text.len() - zone.len()..].eq_ignore_ascii_case(zone) {
            text = text[..text.len() - zone.len()].trim_end();
            break;
        }
    }
    let formats = ["%I:%M:%S %p", "%I:%M %p", "%H:%M:%S", "%H:%M"];
    formats.iter().find_map(|format| NaiveTime::parse_from_str(text, format).ok())
}

/// Names of one timeline duration and its fields, for lookups and error messages.
struct Span {
    key: &'static str,
    entry_field: &'static str,
    unit_field: &'static str,
    value_field: &'static str,
}

const COMPROMISE: Span = Span {
    key: "compromise",
    entry_field: "timeline.compromise",
    unit_field: "timeline.compromise.unit",
    value_field: "timeline.compromise.value",
};

const DISCOVERY: Span = Span {
    key: "discovery",
    entry_field: "timeline.discovery",
    unit_field: "timeline.discovery.unit",
    value_field: "timeline.discovery.value",
};

const CONTAINMENT: Span = Span {
    key: "containment",
    entry_field: "timeline.containment",
    unit_field: "timeline.containment.unit",
    value_field: "timeline.containment.value",
};

/// Reads one timeline duration.
///
/// Returns `None` when the entry is missing, has no numeric `value`, or has the unit
/// `Never`, `NA` or `Unknown`, because the record then does not determine that moment.
fn duration(timeline: &Map<String, Value>, span: &Span) -> Result<Option<TimeDelta>, MapError> {
    let Span {
        key,
        entry_field,
        unit_field,
        value_field,
    } = *span;

    let entry = match timeline.get(key) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(entry)) => entry,
        Some(other) => return Err(MapError::invalid(entry_field, other, "an object with `unit` and `value`")),
    };

    let unit_micros = match entry.get("unit") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(unit)) => match micros_per_unit(unit) {
            Ok(Some(micros)) => micros,
            Ok(None) => return Ok(None),
            Err(()) => return Err(MapError::invalid(unit_field, &Value::String(unit.clone()), UNIT_NAMES)),
        },
        Some(other) => return Err(MapError::invalid(unit_field, other, UNIT_NAMES)),
    };

    let number = match entry.get("value") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Number(number)) => number,
        Some(other) => return Err(MapError::invalid(value_field, other, "a number that is zero or more")),
    };
    let (mantissa, scale) = decimal(number).ok_or(MapError::OutOfRange { field: entry_field })?;
    if mantissa < 0 {
        return Err(MapError::invalid(value_field, &Value::Number(number.clone()), "a number that is zero or more"));
    }

    let micros = scaled_micros(mantissa, scale, unit_micros).ok_or(MapError::OutOfRange { field: entry_field })?;
    let micros = i64::try_from(micros).map_err(|_| MapError::OutOfRange { field: entry_field })?;
    Ok(Some(TimeDelta::microseconds(micros)))
}

const UNIT_NAMES: &str = "one of Seconds, Minutes, Hours, Days, Weeks, Months, Years, Never, NA, Unknown";

/// Returns the length of a VERIS unit in microseconds, `Ok(None)` for the units that mark
/// the duration as not known, and `Err` for a name VERIS does not define.
fn micros_per_unit(unit: &str) -> Result<Option<i128>, ()> {
    match unit {
        "Seconds" => Ok(Some(MICROS_PER_SECOND)),
        "Minutes" => Ok(Some(MICROS_PER_MINUTE)),
        "Hours" => Ok(Some(MICROS_PER_HOUR)),
        "Days" => Ok(Some(MICROS_PER_DAY)),
        "Weeks" => Ok(Some(MICROS_PER_WEEK)),
        "Months" => Ok(Some(MICROS_PER_MONTH)),
        "Years" => Ok(Some(MICROS_PER_YEAR)),
        "Never" | "NA" | "Unknown" => Ok(None),
        _ => Err(()),
    }
}

/// Splits a JSON number into an integer mantissa and a count of decimal places, so that
/// `2.3` becomes `(23, 1)`. A float is taken in its shortest round-trip decimal form, which
/// is the text a JSON writer emits for it, so the value the source wrote is used exactly.
fn decimal(number: &Number) -> Option<(i128, u32)> {
    if let Some(unsigned) = number.as_u64() {
        return Some((i128::from(unsigned), 0));
    }
    if let Some(signed) = number.as_i64() {
        return Some((i128::from(signed), 0));
    }
    let float = number.as_f64()?;
    if !float.is_finite() {
        return None;
    }
    // Rust's `Display` for f64 prints the shortest decimal that reads back as the same
    // float, and never uses an exponent.
    let text = float.to_string();
    let (whole, fraction) = text.split_once('.').unwrap_or((&text, ""));
    let digits = format!("{whole}{fraction}");
    let mantissa = digits.parse::<i128>().ok()?;
    Some((mantissa, u32::try_from(fraction.len()).ok()?))
}

/// Computes `mantissa / 10^scale` units in whole microseconds, rounding a remainder of half a
/// microsecond or more up. Returns `None` on overflow.
fn scaled_micros(mantissa: i128, scale: u32, unit_micros: i128) -> Option<i128> {
    let product = mantissa.checked_mul(unit_micros)?;
    let divisor = match 10_i128.checked_pow(scale) {
        Some(divisor) => divisor,
        // 10^39 exceeds i128, and any product here is below half of it, so it rounds to zero.
        None => return Some(0),
    };
    let quotient = product / divisor;
    let remainder = product % divisor;
    if remainder * 2 >= divisor { Some(quotient + 1) } else { Some(quotient) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn timeline_of(value: Value) -> Result<Timeline, MapError> {
        let record = json!({ "timeline": value });
        timeline(record.as_object().unwrap())
    }

    fn instant(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn year_only_starts_january_first() {
        let timeline = timeline_of(json!({ "incident": { "year": 2020 } })).unwrap();
        assert_eq!(timeline.occurred_at, instant("2020-01-01T00:00:00Z"));
        assert_eq!(timeline.detected_at, None);
        assert_eq!(timeline.contained_at, None);
    }

    #[test]
    fn missing_day_starts_month() {
        let timeline = timeline_of(json!({ "incident": { "year": 2016, "month": 4 } })).unwrap();
        assert_eq!(timeline.occurred_at, instant("2016-04-01T00:00:00Z"));
    }

    #[test]
    fn incident_time_of_day_is_read_as_utc() {
        let timeline = timeline_of(json!({ "incident": { "year": 2021, "month": 12, "day": 23, "time": "04:05:00 PM" } })).unwrap();
        assert_eq!(timeline.occurred_at, instant("2021-12-23T16:05:00Z"));
    }

    #[test]
    fn time_of_day_formats() {
        let cases = [
            ("04:05:00 PM", "16:05:00"),
            ("03:00 AM", "03:00:00"),
            ("12:30:00 AM", "00:30:00"),
            ("12:30:00 PM", "12:30:00"),
            ("08:20:00 PM UTC", "20:20:00"),
            ("16:05", "16:05:00"),
            ("16:05:09Z", "16:05:09"),
        ];
        for (text, expected) in cases {
            let parsed = parse_time_of_day(text);
            assert_eq!(parsed, Some(NaiveTime::parse_from_str(expected, "%H:%M:%S").unwrap()), "time {text:?}");
        }
        assert_eq!(parse_time_of_day("04:00 PM EST"), None);
        assert_eq!(parse_time_of_day("noon"), None);
    }

    #[test]
    fn missing_year_is_rejected() {
        let error = timeline_of(json!({ "incident": { "month": 3 } })).unwrap_err();
        assert_eq!(error, MapError::MissingYear);
    }

    #[test]
    fn impossible_date_is_rejected() {
        let error = timeline_of(json!({ "incident": { "year": 2022, "month": 2, "day": 29 } })).unwrap_err();
        assert_eq!(
            error,
            MapError::InvalidDate {
                year: 2022,
                month: 2,
                day: 29
            }
        );
    }

    #[test]
    fn month_thirteen_is_rejected() {
        let error = timeline_of(json!({ "incident": { "year": 2022, "month": 13 } })).unwrap_err();
        assert!(matches!(error, MapError::Invalid { field: "timeline.incident.month", .. }), "{error:?}");
    }

    #[test]
    fn discovery_adds_to_compromise() {
        let timeline = timeline_of(json!({
            "incident": { "year": 2013, "month": 5, "day": 10 },
            "compromise": { "unit": "Hours", "value": 3 },
            "discovery": { "unit": "Days", "value": 2 },
            "containment": { "unit": "Minutes", "value": 90 }
        }))
        .unwrap();
        assert_eq!(timeline.detected_at, Some(instant("2013-05-12T03:00:00Z")));
        assert_eq!(timeline.contained_at, Some(instant("2013-05-12T04:30:00Z")));
    }

    #[test]
    fn compromise_without_value_adds_nothing() {
        let timeline = timeline_of(json!({
            "incident": { "year": 2013, "month": 5, "day": 10 },
            "compromise": { "unit": "Minutes" },
            "discovery": { "unit": "Weeks", "value": 1 }
        }))
        .unwrap();
        assert_eq!(timeline.detected_at, Some(instant("2013-05-17T00:00:00Z")));
    }

    #[test]
    fn discovery_without_value_leaves_detection_unset() {
        let timeline = timeline_of(json!({
            "incident": { "year": 2013 },
            "compromise": { "unit": "Days", "value": 2 },
            "discovery": { "unit": "Months" },
            "containment": { "unit": "Days", "value": 1 }
        }))
        .unwrap();
        assert_eq!(timeline.detected_at, None);
        assert_eq!(timeline.contained_at, None);
    }

    #[test]
    fn unknown_never_and_na_units_are_not_determined() {
        for unit in ["Unknown", "Never", "NA"] {
            let timeline = timeline_of(json!({
                "incident": { "year": 2013 },
                "discovery": { "unit": "Days", "value": 4 },
                "containment": { "unit": unit, "value": 3 }
            }))
            .unwrap();
            assert_eq!(timeline.detected_at, Some(instant("2013-01-05T00:00:00Z")), "unit {unit}");
            assert_eq!(timeline.contained_at, None, "unit {unit}");
        }
    }

    #[test]
    fn fractional_months_and_years_are_exact() {
        // 2.3 months = 2.3 × 30.4375 d = 70.00625 d = 70 d 0 h 9 m 0 s.
        let timeline = timeline_of(json!({
            "incident": { "year": 2015, "month": 1, "day": 1 },
            "discovery": { "unit": "Months", "value": 2.3 },
            "containment": { "unit": "Years", "value": 1.25 }
        }))
        .unwrap();
        assert_eq!(timeline.detected_at, Some(instant("2015-03-12T00:09:00Z")));
        // 1.25 years = 1.25 × 365.25 d = 456.5625 d = 456 d 13 h 30 m; 2015-03-12 + 365 d is
        // 2016-03-11 (across 2016-02-29), and 91 more days reach 2016-06-10.
        assert_eq!(timeline.contained_at, Some(instant("2016-06-10T13:39:00Z")));
    }

    #[test]
    fn sub_microsecond_values_round_to_nearest_microsecond() {
        assert_eq!(scaled_micros(15, 7, MICROS_PER_SECOND), Some(2));
        assert_eq!(scaled_micros(14, 7, MICROS_PER_SECOND), Some(1));
        assert_eq!(scaled_micros(1, 300, MICROS_PER_YEAR), Some(0));
    }

    #[test]
    fn decimal_uses_the_written_digits() {
        assert_eq!(decimal(&Number::from_f64(2.3).unwrap()), Some((23, 1)));
        assert_eq!(decimal(&Number::from_f64(1.0).unwrap()), Some((1, 0)));
        assert_eq!(decimal(&Number::from(48_u64)), Some((48, 0)));
    }

    #[test]
    fn negative_duration_is_rejected() {
        let error = timeline_of(json!({ "incident": { "year": 2013 }, "discovery": { "unit": "Days", "value": -1 } })).unwrap_err();
        assert!(matches!(error, MapError::Invalid { field: "timeline.discovery.value", .. }), "{error:?}");
    }

    #[test]
    fn unknown_unit_name_is_rejected() {
        let error = timeline_of(json!({ "incident": { "year": 2013 }, "discovery": { "unit": "Fortnights", "value": 1 } })).unwrap_err();
        assert!(matches!(error, MapError::Invalid { field: "timeline.discovery.unit", .. }), "{error:?}");
    }

    #[test]
    fn duration_beyond_the_calendar_is_rejected() {
        let error = timeline_of(json!({ "incident": { "year": 2013 }, "discovery": { "unit": "Years", "value": 1e9 } })).unwrap_err();
        assert_eq!(error, MapError::OutOfRange { field: "timeline.discovery" });
    }
}
