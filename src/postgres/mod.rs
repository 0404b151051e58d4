//! PostgreSQL adapter: connection pool per registry schema, migrations and the
//! batched writes of `node_registrations`.

mod error;
mod pool;
mod sink;

pub use error::PostgresError;
pub use pool::{connect, migrate, validate_schema};
pub use sink::{ChangedNode, HeartbeatTouch, PostgresSink, RowKey, StoredNode};
