//! PostgreSQL access shared by the Docket services: a bounded connection pool,
//! creation of a service's database when it is missing, embedded migrations run under
//! an advisory lock, and the classification of database errors.

mod error;
mod migrate;
mod pool;

pub use error::{DbError, is_unavailable};
pub use migrate::{ensure_database, run_migrations};
pub use pool::{Conn, Pool, PoolOptions, connect};

pub use diesel_migrations::{EmbeddedMigrations, embed_migrations};
