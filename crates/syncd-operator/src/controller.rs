//! The reconciler: fetch, validate, build, apply, status, for one `SyncCluster` at a time.
//!
//! Reconcile is a pipeline. It validates by building every component's objects (pure: an error is the user's to
//! fix and waits for a spec change), then per component observes the StatefulSet (and for locks the raft group and
//! the pods), decides the StatefulSet size (one lock scaling step at a time, see [`crate::lockgroup`]), applies the
//! built objects with server-side apply under one field manager, and rolls out-of-date lock pods one at a time.
//! Last it computes the status ([`crate::status`]) and applies it to the status subresource.
//!
//! Deleting a SyncCluster needs no finalizer: every object carries a controller owner reference, so the garbage
//! collector removes them, and the StatefulSets' `whenDeleted: Delete` PVC policy removes the data volumes.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Debug;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, ObjectReference, Pod, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::{Controller, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use syncd_api::locks::MembershipChange;

use crate::build::config::lock_peer_addr;
use crate::build::labels::MANAGED_BY_LABEL;
use crate::build::statefulset::POD_INDEX_LABEL;
use crate::build::{self, BuildContext, Component, FIELD_MANAGER, HTTP_PORT};
use crate::crd::SyncCluster;
use crate::error::Error;
use crate::lock_api::LockGroupApi;
use crate::lockgroup::{self, LockObservation, LockStep, PodView, RaftView, RollStep};
use crate::metrics::Metrics;
use crate::queue_api::QueueRingApi;
use crate::queuering::{self, QueueObservation, QueueStep};
use crate::status::{self, ComponentObservation, Observation};

/// How often a settled cluster is looked at again (status refresh, drift).
const RESYNC: Duration = Duration::from_secs(60);
/// How soon a cluster in progress is looked at again.
const PROGRESS_POLL: Duration = Duration::from_secs(5);

/// What every reconcile shares.
pub struct Context {
    /// The Kubernetes client.
    pub client: Client,
    /// The lock services' API.
    pub lock_api: Arc<dyn LockGroupApi>,
    /// Records Events on SyncClusters.
    pub recorder: Recorder,
    /// Reconcile metrics.
    pub metrics: Arc<Metrics>,
    /// The image when `spec.image` is unset.
    pub default_image: String,
    /// The lock service's URL; `{name}` and `{namespace}` are filled in.
    pub lock_endpoint: String,
    /// The queue pods' API.
    pub queue_api: Arc<dyn QueueRingApi>,
    /// One queue pod's URL; `{pod}`, `{name}` and `{namespace}` are filled in.
    pub queue_endpoint: String,
    /// Consecutive failures per SyncCluster, for backoff.
    failures: Mutex<HashMap<String, u32>>,
}

impl Context {
    /// A context for the reconciler.
    pub fn new(
        client: Client,
        lock_api: Arc<dyn LockGroupApi>,
        recorder: Recorder,
        metrics: Arc<Metrics>,
        default_image: String,
        lock_endpoint: String,
    ) -> Self {
        Context {
            client,
            lock_api,
            recorder,
            metrics,
            default_image,
            lock_endpoint,
            queue_api: Arc::new(crate::queue_api::HttpQueueRing),
            queue_endpoint: default_queue_endpoint(),
            failures: Mutex::default(),
        }
    }

    /// The same context with this queue pod API and endpoint template.
    pub fn with_queues(mut self, api: Arc<dyn QueueRingApi>, endpoint: String) -> Self {
        self.queue_api = api;
        self.queue_endpoint = endpoint;
        self
    }

    fn queue_pod_endpoint(&self, name: &str, namespace: &str, ordinal: u64) -> String {
        let pod = format!("{}-{ordinal}", Component::Queues.object_name(name));
        self.queue_endpoint
            .replace("{pod}", &pod)
            .replace("{name}", name)
            .replace("{namespace}", namespace)
    }

    fn endpoint(&self, name: &str, namespace: &str) -> String {
        self.lock_endpoint
            .replace("{name}", name)
            .replace("{namespace}", namespace)
    }

    async fn event(&self, cluster: &SyncCluster, type_: EventType, reason: &str, note: String) {
        self.publish(cluster, type_, reason, note, None).await;
    }

    /// An Event about one component's StatefulSet, which it names as the related object. The recorder tells
    /// Events apart by type, reason, action, regarding and related object but not by note, and counts a repeat as
    /// a series of the first: without the related object, "Created" (or "Scaled", "ComponentRemoved") of the
    /// second and third component in one reconcile would only bump the count of the first one's Event, and their
    /// notes would be lost.
    async fn component_event(
        &self,
        cluster: &SyncCluster,
        component: Component,
        type_: EventType,
        reason: &str,
        note: String,
    ) {
        let statefulset = ObjectReference {
            api_version: Some(StatefulSet::api_version(&()).into_owned()),
            kind: Some(StatefulSet::kind(&()).into_owned()),
            name: Some(component.object_name(&cluster.name_any())),
            namespace: cluster.namespace(),
            ..ObjectReference::default()
        };
        self.publish(cluster, type_, reason, note, Some(statefulset))
            .await;
    }

    async fn publish(
        &self,
        cluster: &SyncCluster,
        type_: EventType,
        reason: &str,
        note: String,
        secondary: Option<ObjectReference>,
    ) {
        // The recorder merges Events with the same type, reason, action and objects into one series, keeping the
        // first note. The note says what was done ("locks StatefulSet to 4 replicas", "added lock pod 3 ..."), so
        // it doubles as the action (at most 128 characters): only true repeats become a series.
        // Event notes are limited to 1 KiB; a longer one (an error chain) would make the whole Event fail.
        let note: String = note.chars().take(1000).collect();
        let event = Event {
            type_,
            reason: reason.to_owned(),
            action: note.chars().take(128).collect(),
            note: Some(note),
            secondary,
        };
        if let Err(e) = self
            .recorder
            .publish(&event, &cluster.object_ref(&()))
            .await
        {
            tracing::warn!(error = %e, "could not record an event");
        }
    }
}

/// The default lock endpoint: the client Service of the lock component, in cluster DNS.
pub fn default_lock_endpoint() -> String {
    format!("http://{{name}}-locks.{{namespace}}.svc:{HTTP_PORT}")
}

/// The default queue pod endpoint: the pod's stable DNS name behind the queue headless Service.
pub fn default_queue_endpoint() -> String {
    format!("http://{{pod}}.{{name}}-queues-peers.{{namespace}}.svc:{HTTP_PORT}")
}

/// Reconciles one SyncCluster.
#[tracing::instrument(skip_all, fields(cluster = %cluster.name_any(), namespace = cluster.namespace().unwrap_or_default()))]
pub async fn reconcile(cluster: Arc<SyncCluster>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let result = reconcile_inner(&cluster, &ctx).await;
    let key = cluster_key(&cluster);
    let label = match &result {
        Ok(_) => {
            ctx.failures
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&key);
            "ok"
        }
        Err(e) => e.code(),
    };
    ctx.metrics.reconciled(label, started.elapsed());
    result
}

/// Transient failures requeue with exponential backoff (5 s doubling to 5 min); the reason is an Event.
pub fn error_policy(cluster: Arc<SyncCluster>, error: &Error, ctx: Arc<Context>) -> Action {
    let failures = {
        let mut map = ctx.failures.lock().unwrap_or_else(PoisonError::into_inner);
        let n = map.entry(cluster_key(&cluster)).or_insert(0);
        *n = n.saturating_add(1);
        *n
    };
    // The first failure waits 5 s: `failures` is at least 1 here.
    let backoff = Duration::from_secs(5)
        .saturating_mul(1 << failures.saturating_sub(1).min(6))
        .min(Duration::from_secs(300));
    tracing::warn!(cluster = %cluster.name_any(), error = %error, code = error.code(), ?backoff, "reconcile failed");
    let note = error.to_string();
    let reason = format!("ReconcileFailed:{}", error.code());
    tokio::spawn(async move {
        ctx.event(&cluster, EventType::Warning, &reason, note).await;
    });
    Action::requeue(backoff)
}

fn cluster_key(cluster: &SyncCluster) -> String {
    format!(
        "{}/{}",
        cluster.namespace().unwrap_or_default(),
        cluster.name_any()
    )
}

async fn reconcile_inner(cluster: &SyncCluster, ctx: &Context) -> Result<Action, Error> {
    let namespace = cluster.namespace().ok_or(Error::MissingNamespace)?;
    let build_ctx = BuildContext {
        default_image: ctx.default_image.clone(),
        namespace: namespace.clone(),
    };
    let mut obs = Observation {
        generation: cluster.metadata.generation,
        raft: Err("the lock service is disabled (locks.replicas is 0)".to_owned()),
        ..Observation::default()
    };

    // Validate: a spec that cannot be built waits for the user to change it.
    for component in Component::ALL {
        let replicas = component.desired_replicas(&cluster.spec);
        if let Err(e) = build::desired(cluster, component, replicas, &build_ctx) {
            obs.invalid_spec = Some(e.to_string());
            ctx.event(cluster, EventType::Warning, "InvalidSpec", e.to_string())
                .await;
            write_status(cluster, ctx, &namespace, &obs).await?;
            return Ok(Action::await_change());
        }
    }

    let mut notes = Vec::new();
    for component in Component::ALL {
        let (observed, note) =
            reconcile_component(cluster, component, ctx, &build_ctx, &mut obs).await?;
        match component {
            Component::Locks => obs.locks = observed,
            Component::Queues => obs.queues = observed,
            Component::Cache => obs.cache = observed,
        }
        notes.extend(note);
    }
    if !notes.is_empty() {
        obs.in_progress = Some(notes.join("; "));
    }
    let status = write_status(cluster, ctx, &namespace, &obs).await?;
    let progressing = status
        .conditions
        .iter()
        .any(|c| c.type_ == "Progressing" && c.status == "True");
    Ok(Action::requeue(if progressing {
        PROGRESS_POLL
    } else {
        RESYNC
    }))
}

/// Reconciles one component; returns what it observed and, when the component is not settled, what it is doing.
async fn reconcile_component(
    cluster: &SyncCluster,
    component: Component,
    ctx: &Context,
    build_ctx: &BuildContext,
    obs: &mut Observation,
) -> Result<(ComponentObservation, Option<String>), Error> {
    let namespace = &build_ctx.namespace;
    let name = cluster.name_any();
    let want = component.desired_replicas(&cluster.spec);
    let statefulsets: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), namespace);
    let existing = statefulsets.get_opt(&component.object_name(&name)).await?;

    if want == 0 {
        if existing.is_some() {
            delete_component(ctx, &name, namespace, component).await?;
            ctx.component_event(
                cluster,
                component,
                EventType::Normal,
                "ComponentRemoved",
                format!("{} turned off: its objects were deleted", component.name()),
            )
            .await;
        }
        return Ok((ComponentObservation::default(), None));
    }

    let have = existing
        .as_ref()
        .and_then(|s| s.spec.as_ref())
        .and_then(|s| s.replicas);
    // Lock pods are listed once: the scaling step and the rollout both read them.
    let lock_pods = match component {
        Component::Locks => lock_pods(ctx, &name, namespace).await?,
        _ => Vec::new(),
    };
    let (replicas, mut note) = match component {
        Component::Locks => lock_step(cluster, ctx, namespace, want, have, &lock_pods, obs).await?,
        Component::Queues => queue_step(cluster, ctx, namespace, want, have, obs).await,
        Component::Cache => (want, None),
    };
    let desired = build::desired(cluster, component, replicas, build_ctx)?;
    let params = PatchParams::apply(FIELD_MANAGER).force();
    apply(
        &Api::<ConfigMap>::namespaced(ctx.client.clone(), namespace),
        &desired.config,
        &params,
    )
    .await?;
    let services: Api<Service> = Api::namespaced(ctx.client.clone(), namespace);
    apply(&services, &desired.peers_service, &params).await?;
    apply(&services, &desired.client_service, &params).await?;
    let sts = apply(&statefulsets, &desired.statefulset, &params).await?;
    apply(
        &Api::<PodDisruptionBudget>::namespaced(ctx.client.clone(), namespace),
        &desired.pdb,
        &params,
    )
    .await?;

    // Only once the apply went through: an Event must not claim a change that failed.
    if have != Some(replicas) {
        let verb = if have.is_none() { "Created" } else { "Scaled" };
        ctx.component_event(
            cluster,
            component,
            EventType::Normal,
            verb,
            format!("{} StatefulSet to {replicas} replicas", component.name()),
        )
        .await;
    }

    let sts_status = sts.status.clone().unwrap_or_default();
    if component == Component::Locks && note.is_none() {
        note = roll_lock_pods(cluster, ctx, namespace, &sts, &lock_pods, obs).await?;
    }
    Ok((
        ComponentObservation {
            desired: want,
            replicas: sts_status.replicas,
            ready: sts_status.ready_replicas.unwrap_or(0),
            updated: sts_status.updated_replicas.unwrap_or(0),
        },
        note,
    ))
}

/// Observes the lock group and carries out the next scaling step. Returns the StatefulSet size to apply and,
/// when a step is under way, what it is.
async fn lock_step(
    cluster: &SyncCluster,
    ctx: &Context,
    namespace: &str,
    want: i32,
    have: Option<i32>,
    pods: &[Pod],
    obs: &mut Observation,
) -> Result<(i32, Option<String>), Error> {
    let name = cluster.name_any();
    let endpoint = ctx.endpoint(&name, namespace);
    obs.raft = ctx.lock_api.raft_view(&endpoint).await;
    let running: BTreeSet<u64> = pods
        .iter()
        .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
        .filter_map(pod_ordinal)
        .collect();
    let observation = LockObservation {
        desired: want,
        statefulset_replicas: have,
        running_pods: running,
        raft: obs.raft.clone().ok(),
    };
    let current = have.unwrap_or(0);
    let step = lockgroup::next_step(&observation);
    tracing::debug!(?step, "lock group step");
    Ok(match step {
        LockStep::Steady => (current, None),
        LockStep::Replicas(n) => (
            n,
            (n != want).then(|| format!("scaling locks to {n} on the way to {want}")),
        ),
        LockStep::Wait(reason) => (current, Some(reason)),
        LockStep::AddLearner(id) => {
            let change = MembershipChange::AddLearner {
                id,
                addr: lock_peer_addr(&name, namespace, id),
            };
            let note = membership(
                cluster,
                ctx,
                &endpoint,
                &change,
                format!("added lock pod {id} to raft as a learner"),
            )
            .await;
            (current, Some(note))
        }
        LockStep::SetVoters(voters) => {
            let change = MembershipChange::SetVoters {
                voters: voters.clone(),
            };
            let note = membership(
                cluster,
                ctx,
                &endpoint,
                &change,
                format!("set the lock voters to {voters:?}"),
            )
            .await;
            (current, Some(note))
        }
    })
}

/// Observes the queue ring on every pod and carries out the next scaling step. Returns the StatefulSet size to
/// apply and, when a step is under way, what it is.
async fn queue_step(
    cluster: &SyncCluster,
    ctx: &Context,
    namespace: &str,
    want: i32,
    have: Option<i32>,
    obs: &mut Observation,
) -> (i32, Option<String>) {
    let name = cluster.name_any();
    let current = have.unwrap_or(0);
    let mut observation = QueueObservation {
        desired: want,
        statefulset_replicas: have,
        views: Default::default(),
    };
    if current >= want {
        let asks = queuering::pods_to_ask(&observation)
            .into_iter()
            .map(|ordinal| {
                let endpoint = ctx.queue_pod_endpoint(&name, namespace, ordinal);
                async move { (ordinal, ctx.queue_api.ring_view(&endpoint).await) }
            });
        observation.views = futures::future::join_all(asks).await.into_iter().collect();
        obs.queue_ring = observation
            .views
            .values()
            .filter_map(|v| v.as_ref().ok())
            .max_by_key(|v| v.epoch)
            .cloned();
    }
    let step = queuering::next_step(&observation);
    tracing::debug!(?step, "queue ring step");
    match step {
        QueueStep::Steady => (current, None),
        QueueStep::Replicas(n) => (n, None),
        QueueStep::Wait(reason) => (current, Some(reason)),
        QueueStep::SetRing(members) => {
            let endpoint =
                ctx.queue_pod_endpoint(&name, namespace, members.first().copied().unwrap_or(0));
            match ctx.queue_api.set_ring(&endpoint, &members).await {
                Ok(()) => {
                    let done = format!("set the queue ring to {members:?}");
                    ctx.event(cluster, EventType::Normal, "QueueRingChanged", done.clone())
                        .await;
                    (current, Some(done))
                }
                Err(e) => {
                    ctx.event(
                        cluster,
                        EventType::Warning,
                        "QueueRingChangeFailed",
                        e.clone(),
                    )
                    .await;
                    (current, Some(e))
                }
            }
        }
    }
}

/// Carries out a membership change; a failure is reported (Event, status) and retried on the next reconcile.
async fn membership(
    cluster: &SyncCluster,
    ctx: &Context,
    endpoint: &str,
    change: &MembershipChange,
    done: String,
) -> String {
    match ctx.lock_api.change(endpoint, change).await {
        Ok(()) => {
            ctx.event(
                cluster,
                EventType::Normal,
                "LockMembershipChanged",
                done.clone(),
            )
            .await;
            done
        }
        Err(e) => {
            ctx.event(
                cluster,
                EventType::Warning,
                "LockMembershipChangeFailed",
                e.clone(),
            )
            .await;
            e
        }
    }
}

/// Restarts the next out-of-date lock pod, if it is safe now. Returns what the rollout is doing, if anything.
async fn roll_lock_pods(
    cluster: &SyncCluster,
    ctx: &Context,
    namespace: &str,
    sts: &StatefulSet,
    pods: &[Pod],
    obs: &Observation,
) -> Result<Option<String>, Error> {
    let name = cluster.name_any();
    let Some(update_revision) = sts.status.as_ref().and_then(|s| s.update_revision.clone()) else {
        return Ok(None);
    };
    let expected = sts
        .spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(0)
        .max(0) as usize;
    let views: Vec<PodView> = pods
        .iter()
        .filter_map(|p| {
            Some(PodView {
                ordinal: pod_ordinal(p)?,
                revision: p.labels().get("controller-revision-hash")?.clone(),
                ready: pod_ready(p),
            })
        })
        .collect();
    let leader = obs.raft.as_ref().ok().and_then(|r: &RaftView| r.leader);
    match lockgroup::next_restart(&views, &update_revision, expected, leader) {
        RollStep::Done => Ok(None),
        RollStep::Wait(reason) => Ok(Some(reason)),
        RollStep::Restart(ordinal) => {
            let pod_name = format!("{}-{ordinal}", Component::Locks.object_name(&name));
            Api::<Pod>::namespaced(ctx.client.clone(), namespace)
                .delete(&pod_name, &DeleteParams::default())
                .await?;
            let note = format!("restarted lock pod {ordinal} onto the new revision");
            ctx.event(cluster, EventType::Normal, "RollingRestart", note.clone())
                .await;
            Ok(Some(note))
        }
    }
}

async fn lock_pods(ctx: &Context, name: &str, namespace: &str) -> Result<Vec<Pod>, Error> {
    let selector = build::selector_labels(name, Component::Locks)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    let pods = Api::<Pod>::namespaced(ctx.client.clone(), namespace)
        .list(&ListParams::default().labels(&selector))
        .await?;
    Ok(pods.items)
}

fn pod_ordinal(pod: &Pod) -> Option<u64> {
    pod.labels().get(POD_INDEX_LABEL)?.parse().ok()
}

fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Server-side apply of one object under the operator's field manager.
async fn apply<K>(api: &Api<K>, object: &K, params: &PatchParams) -> Result<K, Error>
where
    K: Resource + Serialize + DeserializeOwned + Clone + Debug,
{
    let name = object.meta().name.clone().unwrap_or_default();
    Ok(api.patch(&name, params, &Patch::Apply(object)).await?)
}

/// Deletes a turned-off component's objects (PVCs follow by the StatefulSet's retention policy).
async fn delete_component(
    ctx: &Context,
    name: &str,
    namespace: &str,
    component: Component,
) -> Result<(), Error> {
    let dp = DeleteParams::default();
    let object = component.object_name(name);
    // The StatefulSet goes last: its existence is what makes the next reconcile come back here, so a failure
    // part-way leaves it in place and the rest is retried.
    ignore_missing(
        Api::<PodDisruptionBudget>::namespaced(ctx.client.clone(), namespace)
            .delete(&object, &dp)
            .await,
    )?;
    let services: Api<Service> = Api::namespaced(ctx.client.clone(), namespace);
    ignore_missing(services.delete(&object, &dp).await)?;
    ignore_missing(
        services
            .delete(&component.peers_service_name(name), &dp)
            .await,
    )?;
    ignore_missing(
        Api::<ConfigMap>::namespaced(ctx.client.clone(), namespace)
            .delete(&component.config_name(name), &dp)
            .await,
    )?;
    ignore_missing(
        Api::<StatefulSet>::namespaced(ctx.client.clone(), namespace)
            .delete(&object, &dp)
            .await,
    )?;
    Ok(())
}

fn ignore_missing<T>(result: Result<T, kube::Error>) -> Result<(), Error> {
    match result {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

async fn write_status(
    cluster: &SyncCluster,
    ctx: &Context,
    namespace: &str,
    obs: &Observation,
) -> Result<crate::crd::SyncClusterStatus, Error> {
    let status = status::compute(obs, cluster.status.as_ref(), Timestamp::now());
    let patch = serde_json::json!({
        "apiVersion": SyncCluster::api_version(&()),
        "kind": SyncCluster::kind(&()),
        "status": status,
    });
    Api::<SyncCluster>::namespaced(ctx.client.clone(), namespace)
        .patch_status(
            &cluster.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await?;
    Ok(status)
}

/// Runs the controller until `shutdown` resolves.
pub async fn run(
    ctx: Arc<Context>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let client = ctx.client.clone();
    let owned = watcher::Config::default().labels(&format!("{MANAGED_BY_LABEL}={FIELD_MANAGER}"));
    Controller::new(
        Api::<SyncCluster>::all(client.clone()),
        watcher::Config::default().any_semantic(),
    )
    .owns(Api::<StatefulSet>::all(client.clone()), owned.clone())
    .owns(Api::<Service>::all(client.clone()), owned.clone())
    .owns(Api::<ConfigMap>::all(client.clone()), owned.clone())
    .owns(Api::<PodDisruptionBudget>::all(client), owned)
    .graceful_shutdown_on(shutdown)
    .run(reconcile, error_policy, ctx)
    .for_each(|result| async move {
        match result {
            Ok((object, _)) => tracing::debug!(cluster = %object.name, "reconciled"),
            Err(e) => tracing::debug!(error = %e, "reconcile loop"),
        }
    })
    .await;
}

#[cfg(test)]
mod tests;
