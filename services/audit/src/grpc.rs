//! gRPC adapter of the audit service.

use docket_proto::audit::v1::audit_service_server::AuditService;
use docket_proto::audit::v1::*;
use tonic::{Request, Response, Status};

pub struct AuditApi {
    pool: docket_db::Pool,
}

impl AuditApi {
    pub fn new(pool: docket_db::Pool) -> Self {
        Self { pool }
    }
}

#[tonic::async_trait]
impl AuditService for AuditApi {
    async fn append_events(&self, _request: Request<AppendEventsRequest>) -> Result<Response<AppendEventsResponse>, Status> {
        let _ = &self.pool;
        Err(Status::unimplemented("AppendEvents"))
    }

    async fn list_records(&self, _request: Request<ListRecordsRequest>) -> Result<Response<ListRecordsResponse>, Status> {
        Err(Status::unimplemented("ListRecords"))
    }

    async fn verify_ledger(&self, _request: Request<VerifyLedgerRequest>) -> Result<Response<VerifyLedgerResponse>, Status> {
        Err(Status::unimplemented("VerifyLedger"))
    }
}
