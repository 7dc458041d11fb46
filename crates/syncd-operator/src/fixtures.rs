//! Test fixtures for reconcile tests: a fake Kubernetes API server and a fake lock service.
//!
//! The reconciler runs against a real [`kube::Client`] whose transport is a `tower-test` mock. An
//! [`ApiServerVerifier`] task takes the requests off the mock in order and checks each against the next step of a
//! scenario (method, path, the query parameters that matter, the body where it matters), then answers with the JSON
//! the API server would send. A request the scenario does not expect, a missing one, or one left over at the end
//! fails the test; [`within`] bounds every test so a request that never comes fails instead of hanging.
//!
//! [`FakeLockGroup`] stands in for the lock service: it reports a configured raft view (or an error) and records
//! every membership change.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::future::BoxFuture;
use http::{Method, Request, Response, StatusCode};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::ObjectMeta;
use kube::client::Body;
use kube::runtime::events::{Recorder, Reporter};
use kube::{Client, Resource};
use serde_json::{Value, json};
use syncd_api::locks::MembershipChange;
use tokio::task::JoinHandle;
use tower_test::mock::{self, Handle};

use crate::build::config::PEERS_KEY;
use crate::build::statefulset::POD_INDEX_LABEL;
use crate::build::{self, BuildContext, Component, FIELD_MANAGER};
use crate::controller::{self, Context};
use crate::crd::{
    CacheSpec, LocksSpec, QueuesSpec, SyncCluster, SyncClusterSpec, SyncClusterStatus,
};
use crate::error::Error;
use crate::lock_api::LockGroupApi;
use crate::lockgroup::RaftView;
use crate::metrics::Metrics;

/// The namespace every fixture lives in.
pub const NAMESPACE: &str = "syncd-test";
/// The name of the SyncCluster fixture.
pub const NAME: &str = "demo";
/// The operator's default image in the fixture context.
pub const IMAGE: &str = "syncd:0.1.0";
/// The `metadata.generation` of the SyncCluster fixture.
pub const GENERATION: i64 = 3;
/// How long one reconcile scenario may take before it counts as hung.
const SCENARIO_TIMEOUT: Duration = Duration::from_secs(10);

/// A SyncCluster named [`NAME`] in [`NAMESPACE`], with the identity the API server gives it and these replicas.
pub fn cluster(locks: i32, queues: i32, cache: i32) -> SyncCluster {
    named(NAME, locks, queues, cache)
}

/// Like [`cluster`], with another name.
pub fn named(name: &str, locks: i32, queues: i32, cache: i32) -> SyncCluster {
    let spec = SyncClusterSpec {
        image: None,
        image_pull_policy: None,
        locks: LocksSpec {
            replicas: locks,
            ..LocksSpec::default()
        },
        queues: QueuesSpec {
            replicas: queues,
            ..QueuesSpec::default()
        },
        cache: CacheSpec {
            replicas: cache,
            ..CacheSpec::default()
        },
    };
    let mut cluster = SyncCluster::new(name, spec);
    cluster.metadata = ObjectMeta {
        name: Some(name.to_owned()),
        namespace: Some(NAMESPACE.to_owned()),
        uid: Some("6a0e1f4c-2b7d-4a39-9d51-0c6f2e8b7a10".to_owned()),
        generation: Some(GENERATION),
        resource_version: Some("4711".to_owned()),
        ..ObjectMeta::default()
    };
    cluster
}

/// A raft view with these voters and learners.
pub fn raft(voters: &[u64], learners: &[u64], leader: Option<u64>) -> RaftView {
    RaftView {
        voters: voters.iter().copied().collect(),
        learners: learners.iter().copied().collect(),
        leader,
        term: 7,
    }
}

/// A StatefulSet `status` as the StatefulSet controller reports it.
pub fn sts_status(
    replicas: i32,
    ready: i32,
    updated: i32,
    revisions: Option<(&str, &str)>,
) -> Value {
    let mut status = json!({
        "observedGeneration": 1,
        "replicas": replicas,
        "readyReplicas": ready,
        "availableReplicas": ready,
        "currentReplicas": updated,
        "updatedReplicas": updated,
    });
    if let Some((current, update)) = revisions {
        status["currentRevision"] = json!(current);
        status["updateRevision"] = json!(update);
    }
    status
}

/// The StatefulSet of `component` as it exists in the cluster: what the operator applied for `replicas`, with
/// server-populated metadata and `status`.
pub fn existing_statefulset(
    cluster: &SyncCluster,
    component: Component,
    replicas: i32,
    status: Value,
) -> StatefulSet {
    let build_ctx = BuildContext {
        default_image: IMAGE.to_owned(),
        namespace: NAMESPACE.to_owned(),
    };
    let desired = build::desired(cluster, component, replicas, &build_ctx).unwrap();
    let mut object = serde_json::to_value(&desired.statefulset).unwrap();
    stored(&mut object);
    object["status"] = status;
    serde_json::from_value(object).unwrap()
}

/// Lock pod `ordinal` on `revision`: `running` sets the phase, `ready` the Ready condition.
pub fn lock_pod(ordinal: u64, revision: &str, running: bool, ready: bool) -> Pod {
    let mut labels = build::selector_labels(NAME, Component::Locks);
    labels.insert(POD_INDEX_LABEL.to_owned(), ordinal.to_string());
    labels.insert("controller-revision-hash".to_owned(), revision.to_owned());
    let condition = if ready { "True" } else { "False" };
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": format!("{NAME}-locks-{ordinal}"),
            "namespace": NAMESPACE,
            "uid": format!("0f2d9c1e-0000-4000-8000-00000000000{ordinal}"),
            "resourceVersion": "812",
            "labels": labels,
        },
        "spec": { "containers": [{ "name": "syncd", "image": IMAGE }] },
        "status": {
            "phase": if running { "Running" } else { "Pending" },
            "conditions": [{ "type": "Ready", "status": condition }],
        },
    }))
    .unwrap()
}

/// Lock pods `0..n`, running and ready on `revision`.
pub fn ready_lock_pods(n: u64, revision: &str) -> Vec<Pod> {
    (0..n).map(|i| lock_pod(i, revision, true, true)).collect()
}

/// Adds what the API server fills in on a stored object.
fn stored(object: &mut Value) {
    let meta = &mut object["metadata"];
    meta["uid"] = json!("3c1b7f0e-5d2a-4c8e-9f61-2a7d0b4e8c35");
    meta["resourceVersion"] = json!("1024");
    meta["generation"] = json!(1);
    meta["creationTimestamp"] = json!("2025-01-01T00:00:00Z");
}

/// The fake lock service: a configured raft view or error, and a record of what the operator asked.
pub struct FakeLockGroup {
    view: Result<RaftView, String>,
    asked: Mutex<Vec<String>>,
    changes: Mutex<Vec<MembershipChange>>,
}

impl FakeLockGroup {
    /// A lock service that reports `view`.
    pub fn reachable(view: RaftView) -> Arc<Self> {
        Arc::new(FakeLockGroup {
            view: Ok(view),
            asked: Mutex::default(),
            changes: Mutex::default(),
        })
    }

    /// A lock service that cannot be reached.
    pub fn unreachable(reason: &str) -> Arc<Self> {
        Arc::new(FakeLockGroup {
            view: Err(reason.to_owned()),
            asked: Mutex::default(),
            changes: Mutex::default(),
        })
    }

    /// The membership changes made, in order.
    pub fn changes(&self) -> Vec<MembershipChange> {
        self.changes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The endpoints the raft view was asked at, in order.
    pub fn asked(&self) -> Vec<String> {
        self.asked
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl LockGroupApi for FakeLockGroup {
    fn raft_view<'a>(&'a self, endpoint: &'a str) -> BoxFuture<'a, Result<RaftView, String>> {
        self.asked
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(endpoint.to_owned());
        let view = self.view.clone();
        Box::pin(async move { view })
    }

    fn change<'a>(
        &'a self,
        endpoint: &'a str,
        change: &'a MembershipChange,
    ) -> BoxFuture<'a, Result<(), String>> {
        let result = if self.view.is_ok() {
            self.changes
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(change.clone());
            Ok(())
        } else {
            Err(format!("cannot reach the lock service at {endpoint}"))
        };
        Box::pin(async move { result })
    }
}

/// Queue pods that never answer (the reconcile tests have no pods): the operator may grow the queue
/// StatefulSet but never shrinks it or changes the ring.
pub struct UnreachableQueues;

impl crate::queue_api::QueueRingApi for UnreachableQueues {
    fn ring_view<'a>(
        &'a self,
        endpoint: &'a str,
    ) -> BoxFuture<'a, Result<crate::queuering::RingView, String>> {
        Box::pin(async move { Err(format!("no queue pod at {endpoint} in tests")) })
    }

    fn set_ring<'a>(
        &'a self,
        endpoint: &'a str,
        _: &'a [u64],
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move { Err(format!("no queue pod at {endpoint} in tests")) })
    }
}

/// A reconcile context whose client talks to the returned [`ApiServerVerifier`] and whose lock service is `lock`.
pub fn context(lock: Arc<FakeLockGroup>) -> (Arc<Context>, ApiServerVerifier) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let reporter = Reporter {
        controller: FIELD_MANAGER.to_owned(),
        instance: Some("syncd-operator-test".to_owned()),
    };
    let ctx = Context::new(
        client.clone(),
        lock,
        Recorder::new(client, reporter),
        Metrics::new(),
        IMAGE.to_owned(),
        controller::default_lock_endpoint(),
    )
    .with_queues(
        Arc::new(UnreachableQueues),
        controller::default_queue_endpoint(),
    );
    (Arc::new(ctx), ApiServerVerifier(handle))
}

/// Runs one reconcile of `cluster` against a fake API server that serves `scenario`, bounded by a timeout.
/// Fails the test if the server saw anything but exactly the scenario.
pub async fn reconcile(
    cluster: SyncCluster,
    lock: Arc<FakeLockGroup>,
    scenario: Vec<Expect>,
) -> Result<kube::runtime::controller::Action, Error> {
    within(async move {
        let (ctx, server) = context(lock);
        let server = server.run(scenario);
        // `ctx` moves into the reconcile and is dropped when it returns: the server then sees the end.
        let result = controller::reconcile(Arc::new(cluster), ctx).await;
        finish(server).await;
        result
    })
    .await
}

/// Bounds a scenario: a request the server waits for that never comes, or an answer the reconciler waits for
/// that never comes, fails the test.
pub async fn within<F: Future>(scenario: F) -> F::Output {
    match tokio::time::timeout(SCENARIO_TIMEOUT, scenario).await {
        Ok(output) => output,
        Err(_) => panic!(
            "the scenario did not finish within {SCENARIO_TIMEOUT:?}: an expected request never came \
             or a client is still alive"
        ),
    }
}

/// Waits for the fake API server to finish its scenario and surfaces its assertion failures.
pub async fn finish(server: JoinHandle<()>) {
    match server.await {
        Ok(()) => {}
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => panic!("the fake API server task failed: {e}"),
    }
}

/// The path of a namespaced object of `K`.
fn path<K: Resource<DynamicType = ()>>(name: &str) -> String {
    format!("{}/{name}", K::url_path(&(), Some(NAMESPACE)))
}

/// Which requests one step matches.
enum Route {
    /// Exactly this method and path.
    Exact(Method, String),
    /// An Event about the SyncCluster: a `POST` creating it, or, when `repeat` allows it, the `PATCH` the
    /// recorder sends instead to count a repeat of an earlier Event with the same reason.
    Event {
        /// Whether a repeat counts.
        repeat: bool,
    },
}

/// What the fake API server answers.
enum Reply {
    /// 200 with this object.
    Object(Value),
    /// 200 with the applied object as the server stores it, with this `status` if any.
    Applied(Option<Value>),
    /// 201 with the posted object as stored.
    Created,
    /// 200 with this object, its `status` replaced by the applied one.
    StatusOf(Value),
    /// An API error `Status` with this code and reason.
    Failure(u16, &'static str),
}

type BodyCheck = Box<dyn FnOnce(&Value) + Send>;

/// One request the fake API server expects next, and its answer.
pub struct Expect {
    route: Route,
    query: Vec<(&'static str, String)>,
    content_type: Option<&'static str>,
    check: Option<BodyCheck>,
    reply: Reply,
}

impl Expect {
    fn new(route: Route, reply: Reply) -> Self {
        Expect {
            route,
            query: Vec::new(),
            content_type: None,
            check: None,
            reply,
        }
    }

    /// A server-side apply of the object at `path`: `PATCH` with an apply-patch body, `fieldManager=syncd-operator`
    /// and `force=true`.
    fn apply(path: String, status: Option<Value>) -> Self {
        Expect {
            query: vec![
                ("fieldManager", FIELD_MANAGER.to_owned()),
                ("force", "true".to_owned()),
            ],
            content_type: Some("application/apply-patch+yaml"),
            ..Expect::new(Route::Exact(Method::PATCH, path), Reply::Applied(status))
        }
    }

    /// Also checks the request body (parsed as JSON), after any check the step already has.
    pub fn body(mut self, check: impl FnOnce(&Value) + Send + 'static) -> Self {
        let earlier = self.check.take();
        self.check = Some(Box::new(move |body| {
            if let Some(earlier) = earlier {
                earlier(body);
            }
            check(body);
        }));
        self
    }

    /// For an Event: a repeat of an earlier one (a series `PATCH`) matches too.
    pub fn or_repeat(mut self) -> Self {
        if let Route::Event { repeat } = &mut self.route {
            *repeat = true;
        }
        self
    }

    /// Answers with an API error instead.
    pub fn fails(mut self, code: u16, reason: &'static str) -> Self {
        self.reply = Reply::Failure(code, reason);
        self
    }

    fn describe(&self) -> String {
        match &self.route {
            Route::Exact(method, path) => format!("{method} {path}"),
            Route::Event { repeat: false } => format!("POST of a new Event in {NAMESPACE}"),
            Route::Event { repeat: true } => format!("an Event (new or repeated) in {NAMESPACE}"),
        }
    }
}

/// `GET` of the StatefulSet of `component`: `None` answers 404.
pub fn get_statefulset(component: Component, existing: Option<StatefulSet>) -> Expect {
    let path = path::<StatefulSet>(&component.object_name(NAME));
    let reply = match existing {
        Some(sts) => Reply::Object(serde_json::to_value(sts).unwrap()),
        None => Reply::Failure(404, "NotFound"),
    };
    Expect::new(Route::Exact(Method::GET, path), reply)
}

/// `GET` of the lock pods by their selector labels.
pub fn list_lock_pods(pods: &[Pod]) -> Expect {
    let path = Pod::url_path(&(), Some(NAMESPACE));
    let selector = format!(
        "app.kubernetes.io/component=locks,app.kubernetes.io/instance={NAME},app.kubernetes.io/name=syncd"
    );
    Expect {
        query: vec![("labelSelector", selector)],
        ..Expect::new(
            Route::Exact(Method::GET, path),
            Reply::Object(json!({
                "apiVersion": "v1",
                "kind": "PodList",
                "metadata": { "resourceVersion": "900" },
                "items": pods,
            })),
        )
    }
}

/// The five server-side applies of one component, in the order the reconciler makes them: ConfigMap, peers
/// Service, client Service, StatefulSet (checked to have `replicas`, answered with `status`), PodDisruptionBudget.
/// For locks the ConfigMap's `SYNCD_PEERS` is checked to list exactly `replicas` members.
pub fn apply_component(component: Component, replicas: i32, status: Value) -> Vec<Expect> {
    use k8s_openapi::api::core::v1::{ConfigMap, Service};
    use k8s_openapi::api::policy::v1::PodDisruptionBudget;
    let name = component.object_name(NAME);
    let config =
        Expect::apply(path::<ConfigMap>(&component.config_name(NAME)), None).body(move |body| {
            assert_kind(body, "v1", "ConfigMap");
            if component == Component::Locks {
                let peers = body["data"][PEERS_KEY].as_str().unwrap_or_default();
                assert_eq!(
                    peers.split(',').filter(|p| !p.is_empty()).count(),
                    replicas as usize,
                    "SYNCD_PEERS of a {replicas}-pod lock StatefulSet: {peers}"
                );
            }
        });
    let peers =
        Expect::apply(path::<Service>(&component.peers_service_name(NAME)), None).body(|body| {
            assert_kind(body, "v1", "Service");
            assert_eq!(
                body["spec"]["clusterIP"], "None",
                "the peers Service is headless"
            );
        });
    let client =
        Expect::apply(path::<Service>(&name), None).body(|body| assert_kind(body, "v1", "Service"));
    let statefulset = apply_statefulset(component, replicas, status);
    let pdb = Expect::apply(path::<PodDisruptionBudget>(&name), None)
        .body(|body| assert_kind(body, "policy/v1", "PodDisruptionBudget"));
    vec![config, peers, client, statefulset, pdb]
}

/// The server-side apply of the StatefulSet of `component`, checked to have `replicas`, answered with `status`.
pub fn apply_statefulset(component: Component, replicas: i32, status: Value) -> Expect {
    let name = component.object_name(NAME);
    Expect::apply(path::<StatefulSet>(&name), Some(status)).body(move |body| {
        assert_kind(body, "apps/v1", "StatefulSet");
        assert_eq!(
            body["spec"]["replicas"], replicas,
            "replicas of the applied StatefulSet {name}"
        );
    })
}

/// An Event about the SyncCluster with this reason.
pub fn event(reason: &'static str) -> Expect {
    Expect::new(Route::Event { repeat: false }, Reply::Created).body(move |body| {
        assert_eq!(body["reason"], reason, "Event reason; the Event: {body}");
        assert_eq!(body["regarding"]["kind"], "SyncCluster");
        assert_eq!(body["regarding"]["namespace"], NAMESPACE);
        assert_eq!(body["reportingController"], FIELD_MANAGER);
    })
}

/// An Event with this reason whose note contains `note`.
pub fn event_with_note(reason: &'static str, note: impl Into<String>) -> Expect {
    let note = note.into();
    event(reason).body(move |body| {
        let actual = body["note"].as_str().unwrap_or_default();
        assert!(
            actual.contains(&note),
            "Event {reason} note {actual:?} lacks {note:?}"
        );
    })
}

/// An Event with this reason and note about the StatefulSet of `component` (its related object).
pub fn component_event(
    reason: &'static str,
    component: Component,
    note: impl Into<String>,
) -> Expect {
    event_with_note(reason, note).body(move |body| {
        let related = &body["related"];
        assert_eq!(related["kind"], "StatefulSet", "related object of {body}");
        assert_eq!(related["apiVersion"], "apps/v1", "related object of {body}");
        assert_eq!(
            related["name"],
            component.object_name(NAME),
            "related object of {body}"
        );
        assert_eq!(related["namespace"], NAMESPACE, "related object of {body}");
    })
}

/// The server-side apply of `cluster`'s status subresource; `check` sees the status. The answer is the whole
/// SyncCluster with the applied status, as the API server sends it.
pub fn patch_status(
    cluster: &SyncCluster,
    check: impl FnOnce(&SyncClusterStatus) + Send + 'static,
) -> Expect {
    let name = cluster.metadata.name.clone().unwrap_or_default();
    let path = format!("{}/status", path::<SyncCluster>(&name));
    let mut expect = Expect::apply(path, None).body(move |body| {
        assert_kind(body, "syncd.dev/v1alpha1", "SyncCluster");
        let status: SyncClusterStatus = serde_json::from_value(body["status"].clone())
            .unwrap_or_else(|e| panic!("the status patch holds no valid status ({e}): {body}"));
        check(&status);
    });
    expect.reply = Reply::StatusOf(serde_json::to_value(cluster).unwrap());
    expect
}

/// `DELETE` of the object of kind `K` named `name`; `found: false` answers 404.
pub fn delete<K: Resource<DynamicType = ()>>(name: &str, found: bool) -> Expect {
    let reply = if found {
        Reply::Object(json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Success",
            "details": { "name": name, "kind": K::plural(&()) },
        }))
    } else {
        Reply::Failure(404, "NotFound")
    };
    Expect::new(Route::Exact(Method::DELETE, path::<K>(name)), reply)
}

/// `DELETE` of lock pod `ordinal`, answered with the terminating pod.
pub fn delete_lock_pod(ordinal: u64, revision: &str) -> Expect {
    let mut pod = serde_json::to_value(lock_pod(ordinal, revision, true, true)).unwrap();
    pod["metadata"]["deletionTimestamp"] = json!("2025-01-01T00:10:00Z");
    pod["metadata"]["deletionGracePeriodSeconds"] = json!(30);
    let name = format!("{}-{ordinal}", Component::Locks.object_name(NAME));
    Expect::new(
        Route::Exact(Method::DELETE, path::<Pod>(&name)),
        Reply::Object(pod),
    )
}

fn assert_kind(body: &Value, api_version: &str, kind: &str) {
    assert_eq!(body["apiVersion"], api_version, "apiVersion of {body}");
    assert_eq!(body["kind"], kind, "kind of {body}");
    assert_eq!(
        body["metadata"]["namespace"].as_str().unwrap_or(NAMESPACE),
        NAMESPACE
    );
}

/// The fake API server: the other end of the mock service behind the context's client.
pub struct ApiServerVerifier(Handle<Request<Body>, Response<Body>>);

impl ApiServerVerifier {
    /// Serves `scenario` step by step in a task, then checks that no further request comes before every client is
    /// dropped. The task panics (failing the test through [`finish`]) on the first mismatch.
    pub fn run(self, scenario: Vec<Expect>) -> JoinHandle<()> {
        let mut handle = self.0;
        tokio::spawn(async move {
            let total = scenario.len();
            for (i, expect) in scenario.into_iter().enumerate() {
                let Some((request, send)) = handle.next_request().await else {
                    panic!(
                        "the reconciler stopped after {i} of {total} expected requests; \
                         step {} expected {}",
                        i + 1,
                        expect.describe()
                    );
                };
                let response = serve(i + 1, expect, request).await;
                send.send_response(response);
            }
            if let Some((request, _)) = handle.next_request().await {
                panic!(
                    "unexpected request after the {total} expected ones: {} {}",
                    request.method(),
                    request.uri()
                );
            }
        })
    }
}

/// Checks one request against its step and builds the answer.
async fn serve(step: usize, expect: Expect, request: Request<Body>) -> Response<Body> {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let query = query_pairs(request.uri().query().unwrap_or_default());
    let content_type = request
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let seen = format!("{method} {}", request.uri());
    match &expect.route {
        Route::Exact(m, p) => assert!(
            method == *m && path == *p,
            "step {step}: expected {}, got {seen}",
            expect.describe()
        ),
        Route::Event { repeat: repeat_ok } => {
            let events = format!("/apis/events.k8s.io/v1/namespaces/{NAMESPACE}/events");
            let create = method == Method::POST && path == events;
            let repeat = method == Method::PATCH && path.starts_with(&format!("{events}/"));
            assert!(
                create || (repeat && *repeat_ok),
                "step {step}: expected {}, got {seen}",
                expect.describe()
            );
        }
    }
    for (key, value) in &expect.query {
        assert!(
            query.iter().any(|(k, v)| k == key && v == value),
            "step {step}: {seen} lacks the query parameter {key}={value}"
        );
    }
    if let Some(expected) = expect.content_type {
        assert_eq!(
            content_type.as_deref(),
            Some(expected),
            "step {step}: content type of {seen}"
        );
    }
    let bytes = request.into_body().collect_bytes().await.unwrap();
    let body: Value = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("step {step}: the body of {seen} is not JSON: {e}"))
    };
    if let Some(check) = expect.check {
        check(&body);
    }
    match expect.reply {
        Reply::Object(object) => respond(StatusCode::OK, &object),
        Reply::Applied(status) => {
            let mut object = body;
            stored(&mut object);
            if let Some(status) = status {
                object["status"] = status;
            }
            respond(StatusCode::OK, &object)
        }
        Reply::StatusOf(mut object) => {
            object["status"] = body["status"].clone();
            respond(StatusCode::OK, &object)
        }
        Reply::Created => {
            let mut object = body;
            stored(&mut object);
            respond(StatusCode::CREATED, &object)
        }
        Reply::Failure(code, reason) => {
            let code = StatusCode::from_u16(code).unwrap();
            let status = json!({
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Failure",
                "message": format!("{reason}: {path}"),
                "reason": reason,
                "code": code.as_u16(),
            });
            respond(code, &status)
        }
    }
}

fn respond(code: StatusCode, body: &Value) -> Response<Body> {
    Response::builder()
        .status(code)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Body::from(serde_json::to_vec(body).unwrap()))
        .unwrap()
}

/// `a=1&b=x%2Cy` as decoded pairs.
fn query_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hex: String = bytes.by_ref().take(2).map(char::from).collect();
                out.push(u8::from_str_radix(&hex, 16).unwrap());
            }
            b => out.push(b),
        }
    }
    String::from_utf8(out).unwrap()
}
