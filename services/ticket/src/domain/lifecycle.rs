//! The lifecycle graph, after the incident handling phases of NIST SP 800-61.
//!
//! NEW → ACKNOWLEDGED → INVESTIGATING → CONTAINED → ERADICATED → RECOVERED → RESOLVED →
//! CLOSED is the main path. Any open state may also move to RESOLVED early, and RESOLVED
//! or CLOSED may be reopened to INVESTIGATING.

use chrono::{DateTime, Utc};

use super::{Resolution, Status, Ticket, Violations};

/// States that `from` may move to, in lifecycle order.
pub fn allowed_moves(from: Status) -> Vec<Status> {
    let mut moves = Vec::new();
    let next = match from {
        Status::New => Some(Status::Acknowledged),
        Status::Acknowledged => Some(Status::Investigating),
        Status::Investigating => Some(Status::Contained),
        Status::Contained => Some(Status::Eradicated),
        Status::Eradicated => Some(Status::Recovered),
        Status::Recovered => Some(Status::Resolved),
        Status::Resolved => Some(Status::Closed),
        Status::Closed => None,
    };
    if !from.is_open() {
        moves.push(Status::Investigating);
    }
    moves.extend(next);
    if from.is_open() && next != Some(Status::Resolved) {
        moves.push(Status::Resolved);
    }
    moves.sort();
    moves
}

/// Reason a transition was not applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TransitionError {
    /// The move is not an edge of the graph.
    NotAllowed {
        from: Status,
        to: Status,
        allowed: Vec<Status>,
    },
    /// The request itself is invalid, for example a resolution is missing.
    Invalid(Violations),
}

/// Returns a copy of `current` moved to `to` at `now`, with the lifecycle timestamps,
/// resolution and reopen count the move implies.
pub fn transition(
    current: &Ticket,
    to: Status,
    resolution: Option<Resolution>,
    now: DateTime<Utc>,
) -> Result<Ticket, TransitionError> {
    let from = current.status;
    let allowed = allowed_moves(from);
    if !allowed.contains(&to) {
        return Err(TransitionError::NotAllowed { from, to, allowed });
    }

    let mut next = current.clone();
    next.status = to;
    match to {
        Status::Acknowledged => set_once(&mut next.acknowledged_at, now),
        Status::Contained => set_once(&mut next.contained_at, now),
        Status::Eradicated => set_once(&mut next.eradicated_at, now),
        Status::Recovered => set_once(&mut next.recovered_at, now),
        Status::Resolved => {
            let Some(resolution) = resolution else {
                let mut violations = Violations::default();
                violations.add(
                    "resolution",
                    format!(
                        "resolution is required when resolving; use one of {}",
                        Resolution::names()
                    ),
                );
                return Err(TransitionError::Invalid(violations));
            };
            next.resolution = Some(resolution);
            set_once(&mut next.resolved_at, now);
            next.last_resolved_at = Some(now);
        }
        Status::Closed => set_once(&mut next.closed_at, now),
        Status::Investigating if !from.is_open() => {
            // A reopen starts a new cycle: the first timestamps stay for the metrics of
            // the first cycle, and the verdict of the closed cycle no longer applies.
            next.reopen_count += 1;
            next.last_resolved_at = None;
            next.resolution = None;
        }
        Status::New | Status::Investigating => {}
    }

    let mut violations = Violations::default();
    super::ticket::check_timestamp_order(&next, &mut violations);
    if !violations.is_empty() {
        return Err(TransitionError::Invalid(violations));
    }
    Ok(next)
}

/// Checks the optional note of a transition.
pub fn check_note(note: &str) -> Result<(), Violations> {
    let mut violations = Violations::default();
    super::check_text(
        "note",
        note,
        0,
        super::ticket::MAX_NOTE_LEN,
        &mut violations,
    );
    violations.into_result(())
}

fn set_once(slot: &mut Option<DateTime<Utc>>, now: DateTime<Utc>) {
    if slot.is_none() {
        *slot = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ticket::{CreateInput, validate_create};
    use crate::domain::{Category, Severity};

    fn ticket(status: Status) -> Ticket {
        let input = CreateInput {
            request_id: "r".into(),
            title: "t".into(),
            severity: Severity::Low.code(),
            category: Category::Other.code(),
            ..CreateInput::default()
        };
        let mut ticket = validate_create(input, "alice", crate::domain::now())
            .unwrap()
            .ticket;
        ticket.status = status;
        ticket
    }

    #[test]
    fn every_pair_follows_the_graph() {
        use Status::*;
        let edges = [
            (New, Acknowledged),
            (Acknowledged, Investigating),
            (Investigating, Contained),
            (Contained, Eradicated),
            (Eradicated, Recovered),
            (Recovered, Resolved),
            (Resolved, Closed),
            (New, Resolved),
            (Acknowledged, Resolved),
            (Investigating, Resolved),
            (Contained, Resolved),
            (Eradicated, Resolved),
            (Resolved, Investigating),
            (Closed, Investigating),
        ];
        for from in Status::ALL {
            for to in Status::ALL {
                let expected = edges.contains(&(*from, *to));
                let result = transition(
                    &ticket(*from),
                    *to,
                    Some(Resolution::Benign),
                    crate::domain::now(),
                );
                assert_eq!(result.is_ok(), expected, "{from} -> {to}");
            }
        }
    }

    #[test]
    fn resolve_requires_resolution() {
        let result = transition(
            &ticket(Status::Investigating),
            Status::Resolved,
            None,
            crate::domain::now(),
        );
        assert!(matches!(result, Err(TransitionError::Invalid(_))));
    }

    #[test]
    fn reopen_keeps_first_resolution_time() {
        let now = crate::domain::now();
        let resolved = transition(
            &ticket(Status::Investigating),
            Status::Resolved,
            Some(Resolution::TruePositive),
            now,
        )
        .unwrap();
        let reopened = transition(&resolved, Status::Investigating, None, now).unwrap();
        assert_eq!(reopened.resolved_at, Some(now));
        assert_eq!(reopened.last_resolved_at, None);
        assert_eq!(reopened.reopen_count, 1);
    }
}
