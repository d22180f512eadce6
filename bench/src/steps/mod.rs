//! The measured steps, each starting the services it needs on fresh databases and
//! dropping them when it ends.

pub mod audit;
pub mod auth_cost;
pub mod import;
pub mod metrics;
pub mod tickets;
