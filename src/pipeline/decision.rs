//! Effects of accepted events on the registry (pure: no I/O).

use std::collections::{BTreeMap, HashSet};

use crate::node::{HealthStatus, NodeRecord};
use crate::postgres::HeartbeatTouch;
use crate::wire::{
    Envelope, Event, IntrospectionPayload, IntrospectionReason, RegistryRequestPayload,
};

/// The effect of one event.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Register(NodeRecord),
    Deregister(NodeRecord),
    Heartbeat(HeartbeatTouch),
    RegistryRequest(Box<Envelope<RegistryRequestPayload>>),
    Reject { label: &'static str, reason: String },
}

/// Facts about the registry that decisions depend on.
pub struct DecisionContext<'a> {
    pub registry_id: &'a str,
    /// Pod names (or host names) of this registry's live instances. An event about a node
    /// id `<registry_id>-...` must come from one of them.
    pub instances: &'a HashSet<String>,
    /// Network id recorded for nodes that do not report one.
    pub default_network_id: Option<&'a str>,
}

/// Decides the effect of one accepted event.
pub fn decide(event: Event, context: &DecisionContext<'_>) -> Decision {
    match event {
        Event::Introspection(envelope) => decide_introspection(envelope, context),
        Event::Heartbeat(envelope) => {
            if let Some(rejection) = check_identity(
                &envelope.payload.node_id,
                envelope.source_instance.as_deref(),
                context,
            ) {
                return rejection;
            }
            Decision::Heartbeat(HeartbeatTouch {
                node_id: envelope.payload.node_id,
                health_status: envelope.payload.health_status,
                timestamp: envelope.event_timestamp,
            })
        }
        Event::RegistryRequest(envelope) => Decision::RegistryRequest(Box::new(envelope)),
    }
}

fn decide_introspection(
    envelope: Envelope<IntrospectionPayload>,
    context: &DecisionContext<'_>,
) -> Decision {
    if let Some(rejection) = check_identity(
        &envelope.payload.node_id,
        envelope.source_instance.as_deref(),
        context,
    ) {
        return rejection;
    }
    let shutdown = matches!(envelope.reason(), Some(IntrospectionReason::Shutdown));
    let payload = envelope.payload;
    let record = NodeRecord {
        node_id: payload.node_id,
        node_type: payload.node_type,
        node_role: payload.node_role,
        node_version: payload.node_version,
        capabilities: serde_json::Value::Object(payload.capabilities),
        endpoints: payload.endpoints.into_iter().collect::<BTreeMap<_, _>>(),
        metadata: serde_json::Value::Object(payload.metadata),
        health_status: HealthStatus::Healthy,
        network_id: payload
            .network_id
            .or_else(|| context.default_network_id.map(str::to_owned)),
        deployment_id: payload.deployment_id,
        epoch: payload.epoch,
        event_id: envelope.event_id,
        event_timestamp: envelope.event_timestamp,
    };
    if shutdown {
        Decision::Deregister(record)
    } else {
        Decision::Register(record)
    }
}

/// Rejects an event that claims to be one of this registry's own instances but does not
/// come from one of its pods.
fn check_identity(
    node_id: &str,
    source_instance: Option<&str>,
    context: &DecisionContext<'_>,
) -> Option<Decision> {
    let claimed_instance = node_id
        .strip_prefix(context.registry_id)?
        .strip_prefix('-')?;
    let from_own_pod = source_instance
        .is_some_and(|source| source == claimed_instance && context.instances.contains(source));
    if from_own_pod {
        None
    } else {
        Some(Decision::Reject {
            label: "forged_identity",
            reason: format!(
                "node_id {node_id:?} claims to be an instance of registry {:?}, but the event's \
                 source_instance {source_instance:?} is not one of its pods",
                context.registry_id
            ),
        })
    }
}
