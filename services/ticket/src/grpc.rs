//! gRPC adapter of the ticket service.

use docket_proto::ticket::v1::ticket_service_server::TicketService;
use docket_proto::ticket::v1::*;
use tonic::{Request, Response, Status};

pub struct TicketApi {
    pool: docket_db::Pool,
}

impl TicketApi {
    pub fn new(pool: docket_db::Pool) -> Self {
        Self { pool }
    }
}

#[tonic::async_trait]
impl TicketService for TicketApi {
    async fn create_ticket(&self, _request: Request<CreateTicketRequest>) -> Result<Response<Ticket>, Status> {
        let _ = &self.pool;
        Err(Status::unimplemented("CreateTicket"))
    }
    async fn get_ticket(&self, _request: Request<GetTicketRequest>) -> Result<Response<Ticket>, Status> {
        Err(Status::unimplemented("GetTicket"))
    }
    async fn list_tickets(&self, _request: Request<ListTicketsRequest>) -> Result<Response<ListTicketsResponse>, Status> {
        Err(Status::unimplemented("ListTickets"))
    }
    async fn update_ticket(&self, _request: Request<UpdateTicketRequest>) -> Result<Response<Ticket>, Status> {
        Err(Status::unimplemented("UpdateTicket"))
    }
    async fn transition_ticket(&self, _request: Request<TransitionTicketRequest>) -> Result<Response<Ticket>, Status> {
        Err(Status::unimplemented("TransitionTicket"))
    }
    async fn add_comment(&self, _request: Request<AddCommentRequest>) -> Result<Response<Comment>, Status> {
        Err(Status::unimplemented("AddComment"))
    }
    async fn list_ticket_history(
        &self,
        _request: Request<ListTicketHistoryRequest>,
    ) -> Result<Response<ListTicketHistoryResponse>, Status> {
        Err(Status::unimplemented("ListTicketHistory"))
    }
    async fn import_tickets(&self, _request: Request<ImportTicketsRequest>) -> Result<Response<ImportTicketsResponse>, Status> {
        Err(Status::unimplemented("ImportTickets"))
    }
}
