//! Kafka adapter: client configuration and the producer shared by a registry instance.

mod config;
mod producer;
mod topics;

pub use config::client_config;
pub use producer::{DeadLetter, EventProducer, KafkaError};
pub use topics::ensure_topics;
