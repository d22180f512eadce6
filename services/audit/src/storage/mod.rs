//! The only code that talks to PostgreSQL.

pub mod ledger;
mod schema;
