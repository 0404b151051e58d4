//! `registry-operator emit`: builds one introspection or heartbeat event with the
//! crate's strict writer and publishes it to Kafka, as a node would.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;
use uuid::Uuid;

use crate::cli::{EmitArgs, EmitEvent, EmitHeartbeatArgs, EmitIntrospectionArgs, EmitTarget};
use crate::kafka::{EventProducer, KafkaError};
use crate::wire::topics::Topics;
use crate::wire::{
    Envelope, EventType, HeartbeatPayload, IntrospectionPayload, IntrospectionReason, ReadError,
    ReadLimits, encode_event, kafka_key, read_event,
};

/// `source_service` of emitted events, which distinguishes them from real nodes' events.
pub const SOURCE_SERVICE: &str = "registry-operator-emit";

/// An event that was not published.
#[derive(Debug, thiserror::Error)]
pub enum EmitError {
    #[error("encoding the {event_type} event of node {node_id} failed: {source}")]
    Encode {
        event_type: &'static str,
        node_id: String,
        #[source]
        source: serde_json::Error,
    },

    #[error(
        "not publishing: registries would reject this {event_type} event of node {node_id}: {source}"
    )]
    Rejected {
        event_type: &'static str,
        node_id: String,
        #[source]
        source: ReadError,
    },

    #[error(
        "publishing to Kafka at {brokers} failed: {source}; check --brokers or KAFKA_BOOTSTRAP_SERVERS"
    )]
    Kafka {
        brokers: String,
        #[source]
        source: KafkaError,
    },
}

/// Position of a published event in Kafka.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    pub event_type: &'static str,
    pub event_id: Uuid,
    pub node_id: String,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

impl fmt::Display for Published {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "published {} event {} of node {} to topic {} partition {} offset {}",
            self.event_type, self.event_id, self.node_id, self.topic, self.partition, self.offset
        )
    }
}

/// Builds the introspection event: reason `startup`, or `shutdown` with `--shutdown`.
pub fn introspection_event(args: &EmitIntrospectionArgs) -> Envelope<IntrospectionPayload> {
    let node_id = &args.target.node_id;
    let mut payload = IntrospectionPayload::new(node_id.clone(), args.node_type.clone());
    payload.node_role = args.node_role.clone();
    payload.node_version = args.node_version.clone();
    payload.endpoints = args.endpoints.iter().cloned().collect();
    payload.network_id = args.network_id.clone();
    payload.deployment_id = args.deployment_id.clone();
    payload.epoch = args.epoch;

    let reason = if args.shutdown {
        IntrospectionReason::Shutdown
    } else {
        IntrospectionReason::Startup
    };
    let mut envelope =
        Envelope::new(EventType::Introspection, node_id.clone(), payload).with_reason(reason);
    envelope.payload.timestamp = Some(envelope.event_timestamp);
    fill_source(&mut envelope, &args.target);
    envelope
}

/// Builds the heartbeat event.
pub fn heartbeat_event(args: &EmitHeartbeatArgs) -> Envelope<HeartbeatPayload> {
    let node_id = &args.target.node_id;
    let mut payload = HeartbeatPayload::new(node_id.clone(), args.health);
    payload.node_type = args.node_type.clone();
    payload.uptime_seconds = args.uptime_seconds;

    let mut envelope = Envelope::new(EventType::Heartbeat, node_id.clone(), payload);
    envelope.payload.timestamp = Some(envelope.event_timestamp);
    fill_source(&mut envelope, &args.target);
    envelope
}

fn fill_source<P>(envelope: &mut Envelope<P>, target: &EmitTarget) {
    envelope.source_service = Some(SOURCE_SERVICE.to_owned());
    envelope.source_version = Some(env!("CARGO_PKG_VERSION").to_owned());
    envelope.environment = Some(target.environment.clone());
}

/// Builds the requested event and publishes it, waiting for the broker's
/// acknowledgement.
pub async fn run(args: EmitArgs) -> Result<Published, EmitError> {
    match args.event {
        EmitEvent::Introspection(args) => {
            let topics = Topics::for_environment(&args.target.environment);
            publish(
                &args.target,
                &topics.introspection,
                &introspection_event(&args),
            )
            .await
        }
        EmitEvent::Heartbeat(args) => {
            let topics = Topics::for_environment(&args.target.environment);
            publish(&args.target, &topics.heartbeat, &heartbeat_event(&args)).await
        }
    }
}

/// Encodes the event, checks it with the same reader that registries use, and
/// publishes it keyed as the envelope format prescribes.
async fn publish<P: Serialize>(
    target: &EmitTarget,
    topic: &str,
    envelope: &Envelope<P>,
) -> Result<Published, EmitError> {
    let event_type = envelope.event_type.as_wire();
    let node_id = target.node_id.clone();
    let bytes = encode_event(envelope).map_err(|source| EmitError::Encode {
        event_type,
        node_id: node_id.clone(),
        source,
    })?;
    read_event(&bytes, &ReadLimits::default()).map_err(|source| EmitError::Rejected {
        event_type,
        node_id: node_id.clone(),
        source,
    })?;

    let kafka_error = |source| EmitError::Kafka {
        brokers: target.brokers.clone(),
        source,
    };
    let producer = EventProducer::new(&target.brokers, &BTreeMap::new()).map_err(kafka_error)?;
    let (partition, offset) = producer
        .publish(topic, &kafka_key(envelope), Some(&bytes))
        .await
        .map_err(kafka_error)?;
    Ok(Published {
        event_type,
        event_id: envelope.event_id,
        node_id,
        topic: topic.to_owned(),
        partition,
        offset,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::HealthStatus;
    use crate::wire::Event;

    fn target(node_id: &str) -> EmitTarget {
        EmitTarget {
            node_id: node_id.to_owned(),
            environment: "dev".to_owned(),
            brokers: "127.0.0.1:9092".to_owned(),
        }
    }

    fn introspection_args(node_id: &str) -> EmitIntrospectionArgs {
        EmitIntrospectionArgs {
            target: target(node_id),
            node_type: "effect".to_owned(),
            node_role: Some("worker".to_owned()),
            node_version: None,
            network_id: Some("net-1".to_owned()),
            deployment_id: Some("blue-1".to_owned()),
            epoch: Some(4),
            endpoints: vec![(
                "health".to_owned(),
                "http://10.0.0.5:8080/health".to_owned(),
            )],
            shutdown: false,
        }
    }

    #[test]
    fn introspection_reads_back() {
        let envelope = introspection_event(&introspection_args("effect-1"));
        let bytes = encode_event(&envelope).unwrap();
        let Event::Introspection(read) = read_event(&bytes, &ReadLimits::default()).unwrap() else {
            panic!("not an introspection");
        };
        assert_eq!(read.payload.node_id, "effect-1");
        assert_eq!(read.payload.deployment_id.as_deref(), Some("blue-1"));
        assert_eq!(read.payload.epoch, Some(4));
        assert_eq!(
            read.payload.endpoints.get("health").map(String::as_str),
            Some("http://10.0.0.5:8080/health")
        );
        assert_eq!(read.reason(), Some(IntrospectionReason::Startup));
        assert_eq!(kafka_key(&envelope), "effect-1");
    }

    #[test]
    fn shutdown_sets_reason() {
        let mut args = introspection_args("effect-1");
        args.shutdown = true;
        let envelope = introspection_event(&args);
        assert_eq!(envelope.reason(), Some(IntrospectionReason::Shutdown));
    }

    #[test]
    fn heartbeat_carries_health() {
        let envelope = heartbeat_event(&EmitHeartbeatArgs {
            target: target("effect-1"),
            node_type: Some("effect".to_owned()),
            health: HealthStatus::Critical,
            uptime_seconds: Some(12),
        });
        let bytes = encode_event(&envelope).unwrap();
        let Event::Heartbeat(read) = read_event(&bytes, &ReadLimits::default()).unwrap() else {
            panic!("not a heartbeat");
        };
        assert_eq!(read.payload.health_status, HealthStatus::Critical);
        assert_eq!(read.payload.uptime_seconds, Some(12));
    }

    #[test]
    fn published_line() {
        let published = Published {
            event_type: "node_heartbeat",
            event_id: Uuid::nil(),
            node_id: "n1".to_owned(),
            topic: "dev.t".to_owned(),
            partition: 0,
            offset: 7,
        };
        assert_eq!(
            published.to_string(),
            "published node_heartbeat event 00000000-0000-0000-0000-000000000000 of node n1 to topic dev.t partition 0 offset 7"
        );
    }
}
