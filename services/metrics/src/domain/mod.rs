//! Rules of the metrics service: what a valid event and query are, and how the
//! response is assembled. Neither tonic nor diesel appears here.

pub mod events;
pub mod names;
pub mod query;
mod time;
