//! The ingest pipeline of one registry: Kafka consumer, decisions, and one worker per
//! backend.

pub mod backend;
pub mod consul_backend;
pub mod consumer;
pub mod decision;
pub mod offsets;
pub mod pending;
pub mod postgres_backend;
pub mod topology;
