use std::net::SocketAddr;

/// Failures of the ticket service.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Database(#[from] docket_db::DbError),

    #[error("could not listen on {address}: {source}")]
    Bind { address: SocketAddr, source: std::io::Error },

    #[error("gRPC server failed: {0}")]
    Serve(tonic::transport::Error),
}

impl From<Error> for tonic::Status {
    fn from(error: Error) -> Self {
        match error {
            Error::Database(error) => {
                tracing::error!(%error, "database error");
                tonic::Status::unavailable("the ticket database is unavailable; retry later")
            }
            other => {
                tracing::error!(error = %other, "internal error");
                tonic::Status::internal("internal error")
            }
        }
    }
}
