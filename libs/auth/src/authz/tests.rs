use super::*;
use crate::principal::PrincipalKind;

/// A literal copy of the permission table in docs/security.md. The code's table, this copy
/// and the document must all agree, so a change to one alone fails a test.
const EXPECTED_MATRIX: &str = "
| RPC | viewer | analyst | lead | auditor | admin | service |
|---|---|---|---|---|---|---|
| `/docket.ticket.v1.TicketService/CreateTicket` | no | yes | yes | no | yes | no |
| `/docket.ticket.v1.TicketService/GetTicket` | yes | yes | yes | yes | yes | no |
| `/docket.ticket.v1.TicketService/ListTickets` | yes | yes | yes | yes | yes | no |
| `/docket.ticket.v1.TicketService/UpdateTicket` | no | yes | yes | no | yes | no |
| `/docket.ticket.v1.TicketService/TransitionTicket` | no | yes | yes | no | yes | no |
| `/docket.ticket.v1.TicketService/AddComment` | no | yes | yes | no | yes | no |
| `/docket.ticket.v1.TicketService/ListTicketHistory` | yes | yes | yes | yes | yes | no |
| `/docket.ticket.v1.TicketService/ImportTickets` | no | no | yes | no | yes | no |
| `/docket.audit.v1.AuditService/AppendEvents` | no | no | no | no | no | yes |
| `/docket.audit.v1.AuditService/ListRecords` | no | no | no | yes | yes | no |
| `/docket.audit.v1.AuditService/VerifyLedger` | no | no | no | yes | yes | no |
| `/docket.metrics.v1.MetricsService/RecordEvents` | no | no | no | no | no | yes |
| `/docket.metrics.v1.MetricsService/GetResponseMetrics` | yes | yes | yes | yes | yes | no |
";

const SECURITY_DOC: &str = include_str!("../../../../docs/security.md");

/// One parsed table row: the method path and one yes/no cell per role column.
type MatrixRow = (String, Vec<String>);

/// Parses the header and body rows of the first Markdown table whose header starts with
/// `| RPC |`.
fn parse_matrix(text: &str) -> (Vec<String>, Vec<MatrixRow>) {
    let cells = |line: &str| -> Vec<String> {
        line.trim()
            .trim_matches('|')
            .split('|')
            .map(|cell| cell.trim().trim_matches('`').to_owned())
            .collect()
    };
    let mut lines = text
        .lines()
        .skip_while(|line| !line.trim_start().starts_with("| RPC |"));
    let header = cells(lines.next().expect("the text has a `| RPC |` table"));
    let rows = lines
        .skip(1)
        .take_while(|line| line.trim_start().starts_with('|'))
        .map(|line| {
            let mut row = cells(line);
            let path = row.remove(0);
            (path, row)
        })
        .collect();
    (header, rows)
}

fn principal(subject: &str, roles: &[Role]) -> Principal {
    let kind = if roles == [Role::Service] {
        PrincipalKind::Service
    } else {
        PrincipalKind::Human
    };
    Principal {
        subject: subject.into(),
        roles: roles.to_vec(),
        kind,
        token_id: None,
    }
}

#[test]
fn expected_matrix_lists_every_role_and_rpc_once() {
    let (header, rows) = parse_matrix(EXPECTED_MATRIX);

    let roles: Vec<&str> = Role::ALL.iter().map(|role| role.as_str()).collect();
    assert_eq!(header[1..], roles[..]);
    let paths: Vec<&str> = rows.iter().map(|(path, _)| path.as_str()).collect();
    let all_paths: Vec<&str> = Rpc::ALL.iter().map(|rpc| rpc.path()).collect();
    assert_eq!(paths, all_paths);
}

#[test]
fn authorize_matches_expected_matrix() {
    let (_, rows) = parse_matrix(EXPECTED_MATRIX);

    for (path, cells) in rows {
        let rpc = Rpc::from_path(&path).expect("the table names a Docket RPC");
        for (role, cell) in Role::ALL.into_iter().zip(&cells) {
            let expected = match cell.as_str() {
                "yes" => true,
                "no" => false,
                other => panic!("cell {other:?} for {path} and {role} is neither yes nor no"),
            };
            let allowed = authorize(&principal("user-1", &[role]), rpc).is_ok();
            assert_eq!(allowed, expected, "{role} calling {path}");
        }
    }
}

#[test]
fn security_doc_matrix_equals_expected_matrix() {
    assert_eq!(parse_matrix(SECURITY_DOC), parse_matrix(EXPECTED_MATRIX));
}

#[test]
fn any_matching_role_is_enough() {
    let viewer_and_auditor = principal("user-1", &[Role::Viewer, Role::Auditor]);

    assert_eq!(authorize(&viewer_and_auditor, Rpc::VerifyLedger), Ok(()));
}

#[test]
fn denied_rpc_names_rpc_and_allowed_roles() {
    let denied = authorize(&principal("user-1", &[Role::Analyst]), Rpc::ImportTickets)
        .expect_err("analysts cannot import");

    assert_eq!(
        denied.to_string(),
        "permission denied: /docket.ticket.v1.TicketService/ImportTickets requires one of the roles lead, admin, and the caller has analyst; ask an administrator for a token with one of them"
    );
}

#[test]
fn denied_becomes_permission_denied() {
    let denied = authorize(&principal("user-1", &[Role::Viewer]), Rpc::AppendEvents)
        .expect_err("viewers cannot append");

    let status = tonic::Status::from(denied);

    assert_eq!(status.code(), tonic::Code::PermissionDenied);
    assert!(
        status
            .message()
            .contains("/docket.audit.v1.AuditService/AppendEvents")
    );
    assert!(
        status
            .message()
            .contains("requires one of the roles service")
    );
}

#[test]
fn authorize_path_returns_the_rpc() {
    let analyst = principal("user-1", &[Role::Analyst]);

    assert_eq!(
        authorize_path(&analyst, "/docket.ticket.v1.TicketService/AddComment"),
        Ok(Rpc::AddComment)
    );
}

#[test]
fn authorize_path_denies_unknown_path() {
    let admin = principal("user-1", &[Role::Admin]);

    assert_eq!(
        authorize_path(&admin, "/docket.ticket.v1.TicketService/DeleteTicket"),
        Err(Denied::UnknownRpc {
            path: "/docket.ticket.v1.TicketService/DeleteTicket".into()
        })
    );
}

#[test]
fn authorize_path_denies_by_role() {
    let viewer = principal("user-1", &[Role::Viewer]);

    assert!(matches!(
        authorize_path(&viewer, "/docket.ticket.v1.TicketService/UpdateTicket"),
        Err(Denied::Rpc {
            rpc: Rpc::UpdateTicket,
            ..
        })
    ));
}

// Ticket-level rules. "me" is the caller's subject and "bob" another user.

#[test]
fn ticket_change_rules() {
    use TicketChangeKind::{Close, Other, Reassign, Reopen};
    let to_me = Reassign {
        new_assignee: Some("me"),
    };
    let to_bob = Reassign {
        new_assignee: Some("bob"),
    };
    let unassign = Reassign { new_assignee: None };

    // (role, change, current assignee, allowed)
    let cases: &[(Role, TicketChangeKind<'_>, Option<&str>, bool)] = &[
        (Role::Analyst, Close, Some("me"), true),
        (Role::Analyst, Close, Some("bob"), false),
        (Role::Analyst, Close, None, false),
        (Role::Analyst, Reopen, Some("me"), true),
        (Role::Analyst, Reopen, Some("bob"), false),
        (Role::Analyst, Reopen, None, false),
        (Role::Analyst, to_bob, Some("me"), true),
        (Role::Analyst, unassign, Some("me"), true),
        (Role::Analyst, to_me, None, true),
        (Role::Analyst, to_bob, None, false),
        (Role::Analyst, to_me, Some("bob"), false),
        (Role::Analyst, unassign, Some("bob"), false),
        (Role::Analyst, Other, Some("bob"), true),
        (Role::Analyst, Other, None, true),
        (Role::Lead, Close, Some("bob"), true),
        (Role::Lead, Reopen, None, true),
        (Role::Lead, to_me, Some("bob"), true),
        (Role::Lead, to_bob, None, true),
        (Role::Admin, Close, Some("bob"), true),
        (Role::Admin, Reopen, Some("bob"), true),
        (Role::Admin, to_bob, Some("me"), true),
        (Role::Viewer, Other, Some("me"), false),
        (Role::Viewer, Close, Some("me"), false),
        (Role::Auditor, Reopen, Some("me"), false),
        (Role::Service, Other, None, false),
        (Role::Service, to_me, None, false),
    ];

    for (role, kind, current_assignee, expected) in cases.iter().copied() {
        let change = TicketChange {
            kind,
            current_assignee,
        };

        let allowed = authorize_ticket_change(&principal("me", &[role]), change).is_ok();

        assert_eq!(
            allowed, expected,
            "{role} {kind:?} on ticket assigned to {current_assignee:?}"
        );
    }
}

#[test]
fn ticket_change_denial_names_the_roles() {
    let change = TicketChange {
        kind: TicketChangeKind::Close,
        current_assignee: Some("bob"),
    };

    let denied = authorize_ticket_change(&principal("me", &[Role::Analyst]), change)
        .expect_err("analysts cannot close other people's tickets");

    assert_eq!(
        denied.to_string(),
        "permission denied: closing a ticket that is assigned to another user requires one of the roles lead, admin; ask a lead, or have the ticket assigned to you first"
    );
}

#[test]
fn ticket_change_denial_does_not_name_the_assignee() {
    let change = TicketChange {
        kind: TicketChangeKind::Reopen,
        current_assignee: Some("bob-7a1f"),
    };

    let denied = authorize_ticket_change(&principal("me", &[Role::Analyst]), change)
        .expect_err("analysts cannot reopen other people's tickets");

    assert!(!denied.to_string().contains("bob-7a1f"));
}
