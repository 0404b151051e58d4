//! Status computation (pure): conditions from the observed state of a registry instance,
//! with `lastTransitionTime` kept unless a condition's status changes.

use chrono::{DateTime, SecondsFormat, Utc};

use crate::crd::{Condition, InstanceStatus, RegistryNodeStatus, SelfRegistrationStatus};

pub const READY: &str = "Ready";
pub const KAFKA_CONNECTED: &str = "KafkaConnected";
pub const POSTGRES_READY: &str = "PostgresReady";
pub const CONSUL_READY: &str = "ConsulReady";
pub const SELF_REGISTERED: &str = "SelfRegistered";

/// A condition before its transition time is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConditionState {
    pub type_: &'static str,
    pub status: bool,
    pub reason: String,
    pub message: String,
}

impl ConditionState {
    pub fn new(
        type_: &'static str,
        status: bool,
        reason: &str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            type_,
            status,
            reason: reason.to_owned(),
            message: message.into(),
        }
    }
}

/// Observations of one reconcile.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    pub generation: Option<i64>,
    pub conditions: Vec<ConditionState>,
    pub counts: Option<(i64, i64)>,
    pub self_registration: Option<SelfRegistrationStatus>,
}

/// Builds `Ready` from the other conditions: true when all of them are.
pub fn ready_condition(conditions: &[ConditionState]) -> ConditionState {
    let failing: Vec<&str> = conditions
        .iter()
        .filter(|condition| !condition.status)
        .map(|condition| condition.type_)
        .collect();
    if failing.is_empty() {
        ConditionState::new(
            READY,
            true,
            "RegistryRunning",
            "registry is consuming and registering",
        )
    } else {
        ConditionState::new(
            READY,
            false,
            "Degraded",
            format!("not ready: {}", failing.join(", ")),
        )
    }
}

/// How long writes may stay pending before a reachable backend is reported as
/// `CatchingUp`. Each write counts as pending while it runs, so reporting every backlog
/// would flip the condition, and rewrite the status, on each heartbeat.
pub const CATCHING_UP_AFTER: chrono::TimeDelta = chrono::TimeDelta::seconds(5);

/// Builds a backend's condition from its probe result and the start of its backlog.
/// The message names the start rather than the size, so it stays the same while the
/// backlog lasts. The size is in the `backend_pending_writes` metric.
pub fn backend_condition(
    type_: &'static str,
    probe_error: Option<String>,
    pending_since: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> ConditionState {
    let since = |time: DateTime<Utc>| time.to_rfc3339_opts(SecondsFormat::Secs, true);
    match (probe_error, pending_since) {
        (Some(error), Some(time)) => ConditionState::new(
            type_,
            false,
            "Unreachable",
            format!("{error}; writes pending since {}", since(time)),
        ),
        (Some(error), None) => ConditionState::new(type_, false, "Unreachable", error),
        (None, Some(time)) if now - time >= CATCHING_UP_AFTER => ConditionState::new(
            type_,
            true,
            "CatchingUp",
            format!("writes pending since {}", since(time)),
        ),
        (None, _) => ConditionState::new(type_, true, "Reachable", ""),
    }
}

fn to_condition(
    state: &ConditionState,
    previous: &[Condition],
    generation: Option<i64>,
    now: DateTime<Utc>,
) -> Condition {
    let status = if state.status { "True" } else { "False" };
    let last_transition_time = previous
        .iter()
        .find(|condition| condition.type_ == state.type_ && condition.status == status)
        .map(|condition| condition.last_transition_time.clone())
        .unwrap_or_else(|| now.to_rfc3339_opts(SecondsFormat::Secs, true));
    Condition {
        type_: state.type_.to_owned(),
        status: status.to_owned(),
        reason: state.reason.clone(),
        message: state.message.clone(),
        last_transition_time,
        observed_generation: generation,
    }
}

/// Builds the shared part of the status (everything but `instances`) from an observation
/// and the previous status. Counts missing from the observation keep their previous value.
pub fn shared_status(
    observation: &Observation,
    previous: Option<&RegistryNodeStatus>,
    now: DateTime<Utc>,
) -> RegistryNodeStatus {
    let previous_conditions = previous
        .map(|status| status.conditions.as_slice())
        .unwrap_or_default();
    let conditions = observation
        .conditions
        .iter()
        .map(|state| to_condition(state, previous_conditions, observation.generation, now))
        .collect();
    let (registered, healthy) = match observation.counts {
        Some((registered, healthy)) => (Some(registered), Some(healthy)),
        None => (
            previous.and_then(|status| status.registered_nodes),
            previous.and_then(|status| status.healthy_nodes),
        ),
    };
    let self_registration = observation
        .self_registration
        .clone()
        .or_else(|| previous.and_then(|status| status.self_registration.clone()));
    RegistryNodeStatus {
        observed_generation: observation.generation,
        conditions,
        registered_nodes: registered,
        healthy_nodes: healthy,
        self_registration,
        instances: Vec::new(),
    }
}

/// True when `computed` differs from the shared part of `previous`.
pub fn shared_status_changed(
    computed: &RegistryNodeStatus,
    previous: Option<&RegistryNodeStatus>,
) -> bool {
    let Some(previous) = previous else {
        return true;
    };
    computed.observed_generation != previous.observed_generation
        || computed.conditions != previous.conditions
        || computed.registered_nodes != previous.registered_nodes
        || computed.healthy_nodes != previous.healthy_nodes
        || computed.self_registration != previous.self_registration
}

/// Decides whether this pod's instance is the active one: the newest epoch among the
/// listed instances wins, and the pod name breaks ties.
pub fn is_active(own: &InstanceStatus, others: &[InstanceStatus]) -> bool {
    let key =
        |instance: &InstanceStatus| (instance.epoch.unwrap_or(i64::MIN), instance.pod.clone());
    others
        .iter()
        .filter(|other| other.pod != own.pod)
        .all(|other| key(own) >= key(other))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn time(second: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, second).unwrap()
    }

    fn observation(kafka: bool) -> Observation {
        let mut conditions = vec![
            ConditionState::new(KAFKA_CONNECTED, kafka, "Connected", ""),
            ConditionState::new(POSTGRES_READY, true, "Reachable", ""),
        ];
        let ready = ready_condition(&conditions);
        conditions.insert(0, ready);
        Observation {
            generation: Some(2),
            conditions,
            counts: Some((3, 2)),
            self_registration: None,
        }
    }

    #[test]
    fn transition_time_kept_without_change() {
        let first = shared_status(&observation(true), None, time(1));
        let second = shared_status(&observation(true), Some(&first), time(9));
        assert_eq!(first.conditions, second.conditions);
        assert!(!shared_status_changed(&second, Some(&first)));
    }

    #[test]
    fn transition_time_moves_on_change() {
        let first = shared_status(&observation(true), None, time(1));
        let second = shared_status(&observation(false), Some(&first), time(9));
        let ready = &second.conditions[0];
        assert_eq!(ready.status, "False");
        assert_eq!(ready.last_transition_time, "2026-01-01T00:00:09Z");
        assert_eq!(ready.message, "not ready: KafkaConnected");
        let postgres = &second.conditions[2];
        assert_eq!(postgres.last_transition_time, "2026-01-01T00:00:01Z");
        assert!(shared_status_changed(&second, Some(&first)));
    }

    #[test]
    fn counts_kept_when_unobserved() {
        let first = shared_status(&observation(true), None, time(1));
        let mut unobserved = observation(true);
        unobserved.counts = None;
        let second = shared_status(&unobserved, Some(&first), time(2));
        assert_eq!(second.registered_nodes, Some(3));
        assert_eq!(second.healthy_nodes, Some(2));
    }

    #[test]
    fn short_backlog_stays_reachable() {
        let condition = backend_condition(CONSUL_READY, None, Some(time(10)), time(14));
        assert_eq!(
            condition,
            ConditionState::new(CONSUL_READY, true, "Reachable", "")
        );
    }

    #[test]
    fn lasting_backlog_is_catching_up() {
        let condition_at = |now| backend_condition(POSTGRES_READY, None, Some(time(10)), time(now));
        let expected = ConditionState::new(
            POSTGRES_READY,
            true,
            "CatchingUp",
            "writes pending since 2026-01-01T00:00:10Z",
        );
        assert_eq!(condition_at(15), expected);
        assert_eq!(condition_at(40), expected);
    }

    #[test]
    fn probe_error_is_unreachable() {
        let unreachable_with = |pending| {
            backend_condition(
                CONSUL_READY,
                Some("connection refused".to_owned()),
                pending,
                time(20),
            )
        };
        assert_eq!(
            unreachable_with(None),
            ConditionState::new(CONSUL_READY, false, "Unreachable", "connection refused")
        );
        assert_eq!(
            unreachable_with(Some(time(19))).message,
            "connection refused; writes pending since 2026-01-01T00:00:19Z"
        );
    }

    #[test]
    fn newest_epoch_is_active() {
        let blue = InstanceStatus {
            pod: "blue".into(),
            epoch: Some(1),
            ..Default::default()
        };
        let green = InstanceStatus {
            pod: "green".into(),
            epoch: Some(2),
            ..Default::default()
        };
        assert!(is_active(&green, &[blue.clone(), green.clone()]));
        assert!(!is_active(&blue, &[blue.clone(), green.clone()]));
        assert!(is_active(&blue, std::slice::from_ref(&blue)));
    }
}
