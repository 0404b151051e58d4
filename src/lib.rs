//! registry-operator: a Kubernetes operator that turns node announcements on Kafka into
//! registrations in PostgreSQL and Consul.

pub mod cli;
pub mod client;
pub mod consul;
pub mod controller;
pub mod crd;
pub mod emit;
pub mod http;
pub mod instance;
pub mod kafka;
pub mod metrics;
pub mod node;
pub mod pipeline;
pub mod postgres;
pub mod signals;
pub mod standalone;
pub mod telemetry;
pub mod wire;
