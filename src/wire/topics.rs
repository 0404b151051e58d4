//! Kafka topic names, derived from an environment prefix such as `dev` or `prod`.

/// Topics of one environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    pub introspection: String,
    pub heartbeat: String,
    pub registry_request: String,
    /// Compacted topic of registration changes, keyed by node id.
    pub topology: String,
}

impl Topics {
    /// Returns the topic names `{environment}.omninode_bridge.onex.evt.<name>.v1`.
    pub fn for_environment(environment: &str) -> Topics {
        let event_topic = |name: &str| format!("{environment}.omninode_bridge.onex.evt.{name}.v1");
        Topics {
            introspection: event_topic("node-introspection"),
            heartbeat: event_topic("node-heartbeat"),
            registry_request: event_topic("registry-request-introspection"),
            topology: event_topic("topology"),
        }
    }
}

/// Returns the dead-letter topic for `topic`: its last `.evt.` segment becomes
/// `.dlt.`. A topic without `.evt.` (a user override) gets the suffix `.dlt`.
pub fn dead_letter_for(topic: &str) -> String {
    match topic.rfind(".evt.") {
        Some(start) => format!(
            "{}.dlt.{}",
            &topic[..start],
            &topic[start + ".evt.".len()..]
        ),
        None => format!("{topic}.dlt"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_for_dev() {
        let topics = Topics::for_environment("dev");
        assert_eq!(
            topics.introspection,
            "dev.omninode_bridge.onex.evt.node-introspection.v1"
        );
        assert_eq!(
            topics.heartbeat,
            "dev.omninode_bridge.onex.evt.node-heartbeat.v1"
        );
        assert_eq!(
            topics.registry_request,
            "dev.omninode_bridge.onex.evt.registry-request-introspection.v1"
        );
        assert_eq!(topics.topology, "dev.omninode_bridge.onex.evt.topology.v1");
    }

    #[test]
    fn dead_letter_of_event_topic() {
        assert_eq!(
            dead_letter_for("prod.omninode_bridge.onex.evt.node-heartbeat.v1"),
            "prod.omninode_bridge.onex.dlt.node-heartbeat.v1"
        );
    }

    #[test]
    fn dead_letter_of_other_topic() {
        assert_eq!(
            dead_letter_for("custom-heartbeats"),
            "custom-heartbeats.dlt"
        );
    }
}
