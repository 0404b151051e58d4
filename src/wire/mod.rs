//! Wire formats of the OnexEnvelopeV1 events (pure: no I/O).
//!
//! Read tolerantly with [`read_event`], which also validates identifiers and sizes,
//! and write strictly with [`encode_event`]. The reader returns what the writer
//! emitted unchanged, provided the values pass the reader's checks and a registry
//! request carries its reason and correlation id in the payload.

mod envelope;
mod error;
mod fields;
mod heartbeat;
mod introspection;
mod limits;
mod precheck;
mod reader;
mod registry_request;
mod timestamp;
pub mod topics;
mod validate;
mod writer;

pub use envelope::{Envelope, EventType, WIRE_VERSION};
pub use error::{MAX_QUOTED_CHARS, ReadError};
pub use heartbeat::HeartbeatPayload;
pub use introspection::{IntrospectionPayload, IntrospectionReason};
pub use limits::ReadLimits;
pub use reader::{Event, read_event};
pub use registry_request::{RegistryRequestPayload, RequestReason};
pub use topics::{Topics, dead_letter_for};
pub use validate::{MAX_ENDPOINT_NAME_CHARS, MAX_NODE_TYPE_CHARS};
pub use writer::{encode_event, kafka_key};
