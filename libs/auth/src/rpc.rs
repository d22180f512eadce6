//! Every RPC of the Docket services, keyed by its full gRPC method path.

use std::fmt;

/// One RPC of TicketService, AuditService or MetricsService.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Rpc {
    CreateTicket,
    GetTicket,
    ListTickets,
    UpdateTicket,
    TransitionTicket,
    AddComment,
    ListTicketHistory,
    ImportTickets,
    AppendEvents,
    ListRecords,
    VerifyLedger,
    RecordEvents,
    GetResponseMetrics,
}

impl Rpc {
    /// Every RPC, in the row order of the permission table in docs/security.md.
    pub const ALL: [Rpc; 13] = [
        Rpc::CreateTicket,
        Rpc::GetTicket,
        Rpc::ListTickets,
        Rpc::UpdateTicket,
        Rpc::TransitionTicket,
        Rpc::AddComment,
        Rpc::ListTicketHistory,
        Rpc::ImportTickets,
        Rpc::AppendEvents,
        Rpc::ListRecords,
        Rpc::VerifyLedger,
        Rpc::RecordEvents,
        Rpc::GetResponseMetrics,
    ];

    /// Returns the gRPC method path, the `:path` of the HTTP/2 request.
    pub const fn path(self) -> &'static str {
        match self {
            Rpc::CreateTicket => "/docket.ticket.v1.TicketService/CreateTicket",
            Rpc::GetTicket => "/docket.ticket.v1.TicketService/GetTicket",
            Rpc::ListTickets => "/docket.ticket.v1.TicketService/ListTickets",
            Rpc::UpdateTicket => "/docket.ticket.v1.TicketService/UpdateTicket",
            Rpc::TransitionTicket => "/docket.ticket.v1.TicketService/TransitionTicket",
            Rpc::AddComment => "/docket.ticket.v1.TicketService/AddComment",
            Rpc::ListTicketHistory => "/docket.ticket.v1.TicketService/ListTicketHistory",
            Rpc::ImportTickets => "/docket.ticket.v1.TicketService/ImportTickets",
            Rpc::AppendEvents => "/docket.audit.v1.AuditService/AppendEvents",
            Rpc::ListRecords => "/docket.audit.v1.AuditService/ListRecords",
            Rpc::VerifyLedger => "/docket.audit.v1.AuditService/VerifyLedger",
            Rpc::RecordEvents => "/docket.metrics.v1.MetricsService/RecordEvents",
            Rpc::GetResponseMetrics => "/docket.metrics.v1.MetricsService/GetResponseMetrics",
        }
    }

    /// Returns the method name without the service, as the permission table shows it.
    pub fn method(self) -> &'static str {
        let path = self.path();
        path.rsplit_once('/').map_or(path, |(_, method)| method)
    }

    /// Returns the RPC with this exact method path, or `None` for any other path.
    pub fn from_path(path: &str) -> Option<Rpc> {
        Rpc::ALL.into_iter().find(|rpc| rpc.path() == path)
    }
}

impl fmt::Display for Rpc {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.path())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use prost::Message;
    use prost_types::FileDescriptorSet;

    use super::*;

    /// Lists `/package.Service/Method` for every method in the compiled Docket contracts.
    fn contract_paths() -> BTreeSet<String> {
        let descriptors = FileDescriptorSet::decode(docket_proto::FILE_DESCRIPTOR_SET)
            .expect("descriptor set decodes");
        let mut paths = BTreeSet::new();
        for file in descriptors.file {
            for service in &file.service {
                for method in &service.method {
                    paths.insert(format!(
                        "/{}.{}/{}",
                        file.package(),
                        service.name(),
                        method.name()
                    ));
                }
            }
        }
        paths
    }

    #[test]
    fn rpc_list_matches_contracts() {
        let listed: BTreeSet<String> = Rpc::ALL.iter().map(|rpc| rpc.path().to_owned()).collect();

        assert_eq!(listed, contract_paths());
    }

    #[test]
    fn from_path_round_trips() {
        for rpc in Rpc::ALL {
            assert_eq!(Rpc::from_path(rpc.path()), Some(rpc), "rpc {rpc}");
        }
    }

    #[test]
    fn from_path_rejects_unknown_path() {
        assert_eq!(
            Rpc::from_path("/docket.ticket.v1.TicketService/DeleteTicket"),
            None
        );
    }

    #[test]
    fn from_path_is_exact() {
        assert_eq!(
            Rpc::from_path("/docket.ticket.v1.TicketService/GetTicket/"),
            None
        );
    }

    #[test]
    fn method_drops_the_service() {
        assert_eq!(Rpc::AppendEvents.method(), "AppendEvents");
    }
}
