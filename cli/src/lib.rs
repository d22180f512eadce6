//! The `docket` command-line client of the Docket incident-ticketing services, and the
//! VERIS importer it uses. The binary is a thin wrapper over [`commands::run`]; the VERIS
//! mapping ([`veris`]) and the import ([`import`]) are public so tests can call them.

pub mod args;
pub mod client;
pub mod commands;
pub mod error;
pub mod import;
pub mod output;
pub mod veris;

pub use error::Error;
