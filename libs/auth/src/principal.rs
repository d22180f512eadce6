//! Roles and the authenticated caller built from a verified token.

use std::fmt;
use std::str::FromStr;

/// A role named in the `roles` claim of a token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// Reads tickets and metrics.
    Viewer,
    /// Works incidents: everything a viewer does, plus creating and changing tickets.
    Analyst,
    /// Runs the team: everything an analyst does, plus imports and changes to other people's tickets.
    Lead,
    /// Reads tickets, metrics and the whole audit API.
    Auditor,
    /// Everything a lead does, plus reading the audit API.
    Admin,
    /// Another Docket service calling on its own behalf, such as the outbox relay.
    Service,
}

impl Role {
    /// Every role, in the column order of the permission table in docs/security.md.
    pub const ALL: [Role; 6] = [
        Role::Viewer,
        Role::Analyst,
        Role::Lead,
        Role::Auditor,
        Role::Admin,
        Role::Service,
    ];

    /// Returns the name used in the `roles` claim.
    pub const fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Analyst => "analyst",
            Role::Lead => "lead",
            Role::Auditor => "auditor",
            Role::Admin => "admin",
            Role::Service => "service",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// Error of [`Role::from_str`] for a name that is not a Docket role.
///
/// It does not carry the rejected name, because that name comes from a token and token
/// content never appears in error messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown role name; the roles are viewer, analyst, lead, auditor, admin and service")]
pub struct UnknownRole;

impl FromStr for Role {
    type Err = UnknownRole;

    /// Parses the exact lowercase name, so `Admin` is not `admin`.
    fn from_str(name: &str) -> Result<Role, UnknownRole> {
        Role::ALL
            .into_iter()
            .find(|role| role.as_str() == name)
            .ok_or(UnknownRole)
    }
}

/// Whether a principal is a person or another Docket service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrincipalKind {
    Human,
    /// A token whose only role is [`Role::Service`].
    Service,
}

/// The caller of a request, as proven by a verified token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// The `sub` claim: the user name or the service name that history and audit records show.
    pub subject: String,
    /// The roles from the `roles` claim, sorted and without duplicates, never empty.
    pub roles: Vec<Role>,
    pub kind: PrincipalKind,
    /// The `jti` claim, when the token has one.
    pub token_id: Option<String>,
}

impl Principal {
    pub fn has_role(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// Returns the role names joined with ", ", for messages.
    pub fn role_names(&self) -> String {
        join_roles(&self.roles)
    }
}

pub(crate) fn join_roles(roles: &[Role]) -> String {
    let names: Vec<&str> = roles.iter().map(|role| role.as_str()).collect();
    names.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_names_round_trip() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role), "role {role}");
        }
    }

    #[test]
    fn role_parse_is_case_sensitive() {
        assert_eq!("Admin".parse::<Role>(), Err(UnknownRole));
    }

    #[test]
    fn role_parse_rejects_unknown_name() {
        assert_eq!("superuser".parse::<Role>(), Err(UnknownRole));
    }

    #[test]
    fn unknown_role_message_lists_the_roles() {
        let message = UnknownRole.to_string();

        assert!(
            message.contains("viewer, analyst, lead, auditor, admin and service"),
            "{message}"
        );
    }
}
