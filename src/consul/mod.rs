//! Consul adapter: service building (pure) and the HTTP client.
//!
//! `service`, `address` and `meta` turn a node's record into a Consul service without I/O.
//! `client`, `catalog` and `agent` speak the Consul HTTP API, and `sink` picks the catalog
//! or agent API for one registry.

mod address;
mod agent;
mod catalog;
mod client;
mod error;
mod meta;
mod registered;
mod service;
mod sink;

pub use address::{ServiceAddress, select_service_address};
pub use catalog::{CATALOG_SHARDS, SYNTHETIC_NODE_ADDRESS, SyntheticNode, shard_node_name};
pub use client::ConsulClient;
pub use error::ConsulError;
pub use meta::{
    MAX_META_KEY_BYTES, MAX_META_PAIRS, MAX_META_VALUE_BYTES, MetaBuilder, MetaRejection,
    OmittedMeta, RESERVED_META_KEY_PREFIX, check_meta_pair,
};
pub use registered::RegisteredService;
pub use service::{
    CheckStatus, CheckTtl, ConsulService, MANAGED_BY, ServiceCheck, ServiceContext, build_check,
    build_service, check_id, service_name,
};
pub use sink::ConsulSink;
