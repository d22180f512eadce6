//! Authorization: which roles may call each RPC, and the per-ticket rules for closing,
//! reopening and reassigning.

use crate::principal::{Principal, Role, join_roles};
use crate::rpc::Rpc;

/// Returns the roles that may call `rpc`. This match is the permission table. The table in
/// docs/security.md documents it, and a unit test fails when the two differ.
pub const fn allowed_roles(rpc: Rpc) -> &'static [Role] {
    use Role::{Admin, Analyst, Auditor, Lead, Service, Viewer};
    match rpc {
        Rpc::GetTicket | Rpc::ListTickets | Rpc::ListTicketHistory | Rpc::GetResponseMetrics => {
            &[Viewer, Analyst, Lead, Auditor, Admin]
        }
        Rpc::CreateTicket | Rpc::UpdateTicket | Rpc::TransitionTicket | Rpc::AddComment => {
            &[Analyst, Lead, Admin]
        }
        Rpc::ImportTickets => &[Lead, Admin],
        Rpc::ListRecords | Rpc::VerifyLedger => &[Auditor, Admin],
        Rpc::AppendEvents | Rpc::RecordEvents => &[Service],
    }
}

/// Roles that may change any ticket, regardless of its assignee.
const TICKET_MANAGERS: &[Role] = &[Role::Lead, Role::Admin];

/// Roles that may change tickets at all. Analysts are limited further by [`authorize_ticket_change`].
const TICKET_EDITORS: &[Role] = &[Role::Analyst, Role::Lead, Role::Admin];

/// Reason a call was denied. Every variant maps to PERMISSION_DENIED, and the service must
/// then change nothing and audit the attempt.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    #[error(
        "permission denied: {rpc} requires one of the roles {}, and the caller has {}; ask an administrator for a token with one of them",
        join_roles(allowed),
        join_roles(caller_roles)
    )]
    Rpc {
        rpc: Rpc,
        allowed: &'static [Role],
        caller_roles: Vec<Role>,
    },

    #[error("permission denied: {path} is not a Docket RPC, so no role may call it")]
    UnknownRpc { path: String },

    #[error(
        "permission denied: {action} a ticket that is {assignment} requires one of the roles {}; ask a lead, or have the ticket assigned to you first",
        join_roles(allowed)
    )]
    TicketChange {
        action: &'static str,
        /// "assigned to another user", "unassigned" or "assigned to you".
        assignment: &'static str,
        allowed: &'static [Role],
    },
}

impl From<Denied> for tonic::Status {
    fn from(denied: Denied) -> tonic::Status {
        tonic::Status::permission_denied(denied.to_string())
    }
}

/// Allows the call when the principal has one of the roles that [`allowed_roles`] lists
/// for `rpc`.
pub fn authorize(principal: &Principal, rpc: Rpc) -> Result<(), Denied> {
    let allowed = allowed_roles(rpc);
    if principal.roles.iter().any(|role| allowed.contains(role)) {
        Ok(())
    } else {
        Err(Denied::Rpc {
            rpc,
            allowed,
            caller_roles: principal.roles.clone(),
        })
    }
}

/// Authorizes a call by its gRPC method path, denying any path that is not a Docket RPC.
pub fn authorize_path(principal: &Principal, path: &str) -> Result<Rpc, Denied> {
    let rpc = Rpc::from_path(path).ok_or_else(|| Denied::UnknownRpc {
        path: path.to_owned(),
    })?;
    authorize(principal, rpc)?;
    Ok(rpc)
}

/// Kind of a ticket change, as the ticket-level rules distinguish them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TicketChangeKind<'a> {
    /// A transition to CLOSED.
    Close,
    /// A transition out of RESOLVED or CLOSED back to an open state.
    Reopen,
    /// A change of the assignee. A `new_assignee` of `None` unassigns the ticket.
    Reassign { new_assignee: Option<&'a str> },
    /// Any other change: fields, comments, other transitions.
    Other,
}

/// A change to one ticket, with the ticket state that the rules depend on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TicketChange<'a> {
    pub kind: TicketChangeKind<'a>,
    /// The subject the ticket is assigned to before the change, as stored on the ticket.
    pub current_assignee: Option<&'a str>,
}

/// Applies the ticket-level rules after [`authorize`] has allowed the RPC.
///
/// Leads and admins may make any change. An analyst may close, reopen or reassign a ticket
/// only while it is assigned to the analyst. An analyst may also take an unassigned ticket
/// by reassigning it to themselves, and other changes need no assignment. Every other role
/// is denied, because only analysts, leads and admins change tickets.
pub fn authorize_ticket_change(
    principal: &Principal,
    change: TicketChange<'_>,
) -> Result<(), Denied> {
    let action = match change.kind {
        TicketChangeKind::Close => "closing",
        TicketChangeKind::Reopen => "reopening",
        TicketChangeKind::Reassign { .. } => "reassigning",
        TicketChangeKind::Other => "changing",
    };
    let assignment = match change.current_assignee {
        None => "unassigned",
        Some(assignee) if assignee == principal.subject => "assigned to you",
        Some(_) => "assigned to another user",
    };

    if has_any(principal, TICKET_MANAGERS) {
        return Ok(());
    }
    if !principal.has_role(Role::Analyst) {
        return Err(Denied::TicketChange {
            action,
            assignment,
            allowed: TICKET_EDITORS,
        });
    }

    let own_ticket = change.current_assignee == Some(principal.subject.as_str());
    let allowed = match change.kind {
        TicketChangeKind::Other => true,
        TicketChangeKind::Close | TicketChangeKind::Reopen => own_ticket,
        TicketChangeKind::Reassign { new_assignee } => {
            let taking_unassigned = change.current_assignee.is_none()
                && new_assignee == Some(principal.subject.as_str());
            own_ticket || taking_unassigned
        }
    };
    if allowed {
        Ok(())
    } else {
        Err(Denied::TicketChange {
            action,
            assignment,
            allowed: TICKET_MANAGERS,
        })
    }
}

fn has_any(principal: &Principal, roles: &[Role]) -> bool {
    principal.roles.iter().any(|role| roles.contains(role))
}

#[cfg(test)]
mod tests;
