//! Process plumbing shared by the Docket services, so that each service's `main.rs`
//! stays a few lines and every service starts, serves and stops the same way.

pub mod auth;
pub mod caller;
pub mod grpc;
pub mod health;
pub mod outgoing;
pub mod prometheus;
pub mod settings;
pub mod shutdown;
pub mod violations;
pub mod wire;

pub use auth::{AuthLayer, AuthSettings};
pub use caller::Caller;
pub use settings::{CommonSettings, EXIT_CONFIG};
