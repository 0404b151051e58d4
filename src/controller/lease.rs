//! Leadership of one registry's singleton work (liveness sweeps, anti-entropy) through a
//! `coordination.k8s.io` Lease, so it runs on one operator pod at a time.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, ObjectMeta, PostParams};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// One Lease and the pod that tries to hold it.
pub struct LeaseHolder {
    pub api: Api<Lease>,
    pub name: String,
    pub holder: String,
    /// Seconds the Lease stays valid without renewal.
    pub duration: Duration,
}

fn now() -> MicroTime {
    MicroTime(Timestamp::now())
}

fn expired(spec: &LeaseSpec) -> bool {
    let Some(MicroTime(renewed)) = spec.renew_time else {
        return true;
    };
    let duration = i64::from(spec.lease_duration_seconds.unwrap_or(0));
    Timestamp::now().as_second() > renewed.as_second() + duration
}

impl LeaseHolder {
    pub fn new(
        client: Client,
        namespace: &str,
        name: String,
        holder: String,
        duration: Duration,
    ) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            name,
            holder,
            duration,
        }
    }

    fn spec(&self, transitions: i32, acquired: Option<MicroTime>) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.holder.clone()),
            lease_duration_seconds: Some(
                i32::try_from(self.duration.as_secs()).unwrap_or(i32::MAX),
            ),
            acquire_time: acquired.or_else(|| Some(now())),
            renew_time: Some(now()),
            lease_transitions: Some(transitions),
            ..Default::default()
        }
    }

    /// Acquires the Lease when free or expired, or renews it when held. Returns whether
    /// this pod holds it now. Conflicting writes by other pods count as not holding it.
    pub async fn try_acquire(&self) -> Result<bool, kube::Error> {
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..Default::default()
                },
                spec: Some(self.spec(0, None)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(response)) if response.code == 409 => Ok(false),
                Err(error) => Err(error),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let held = spec.holder_identity.as_deref() == Some(self.holder.as_str());
        let free = spec.holder_identity.as_deref().is_none_or(str::is_empty) || expired(&spec);
        if !held && !free {
            return Ok(false);
        }
        let transitions = spec.lease_transitions.unwrap_or(0) + i32::from(!held);
        let acquired = if held {
            spec.acquire_time.clone()
        } else {
            None
        };
        lease.spec = Some(self.spec(transitions, acquired));
        // The resourceVersion read above makes this write fail if another pod won.
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(response)) if response.code == 409 => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// Gives the Lease up, so another pod can take over without waiting for expiry.
    pub async fn release(&self) {
        let Ok(Some(mut lease)) = self.api.get_opt(&self.name).await else {
            return;
        };
        let Some(spec) = lease.spec.as_mut() else {
            return;
        };
        if spec.holder_identity.as_deref() != Some(self.holder.as_str()) {
            return;
        }
        spec.holder_identity = None;
        spec.renew_time = None;
        if let Err(error) = self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            warn!(lease = %self.name, %error, "releasing the Lease failed; it expires by itself");
        }
    }
}

/// Keeps trying to hold the Lease until `cancel` fires, and sets `leader` accordingly.
/// A holder that cannot renew stops its work after two thirds of the Lease duration,
/// before the Lease expires and another pod may take over.
pub async fn run(holder: LeaseHolder, leader: Arc<AtomicBool>, cancel: CancellationToken) {
    let renew_every = holder.duration / 3;
    let give_up_after = holder.duration * 2 / 3;
    let mut last_renewal: Option<Instant> = None;
    loop {
        match holder.try_acquire().await {
            Ok(true) => {
                last_renewal = Some(Instant::now());
                if !leader.swap(true, Ordering::SeqCst) {
                    info!(lease = %holder.name, holder = %holder.holder, "acquired the Lease; running singleton work");
                }
            }
            Ok(false) => {
                last_renewal = None;
                if leader.swap(false, Ordering::SeqCst) {
                    warn!(lease = %holder.name, "lost the Lease; stopped singleton work");
                }
            }
            Err(error) => {
                warn!(lease = %holder.name, %error, "renewing the Lease failed");
                if last_renewal.is_none_or(|at| at.elapsed() >= give_up_after)
                    && leader.swap(false, Ordering::SeqCst)
                {
                    warn!(lease = %holder.name, "Lease not renewed in time; stopped singleton work");
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(renew_every) => {}
            _ = cancel.cancelled() => break,
        }
    }
    if leader.swap(false, Ordering::SeqCst) {
        holder.release().await;
        info!(lease = %holder.name, "released the Lease");
    }
}
