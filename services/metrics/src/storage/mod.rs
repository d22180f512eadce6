//! The only place with SQL: the incident projection, its changes and the denial outbox.

pub mod changes;
pub mod denials;
pub mod projection;
mod schema;

use diesel::result::{DatabaseErrorKind, Error as DieselError};

/// Attempts of a write transaction that keeps hitting serialization failures or
/// deadlocks with concurrent batches before the error reaches the caller.
const MAX_TRANSACTION_ATTEMPTS: u32 = 3;

/// Returns whether rerunning the whole transaction may succeed, which is the case when
/// PostgreSQL aborted it to resolve a conflict with a concurrent one (SQLSTATE 40001 or
/// 40P01).
fn is_retryable(error: &DieselError) -> bool {
    match error {
        DieselError::DatabaseError(DatabaseErrorKind::SerializationFailure, _) => true,
        DieselError::DatabaseError(_, info) => info.message().contains("deadlock detected"),
        _ => false,
    }
}
