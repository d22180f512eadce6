//! gRPC adapter of the metrics service.

use docket_proto::metrics::v1::metrics_service_server::MetricsService;
use docket_proto::metrics::v1::*;
use tonic::{Request, Response, Status};

pub struct MetricsApi {
    pool: docket_db::Pool,
}

impl MetricsApi {
    pub fn new(pool: docket_db::Pool) -> Self {
        Self { pool }
    }
}

#[tonic::async_trait]
impl MetricsService for MetricsApi {
    async fn record_events(&self, _request: Request<RecordEventsRequest>) -> Result<Response<RecordEventsResponse>, Status> {
        let _ = &self.pool;
        Err(Status::unimplemented("RecordEvents"))
    }

    async fn get_response_metrics(
        &self,
        _request: Request<GetResponseMetricsRequest>,
    ) -> Result<Response<GetResponseMetricsResponse>, Status> {
        Err(Status::unimplemented("GetResponseMetrics"))
    }
}
