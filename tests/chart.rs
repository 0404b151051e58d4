//! Tests of the Helm chart in `charts/registry-operator` and of the kind manifests in
//! `deploy/kind`: `helm lint`, the fields of `helm template` output, the values schema,
//! server-side dry runs and RBAC checks against the local kube-apiserver.
//!
//! They shell out to `helm` and `kubectl`, which `hack/stack.sh env` puts on `PATH`
//! (`helm` in `$STACK_BIN`), and use the `KUBECONFIG` of the local stack.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde::Deserialize;
use serde_json::{Value, json};

const CHART_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/charts/registry-operator");
const CRD_NAME: &str = "registrynodes.omninode.io";
const API_TOKEN_FILE: &str = "/var/run/secrets/registry-operator/api-token/token";
const RUN_HINT: &str = "run the tests through hack/test.sh, or start the stack with \
                        `hack/stack.sh up` and then `eval \"$(hack/stack.sh env)\"`";

// ---------------------------------------------------------------------------------------
// Running helm and kubectl
// ---------------------------------------------------------------------------------------

/// Returns `$STACK_BIN/helm` when it exists, else `helm` from `PATH`.
fn helm_program() -> PathBuf {
    if let Ok(bin) = std::env::var("STACK_BIN") {
        let helm = Path::new(&bin).join("helm");
        if helm.is_file() {
            return helm;
        }
    }
    PathBuf::from("helm")
}

/// Runs `command` with `stdin` as its input and returns its output. Fails with the way
/// to set up the environment when the program is missing.
fn run(mut command: Command, stdin: Option<&str>) -> Output {
    let program = command.get_program().to_string_lossy().into_owned();
    command.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    command.stdout(Stdio::piped()).stderr(Stdio::piped());

    let mut child = command.spawn().unwrap_or_else(|error| {
        panic!("starting `{program}` failed ({error}): it must be on PATH; {RUN_HINT}")
    });
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("stdin is piped")
            .write_all(input.as_bytes())
            .unwrap_or_else(|error| panic!("writing to the stdin of `{program}` failed: {error}"));
    }
    child
        .wait_with_output()
        .unwrap_or_else(|error| panic!("waiting for `{program}` failed: {error}"))
}

fn helm(args: &[&str]) -> Output {
    let mut command = Command::new(helm_program());
    command.args(args);
    run(command, None)
}

/// Runs kubectl against the local stack's API server.
fn kubectl(args: &[&str], stdin: Option<&str>) -> Output {
    require_kubeconfig();
    let mut command = Command::new("kubectl");
    command.args(args);
    run(command, stdin)
}

fn require_kubeconfig() {
    if std::env::var_os("KUBECONFIG").is_none() {
        panic!("KUBECONFIG is not set: {RUN_HINT}");
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs kubectl and fails with its output unless it succeeds.
fn kubectl_ok(action: &str, args: &[&str], stdin: Option<&str>) -> String {
    let output = kubectl(args, stdin);
    assert!(
        output.status.success(),
        "{action} failed (kubectl {}):\nstdout: {}\nstderr: {}",
        args.join(" "),
        text(&output.stdout),
        text(&output.stderr)
    );
    text(&output.stdout)
}

/// Returns a Kubernetes name unique to this test run.
fn unique_name(prefix: &str) -> String {
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}{}", &suffix[..10])
}

/// Creates a namespace for one test. Namespaces stay behind, because the local stack
/// runs no kube-controller-manager that would finish deleting them.
fn create_namespace(prefix: &str, labels: &[(&str, &str)]) -> String {
    let name = unique_name(prefix);
    kubectl_ok(
        "creating a namespace",
        &["create", "namespace", &name],
        None,
    );
    for (key, value) in labels {
        kubectl_ok(
            "labelling the namespace",
            &["label", "namespace", &name, &format!("{key}={value}")],
            None,
        );
    }
    name
}

/// Applies the chart's CRD for real and waits until it is established, so that
/// RegistryNode objects and `kubectl auth can-i` on them resolve.
fn apply_chart_crd() {
    let crds = format!("{CHART_DIR}/crds/");
    kubectl_ok(
        "applying the chart's CRD",
        &[
            "apply",
            "--server-side",
            "--force-conflicts",
            "--field-manager",
            "registry-operator-chart-tests",
            "-f",
            &crds,
        ],
        None,
    );
    kubectl_ok(
        "waiting for the CRD to be established",
        &[
            "wait",
            "--for",
            "condition=Established",
            "--timeout",
            "60s",
            &format!("crd/{CRD_NAME}"),
        ],
        None,
    );
}

/// Runs a server-side dry run of `manifests` and fails with kubectl's output unless it
/// succeeds. `namespace` goes to `-n`, for manifests whose objects name no namespace.
fn server_dry_run(action: &str, namespace: Option<&str>, manifests: &str) -> String {
    let mut args = vec![
        "apply",
        "--server-side",
        "--dry-run=server",
        "--field-manager",
        "registry-operator-chart-tests",
    ];
    if let Some(namespace) = namespace {
        args.extend(["-n", namespace]);
    }
    args.extend(["-f", "-"]);
    kubectl_ok(action, &args, Some(manifests))
}

// ---------------------------------------------------------------------------------------
// Rendering the chart
// ---------------------------------------------------------------------------------------

/// Writes `yaml` to a temporary values file, deleted when the handle drops.
fn values_file(yaml: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::Builder::new()
        .suffix(".yaml")
        .tempfile()
        .expect("creating a temporary values file failed");
    file.write_all(yaml.as_bytes())
        .expect("writing the temporary values file failed");
    file
}

/// Runs `helm template` and returns its output.
fn helm_template(release: &str, namespace: &str, extra: &[&str]) -> Output {
    let mut args = vec!["template", release, CHART_DIR, "--namespace", namespace];
    args.extend_from_slice(extra);
    helm(&args)
}

/// Renders the chart and returns its manifests as YAML text.
fn render(release: &str, namespace: &str, extra: &[&str]) -> String {
    let output = helm_template(release, namespace, extra);
    assert!(
        output.status.success(),
        "helm template {release} {} failed:\n{}",
        extra.join(" "),
        text(&output.stderr)
    );
    text(&output.stdout)
}

/// Parses a multi-document YAML stream into JSON values, skipping empty documents.
fn parse_documents(yaml: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(yaml)
        .map(|document| {
            let value = serde_yaml::Value::deserialize(document)
                .unwrap_or_else(|error| panic!("rendered YAML does not parse: {error}"));
            serde_json::to_value(value).expect("rendered YAML converts to JSON")
        })
        .filter(|value| !value.is_null())
        .collect()
}

fn render_documents(release: &str, namespace: &str, extra: &[&str]) -> Vec<Value> {
    parse_documents(&render(release, namespace, extra))
}

fn kinds(documents: &[Value]) -> BTreeSet<String> {
    documents
        .iter()
        .map(|document| document["kind"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Returns the only object of `kind`, failing when there is none or more than one.
fn only<'a>(documents: &'a [Value], kind: &str) -> &'a Value {
    let matches: Vec<&Value> = documents
        .iter()
        .filter(|document| document["kind"] == kind)
        .collect();
    assert_eq!(
        matches.len(),
        1,
        "expected exactly one {kind} in the rendered chart, found {}",
        matches.len()
    );
    matches[0]
}

fn find<'a>(documents: &'a [Value], kind: &str, name: &str) -> &'a Value {
    documents
        .iter()
        .find(|document| document["kind"] == kind && document["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("the rendered chart has no {kind} named {name}"))
}

fn operator_container(deployment: &Value) -> &Value {
    let containers = deployment["spec"]["template"]["spec"]["containers"]
        .as_array()
        .expect("the Deployment has containers");
    assert_eq!(containers.len(), 1, "the Deployment has one container");
    &containers[0]
}

/// Returns the container's env entry `name`, if any.
fn env_entry<'a>(container: &'a Value, name: &str) -> Option<&'a Value> {
    container["env"]
        .as_array()
        .expect("the container has env")
        .iter()
        .find(|entry| entry["name"] == name)
}

fn env_value<'a>(container: &'a Value, name: &str) -> &'a Value {
    let entry = env_entry(container, name)
        .unwrap_or_else(|| panic!("the container has no env variable {name}"));
    &entry["value"]
}

fn chart_app_version() -> String {
    let chart: Value = serde_yaml::from_str(&read_repo_file("charts/registry-operator/Chart.yaml"))
        .expect("Chart.yaml parses");
    chart["appVersion"]
        .as_str()
        .expect("Chart.yaml has appVersion")
        .to_owned()
}

fn read_repo_file(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&full)
        .unwrap_or_else(|error| panic!("reading {} failed: {error}", full.display()))
}

/// Returns the (API group, resource, verb) triples that the rules of a Role or
/// ClusterRole grant.
fn granted(role: &Value) -> BTreeSet<(String, String, String)> {
    let mut triples = BTreeSet::new();
    for rule in role["rules"].as_array().expect("the role has rules") {
        assert!(
            rule.get("resourceNames").is_none() && rule.get("nonResourceURLs").is_none(),
            "rules use neither resourceNames nor nonResourceURLs: {rule}"
        );
        for group in rule["apiGroups"].as_array().expect("apiGroups") {
            for resource in rule["resources"].as_array().expect("resources") {
                for verb in rule["verbs"].as_array().expect("verbs") {
                    triples.insert((
                        group.as_str().expect("group").to_owned(),
                        resource.as_str().expect("resource").to_owned(),
                        verb.as_str().expect("verb").to_owned(),
                    ));
                }
            }
        }
    }
    triples
}

fn triples(entries: &[(&str, &str, &[&str])]) -> BTreeSet<(String, String, String)> {
    entries
        .iter()
        .flat_map(|(group, resource, verbs)| {
            verbs
                .iter()
                .map(move |verb| (group.to_string(), resource.to_string(), verb.to_string()))
        })
        .collect()
}

fn expected_cluster_role_grants() -> BTreeSet<(String, String, String)> {
    triples(&[
        (
            "omninode.io",
            "registrynodes",
            &["get", "list", "watch", "patch", "update"],
        ),
        (
            "omninode.io",
            "registrynodes/status",
            &["get", "patch", "update"],
        ),
        ("omninode.io", "registrynodes/finalizers", &["update"]),
        ("", "secrets", &["get", "list", "watch"]),
        ("events.k8s.io", "events", &["create", "patch"]),
        ("", "events", &["create", "patch"]),
        (
            "coordination.k8s.io",
            "leases",
            &["get", "list", "watch", "create", "update", "patch"],
        ),
    ])
}

/// Returns the values of a green release. They differ from the defaults in the image,
/// replicas, rollout identity, watched namespace, log level, grace period, API token,
/// metrics Service, resources, pod labels and example RegistryNode.
fn green_values(watch_namespace: &str) -> String {
    format!(
        r#"
image:
  repository: example.org/omninode/registry-operator
  tag: 1.2.3
  pullPolicy: Always
replicaCount: 2
deploymentId: prod-green-004
epoch: 20251113
networkId: omninode-network-1
watchNamespace: {watch_namespace}
logLevel: info,registry_operator=debug
terminationGracePeriodSeconds: 45
api:
  tokenSecret:
    name: registry-api-token
    key: bearer
metrics:
  service:
    enabled: false
    port: 8080
resources:
  requests:
    cpu: 50m
    memory: 64Mi
  limits:
    memory: 256Mi
podLabels:
  omninode.io/colour: green
registryNode:
  enabled: true
  name: green-registry
  namespace: ""
  spec:
    registryId: green-registry
    environment: prod
    networkId: omninode-network-1
    kafka:
      bootstrapServers: kafka-0.kafka:9092,kafka-1.kafka:9092
    consul:
      address: http://consul-server:8500
      registrationMode: agent
    postgres:
      urlSecretRef:
        name: registry-postgres
        key: url
      schema: green
    heartbeat:
      intervalSeconds: 10
    cleanupPolicy: Delete
"#
    )
}

// ---------------------------------------------------------------------------------------
// Files and lint
// ---------------------------------------------------------------------------------------

#[test]
fn chart_crd_matches_repository_crd() {
    let repository = read_repo_file("crds/registrynodes.omninode.io.yaml");
    let chart = read_repo_file("charts/registry-operator/crds/registrynodes.omninode.io.yaml");
    assert!(
        chart == repository,
        "charts/registry-operator/crds/registrynodes.omninode.io.yaml differs from \
         crds/registrynodes.omninode.io.yaml: copy it with \
         `cp crds/registrynodes.omninode.io.yaml charts/registry-operator/crds/`"
    );
}

#[test]
fn chart_lint_strict_passes() {
    let output = helm(&["lint", "--strict", CHART_DIR]);
    assert!(
        output.status.success(),
        "helm lint --strict failed:\n{}{}",
        text(&output.stdout),
        text(&output.stderr)
    );

    let green = values_file(&green_values("watched"));
    let path = green.path().to_str().expect("UTF-8 path");
    let output = helm(&["lint", "--strict", CHART_DIR, "-f", path]);
    assert!(
        output.status.success(),
        "helm lint --strict with the green values failed:\n{}{}",
        text(&output.stdout),
        text(&output.stderr)
    );
}

// ---------------------------------------------------------------------------------------
// helm template with default values
// ---------------------------------------------------------------------------------------

#[test]
fn template_defaults_render_expected_objects() {
    let documents = render_documents("ro", "operators", &[]);

    let expected: BTreeSet<String> = [
        "ClusterRole",
        "ClusterRoleBinding",
        "Deployment",
        "Service",
        "ServiceAccount",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    assert_eq!(kinds(&documents), expected, "kinds of the rendered objects");

    // Every namespaced object names its namespace, so the manifests apply without -n
    // and the watched-namespace RoleBinding can live outside the release namespace.
    for document in &documents {
        let kind = document["kind"].as_str().unwrap_or_default();
        if kind == "ClusterRole" || kind == "ClusterRoleBinding" {
            assert!(
                document["metadata"].get("namespace").is_none(),
                "the cluster-scoped {kind} has no namespace"
            );
        } else {
            assert_eq!(
                document["metadata"]["namespace"], "operators",
                "the {kind} is in the release namespace"
            );
        }
    }

    let service_account = only(&documents, "ServiceAccount");
    assert_eq!(
        service_account["metadata"]["name"], "ro-registry-operator",
        "ServiceAccount name"
    );
    assert_eq!(
        service_account["metadata"]["namespace"], "operators",
        "ServiceAccount namespace"
    );

    let binding = only(&documents, "ClusterRoleBinding");
    assert_eq!(
        binding["roleRef"],
        json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "ro-registry-operator"}),
        "ClusterRoleBinding roleRef"
    );
    assert_eq!(
        binding["subjects"],
        json!([{"kind": "ServiceAccount", "name": "ro-registry-operator", "namespace": "operators"}]),
        "ClusterRoleBinding subjects"
    );
}

#[test]
fn template_defaults_rbac_rules_are_exact() {
    let documents = render_documents("ro", "operators", &[]);

    let cluster_role = only(&documents, "ClusterRole");
    assert_eq!(
        granted(cluster_role),
        expected_cluster_role_grants(),
        "ClusterRole grants exactly what the operator calls"
    );

    assert!(
        !kinds(&documents).contains("Role"),
        "no namespaced Role: Leases live in the namespaces of the RegistryNodes"
    );
}

#[test]
fn template_defaults_deployment() {
    let documents = render_documents("ro", "operators", &[]);
    let deployment = only(&documents, "Deployment");
    let pod = &deployment["spec"]["template"]["spec"];
    let container = operator_container(deployment);

    assert_eq!(
        deployment["metadata"]["name"], "ro-registry-operator",
        "name"
    );
    assert_eq!(
        deployment["metadata"]["namespace"], "operators",
        "namespace"
    );
    assert_eq!(deployment["spec"]["replicas"], 1, "replicas");
    assert_eq!(
        deployment["spec"]["selector"]["matchLabels"],
        json!({"app.kubernetes.io/name": "registry-operator", "app.kubernetes.io/instance": "ro"}),
        "selector"
    );
    assert_eq!(
        pod["serviceAccountName"], "ro-registry-operator",
        "serviceAccountName"
    );
    assert_eq!(
        pod["terminationGracePeriodSeconds"], 30,
        "terminationGracePeriodSeconds"
    );

    assert_eq!(
        container["image"],
        format!("registry-operator:{}", chart_app_version()),
        "the image tag defaults to the chart's appVersion"
    );
    assert_eq!(container["imagePullPolicy"], "IfNotPresent", "pull policy");
    assert_eq!(
        container["args"],
        json!(["run", "--http-addr", "0.0.0.0:8080", "--log-format", "json"]),
        "args"
    );
    assert_eq!(
        container["ports"],
        json!([{"name": "http", "containerPort": 8080, "protocol": "TCP"}]),
        "ports"
    );
    assert_eq!(
        container["livenessProbe"]["httpGet"],
        json!({"path": "/healthz", "port": "http"}),
        "liveness probe"
    );
    assert_eq!(
        container["readinessProbe"]["httpGet"],
        json!({"path": "/readyz", "port": "http"}),
        "readiness probe"
    );
    assert_eq!(
        container["resources"],
        json!({"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}}),
        "resources"
    );
    assert!(
        container.get("volumeMounts").is_none(),
        "no volume is mounted without the API token"
    );
    assert!(
        pod.get("volumes").is_none(),
        "no volume is defined without the API token"
    );
}

#[test]
fn template_defaults_env() {
    let documents = render_documents("ro", "operators", &[]);
    let container = operator_container(only(&documents, "Deployment"));

    let downward = [
        ("POD_NAME", "metadata.name"),
        ("POD_NAMESPACE", "metadata.namespace"),
        ("POD_IP", "status.podIP"),
        ("NODE_NAME", "spec.nodeName"),
    ];
    for (name, field) in downward {
        let entry = env_entry(container, name)
            .unwrap_or_else(|| panic!("the container has no env variable {name}"));
        assert_eq!(
            entry["valueFrom"]["fieldRef"]["fieldPath"], field,
            "{name} comes from the downward API field {field}"
        );
    }

    assert_eq!(
        env_value(container, "OMNINODE_DEPLOYMENT_ID"),
        "ro",
        "OMNINODE_DEPLOYMENT_ID defaults to the release name"
    );
    assert_eq!(
        env_value(container, "OMNINODE_DEPLOYMENT_EPOCH"),
        "1",
        "OMNINODE_DEPLOYMENT_EPOCH defaults to 1"
    );
    assert_eq!(env_value(container, "RUST_LOG"), "info", "RUST_LOG");
    for absent in [
        "OMNINODE_NETWORK_ID",
        "REGISTRY_OPERATOR_NAMESPACE",
        "REGISTRY_OPERATOR_API_TOKEN_FILE",
    ] {
        assert!(
            env_entry(container, absent).is_none(),
            "{absent} is not set with default values"
        );
    }
}

#[test]
fn template_defaults_security_context() {
    let documents = render_documents("ro", "operators", &[]);
    let deployment = only(&documents, "Deployment");
    let pod_context = &deployment["spec"]["template"]["spec"]["securityContext"];
    let container_context = &operator_container(deployment)["securityContext"];

    assert_eq!(pod_context["runAsNonRoot"], true, "pod runAsNonRoot");
    assert_eq!(pod_context["runAsUser"], 65532, "pod runAsUser");
    assert_eq!(pod_context["runAsGroup"], 65532, "pod runAsGroup");
    assert_eq!(
        pod_context["seccompProfile"],
        json!({"type": "RuntimeDefault"}),
        "pod seccompProfile"
    );

    assert_eq!(
        container_context["allowPrivilegeEscalation"], false,
        "allowPrivilegeEscalation"
    );
    assert_eq!(
        container_context["readOnlyRootFilesystem"], true,
        "readOnlyRootFilesystem"
    );
    assert_eq!(
        container_context["runAsNonRoot"], true,
        "container runAsNonRoot"
    );
    assert_eq!(container_context["runAsUser"], 65532, "container runAsUser");
    assert_eq!(
        container_context["capabilities"],
        json!({"drop": ["ALL"]}),
        "capabilities drop ALL and add nothing"
    );
    assert_eq!(
        container_context["seccompProfile"],
        json!({"type": "RuntimeDefault"}),
        "container seccompProfile"
    );
    assert!(
        container_context.get("privileged").is_none(),
        "privileged is not set"
    );
}

#[test]
fn template_defaults_metrics_service() {
    let documents = render_documents("ro", "operators", &[]);
    let service = only(&documents, "Service");
    let deployment = only(&documents, "Deployment");

    assert_eq!(service["metadata"]["name"], "ro-registry-operator", "name");
    assert_eq!(service["spec"]["type"], "ClusterIP", "type");
    assert_eq!(
        service["spec"]["ports"],
        json!([{"name": "http", "port": 8080, "targetPort": "http", "protocol": "TCP"}]),
        "ports"
    );
    assert_eq!(
        service["spec"]["selector"], deployment["spec"]["selector"]["matchLabels"],
        "the Service selects the operator pods"
    );
}

// ---------------------------------------------------------------------------------------
// helm template with non-default values
// ---------------------------------------------------------------------------------------

#[test]
fn template_green_values_deployment() {
    let green = values_file(&green_values("watched"));
    let path = green.path().to_str().expect("UTF-8 path");
    let documents = render_documents("ro-green", "operators", &["-f", path]);
    let deployment = only(&documents, "Deployment");
    let pod = &deployment["spec"]["template"]["spec"];
    let container = operator_container(deployment);

    assert_eq!(deployment["spec"]["replicas"], 2, "replicas");
    assert_eq!(
        pod["terminationGracePeriodSeconds"], 45,
        "terminationGracePeriodSeconds"
    );
    assert_eq!(
        deployment["spec"]["template"]["metadata"]["labels"]["omninode.io/colour"], "green",
        "pod labels"
    );
    assert_eq!(
        container["image"], "example.org/omninode/registry-operator:1.2.3",
        "image"
    );
    assert_eq!(container["imagePullPolicy"], "Always", "pull policy");
    assert_eq!(
        container["args"],
        json!(["run", "--http-addr", "0.0.0.0:8080", "--log-format", "json"]),
        "args do not depend on values"
    );
    assert_eq!(
        container["resources"],
        json!({"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}}),
        "resources"
    );

    assert_eq!(
        env_value(container, "OMNINODE_DEPLOYMENT_ID"),
        "prod-green-004",
        "OMNINODE_DEPLOYMENT_ID"
    );
    assert_eq!(
        env_value(container, "OMNINODE_DEPLOYMENT_EPOCH"),
        "20251113",
        "OMNINODE_DEPLOYMENT_EPOCH keeps every digit of a large epoch"
    );
    assert_eq!(
        env_value(container, "OMNINODE_NETWORK_ID"),
        "omninode-network-1",
        "OMNINODE_NETWORK_ID"
    );
    assert_eq!(
        env_value(container, "REGISTRY_OPERATOR_NAMESPACE"),
        "watched",
        "REGISTRY_OPERATOR_NAMESPACE"
    );
    assert_eq!(
        env_value(container, "RUST_LOG"),
        "info,registry_operator=debug",
        "RUST_LOG"
    );
    assert_eq!(
        env_value(container, "REGISTRY_OPERATOR_API_TOKEN_FILE"),
        API_TOKEN_FILE,
        "REGISTRY_OPERATOR_API_TOKEN_FILE"
    );
}

#[test]
fn template_green_values_api_token_mount() {
    let green = values_file(&green_values("watched"));
    let path = green.path().to_str().expect("UTF-8 path");
    let documents = render_documents("ro-green", "operators", &["-f", path]);
    let deployment = only(&documents, "Deployment");
    let container = operator_container(deployment);

    assert_eq!(
        deployment["spec"]["template"]["spec"]["volumes"],
        json!([{
            "name": "api-token",
            "secret": {
                "secretName": "registry-api-token",
                "defaultMode": 0o440,
                "items": [{"key": "bearer", "path": "token"}]
            }
        }]),
        "the token Secret key is the volume's only file"
    );
    assert_eq!(
        container["volumeMounts"],
        json!([{
            "name": "api-token",
            "mountPath": "/var/run/secrets/registry-operator/api-token",
            "readOnly": true
        }]),
        "the token volume is mounted read-only"
    );
    let token_dir = Path::new(API_TOKEN_FILE)
        .parent()
        .expect("token file has a parent");
    assert_eq!(
        container["volumeMounts"][0]["mountPath"],
        token_dir.to_str().expect("UTF-8"),
        "REGISTRY_OPERATOR_API_TOKEN_FILE points into the mounted directory"
    );
}

#[test]
fn template_green_values_objects() {
    let green = values_file(&green_values("watched"));
    let path = green.path().to_str().expect("UTF-8 path");
    let documents = render_documents("ro-green", "operators", &["-f", path]);
    let all_kinds = kinds(&documents);

    assert!(
        !all_kinds.contains("Service"),
        "metrics.service.enabled=false renders no Service"
    );
    assert!(
        !all_kinds.contains("ClusterRoleBinding"),
        "a watched namespace renders no ClusterRoleBinding"
    );

    let watch_binding = find(&documents, "RoleBinding", "ro-green-registry-operator");
    assert_eq!(
        watch_binding["metadata"]["namespace"], "watched",
        "the ClusterRole is bound in the watched namespace"
    );
    assert_eq!(
        watch_binding["roleRef"]["kind"], "ClusterRole",
        "the watched-namespace binding refers to the ClusterRole"
    );
    assert_eq!(
        watch_binding["subjects"][0]["namespace"], "operators",
        "the subject is the ServiceAccount in the release namespace"
    );

    let registry_node = only(&documents, "RegistryNode");
    assert_eq!(
        registry_node["apiVersion"], "omninode.io/v1alpha1",
        "RegistryNode apiVersion"
    );
    assert_eq!(
        registry_node["metadata"]["name"], "green-registry",
        "RegistryNode name"
    );
    assert_eq!(
        registry_node["metadata"]["namespace"], "operators",
        "the RegistryNode namespace defaults to the release namespace"
    );
    let values: Value = serde_yaml::from_str(&green_values("watched")).expect("values parse");
    assert_eq!(
        registry_node["spec"], values["registryNode"]["spec"],
        "the RegistryNode spec is the values object, rendered as written"
    );
}

#[test]
fn two_releases_have_distinct_names() {
    let blue = render_documents("ro-blue", "operators", &["--set", "deploymentId=prod-blue"]);
    let green = render_documents(
        "ro-green",
        "operators",
        &["--set", "deploymentId=prod-green"],
    );

    let names = |documents: &[Value]| -> BTreeSet<String> {
        documents
            .iter()
            .map(|document| {
                format!(
                    "{}/{}",
                    document["kind"].as_str().unwrap_or_default(),
                    document["metadata"]["name"].as_str().unwrap_or_default()
                )
            })
            .collect()
    };
    let shared: Vec<String> = names(&blue).intersection(&names(&green)).cloned().collect();
    assert!(
        shared.is_empty(),
        "a blue and a green release must not render objects with the same kind and name: {shared:?}"
    );

    let blue_container = operator_container(only(&blue, "Deployment"));
    let green_container = operator_container(only(&green, "Deployment"));
    assert_eq!(
        env_value(blue_container, "OMNINODE_DEPLOYMENT_ID"),
        "prod-blue",
        "blue deployment id"
    );
    assert_eq!(
        env_value(green_container, "OMNINODE_DEPLOYMENT_ID"),
        "prod-green",
        "green deployment id"
    );
}

// ---------------------------------------------------------------------------------------
// Values schema
// ---------------------------------------------------------------------------------------

#[test]
fn schema_rejects_bad_values() {
    // (case, helm arguments, text the error must contain)
    let cases: [(&str, &[&str], &str); 11] = [
        ("epoch as text", &["--set-string", "epoch=x"], "/epoch"),
        ("negative epoch", &["--set", "epoch=-1"], "/epoch"),
        (
            "unknown top-level key",
            &["--set", "replicas=2"],
            "'replicas'",
        ),
        (
            "unknown nested key",
            &["--set", "api.tokenSecret.keyName=x"],
            "'keyName'",
        ),
        (
            "pull policy outside the enum",
            &["--set", "image.pullPolicy=Sometimes"],
            "/image/pullPolicy",
        ),
        (
            "negative grace period",
            &["--set", "terminationGracePeriodSeconds=-1"],
            "/terminationGracePeriodSeconds",
        ),
        (
            "replica count as text",
            &["--set-string", "replicaCount=two"],
            "/replicaCount",
        ),
        (
            "service port out of range",
            &["--set", "metrics.service.port=70000"],
            "/metrics/service/port",
        ),
        (
            "watch namespace that is no DNS label",
            &["--set", "watchNamespace=Not_A_Namespace"],
            "/watchNamespace",
        ),
        (
            "example RegistryNode without kafka",
            &[
                "--set",
                "registryNode.enabled=true",
                "--set",
                "registryNode.spec.kafka=null",
            ],
            "kafka",
        ),
        (
            "existing ServiceAccount without a name",
            &["--set", "serviceAccount.create=false"],
            "serviceAccount.name is required",
        ),
    ];
    for (case, args, expected) in cases {
        let output = helm_template("ro", "operators", args);
        let stderr = text(&output.stderr);
        assert!(
            !output.status.success(),
            "{case}: helm template {} must fail",
            args.join(" ")
        );
        assert!(
            stderr.contains(expected),
            "{case}: the error must mention {expected:?}, got:\n{stderr}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Against the local API server
// ---------------------------------------------------------------------------------------

#[test]
fn default_manifests_pass_server_dry_run() {
    apply_chart_crd();
    let namespace = create_namespace("chart-dry-", &[]);
    let release = unique_name("ro-");

    let manifests = render(
        &release,
        &namespace,
        &["--set", "registryNode.enabled=true"],
    );
    let applied = server_dry_run("dry run of the default manifests", None, &manifests);

    for object in [
        "serviceaccount/",
        "clusterrole.rbac.authorization.k8s.io/",
        "clusterrolebinding.rbac.authorization.k8s.io/",
        "role.rbac.authorization.k8s.io/",
        "rolebinding.rbac.authorization.k8s.io/",
        "service/",
        "deployment.apps/",
        "registrynode.omninode.io/example",
    ] {
        assert!(
            applied.contains(object),
            "the dry run accepted no {object}; kubectl printed:\n{applied}"
        );
    }
}

#[test]
fn green_manifests_pass_server_dry_run() {
    apply_chart_crd();
    let namespace = create_namespace("chart-green-", &[]);
    let watched = create_namespace("chart-watched-", &[]);
    let release = unique_name("ro-");

    let green = values_file(&green_values(&watched));
    let path = green.path().to_str().expect("UTF-8 path");
    let manifests = render(&release, &namespace, &["-f", path]);
    let applied = server_dry_run("dry run of the green manifests", None, &manifests);

    assert!(
        applied.contains("registrynode.omninode.io/green-registry"),
        "the dry run accepted the green RegistryNode; kubectl printed:\n{applied}"
    );
    assert!(
        applied.contains("deployment.apps/"),
        "the dry run accepted the Deployment; kubectl printed:\n{applied}"
    );
}

#[test]
fn pod_passes_restricted_pod_security() {
    let namespace = create_namespace(
        "chart-restricted-",
        &[
            ("pod-security.kubernetes.io/enforce", "restricted"),
            ("pod-security.kubernetes.io/enforce-version", "latest"),
        ],
    );
    let green = values_file(&green_values("watched"));
    let path = green.path().to_str().expect("UTF-8 path");

    for (case, extra) in [
        ("default values", vec![]),
        ("green values", vec!["-f", path]),
    ] {
        let documents = render_documents("ro", &namespace, &extra);
        let deployment = only(&documents, "Deployment");
        let pod = json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "registry-operator-pod", "namespace": namespace},
            "spec": deployment["spec"]["template"]["spec"],
        });
        let output = kubectl(
            &["apply", "--server-side", "--dry-run=server", "-f", "-"],
            Some(&pod.to_string()),
        );
        assert!(
            output.status.success(),
            "{case}: the operator pod is rejected by the restricted Pod Security Standard:\n{}",
            text(&output.stderr)
        );
    }

    // The same namespace rejects a pod without a security context, so the check above
    // is not passing vacuously.
    let plain = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "plain-pod", "namespace": namespace},
        "spec": {"containers": [{"name": "main", "image": "registry-operator:dev"}]},
    });
    let output = kubectl(
        &["apply", "--server-side", "--dry-run=server", "-f", "-"],
        Some(&plain.to_string()),
    );
    assert!(
        !output.status.success(),
        "a pod without a security context must be rejected in a restricted namespace"
    );
    assert!(
        text(&output.stderr).contains("PodSecurity"),
        "the rejection comes from PodSecurity admission, got:\n{}",
        text(&output.stderr)
    );
}

/// RBAC objects of one release applied for real; deletes the cluster-scoped ones on drop.
struct AppliedRbac {
    release: String,
    namespace: String,
    service_account: String,
}

impl AppliedRbac {
    fn apply(prefix: &str, extra: &[&str]) -> AppliedRbac {
        apply_chart_crd();
        let namespace = create_namespace(prefix, &[]);
        let release = unique_name("ro-");
        let documents = render_documents(&release, &namespace, extra);
        // Built before applying, so that a failed apply still deletes what it created.
        let applied = AppliedRbac {
            service_account: format!("{release}-registry-operator"),
            release,
            namespace,
        };

        let rbac_kinds = [
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "Role",
            "RoleBinding",
        ];
        let manifests: Vec<Value> = documents
            .into_iter()
            .filter(|document| {
                let kind = document["kind"].as_str().unwrap_or_default();
                rbac_kinds.contains(&kind)
            })
            .collect();
        let list = json!({"apiVersion": "v1", "kind": "List", "items": manifests});
        kubectl_ok(
            "applying the RBAC objects",
            &[
                "apply",
                "--server-side",
                "--field-manager",
                "registry-operator-chart-tests",
                "-f",
                "-",
            ],
            Some(&list.to_string()),
        );
        applied
    }

    /// Returns whether the ServiceAccount may do `verb` on `resource` in `namespace`.
    fn can(&self, verb: &str, resource: &str, subresource: Option<&str>, namespace: &str) -> bool {
        let user = format!(
            "system:serviceaccount:{}:{}",
            self.namespace, self.service_account
        );
        let mut args = vec![
            "auth",
            "can-i",
            verb,
            resource,
            "-n",
            namespace,
            "--as",
            user.as_str(),
        ];
        let subresource_flag;
        if let Some(subresource) = subresource {
            subresource_flag = format!("--subresource={subresource}");
            args.push(&subresource_flag);
        }
        let output = kubectl(&args, None);
        let answer = text(&output.stdout).trim().to_owned();
        match answer.as_str() {
            "yes" => true,
            "no" => false,
            _ => panic!(
                "kubectl {} printed neither yes nor no:\nstdout: {answer}\nstderr: {}",
                args.join(" "),
                text(&output.stderr)
            ),
        }
    }
}

impl Drop for AppliedRbac {
    fn drop(&mut self) {
        let name = format!("{}-registry-operator", self.release);
        let _ = kubectl(
            &[
                "delete",
                "--ignore-not-found",
                "--wait=false",
                &format!("clusterrole/{name}"),
                &format!("clusterrolebinding/{name}"),
            ],
            None,
        );
    }
}

/// Access the operator needs: (verb, resource, subresource).
const NEEDED: [(&str, &str, Option<&str>); 22] = [
    ("get", "registrynodes.omninode.io", None),
    ("list", "registrynodes.omninode.io", None),
    ("watch", "registrynodes.omninode.io", None),
    ("patch", "registrynodes.omninode.io", None),
    ("update", "registrynodes.omninode.io", None),
    ("get", "registrynodes.omninode.io", Some("status")),
    ("patch", "registrynodes.omninode.io", Some("status")),
    ("update", "registrynodes.omninode.io", Some("status")),
    ("update", "registrynodes.omninode.io", Some("finalizers")),
    ("get", "secrets", None),
    ("list", "secrets", None),
    ("watch", "secrets", None),
    ("create", "events.events.k8s.io", None),
    ("patch", "events.events.k8s.io", None),
    ("create", "events", None),
    ("patch", "events", None),
    ("get", "leases.coordination.k8s.io", None),
    ("list", "leases.coordination.k8s.io", None),
    ("watch", "leases.coordination.k8s.io", None),
    ("create", "leases.coordination.k8s.io", None),
    ("update", "leases.coordination.k8s.io", None),
    ("patch", "leases.coordination.k8s.io", None),
];

/// Access the operator must not have: (verb, resource, subresource).
const FORBIDDEN: [(&str, &str, Option<&str>); 22] = [
    ("delete", "secrets", None),
    ("create", "secrets", None),
    ("update", "secrets", None),
    ("patch", "secrets", None),
    ("create", "pods", None),
    ("list", "pods", None),
    ("create", "pods", Some("exec")),
    ("list", "configmaps", None),
    ("delete", "registrynodes.omninode.io", None),
    ("create", "registrynodes.omninode.io", None),
    ("deletecollection", "registrynodes.omninode.io", None),
    ("get", "registrynodes.omninode.io", Some("finalizers")),
    ("update", "deployments.apps", None),
    ("get", "nodes", None),
    ("list", "namespaces", None),
    ("list", "events", None),
    ("delete", "events.events.k8s.io", None),
    ("delete", "leases.coordination.k8s.io", None),
    ("create", "clusterroles.rbac.authorization.k8s.io", None),
    ("bind", "clusterroles.rbac.authorization.k8s.io", None),
    ("impersonate", "serviceaccounts", None),
    ("create", "serviceaccounts", Some("token")),
];

#[test]
fn rbac_grants_needed_access() {
    let rbac = AppliedRbac::apply("chart-rbac-", &[]);
    let other_namespace = unique_name("elsewhere-");

    for (verb, resource, subresource) in NEEDED {
        for namespace in [&rbac.namespace, &other_namespace] {
            assert!(
                rbac.can(verb, resource, subresource, namespace),
                "the operator must be allowed to {verb} {resource} {} in namespace {namespace}",
                subresource.unwrap_or("")
            );
        }
    }
}

#[test]
fn rbac_denies_other_access() {
    let rbac = AppliedRbac::apply("chart-deny-", &[]);

    for (verb, resource, subresource) in FORBIDDEN {
        assert!(
            !rbac.can(verb, resource, subresource, &rbac.namespace),
            "the operator must not be allowed to {verb} {resource} {}",
            subresource.unwrap_or("")
        );
    }
    assert!(
        !rbac.can("*", "*", None, &rbac.namespace),
        "the operator must not be allowed everything"
    );
}

#[test]
fn rbac_watch_namespace_limits_access() {
    apply_chart_crd();
    let watched = create_namespace("chart-watch-", &[]);
    let rbac = AppliedRbac::apply(
        "chart-scoped-",
        &["--set", &format!("watchNamespace={watched}")],
    );
    let other_namespace = unique_name("elsewhere-");

    for (verb, resource, subresource) in NEEDED {
        assert!(
            rbac.can(verb, resource, subresource, &watched),
            "the operator must be allowed to {verb} {resource} {} in the watched namespace",
            subresource.unwrap_or("")
        );
        assert!(
            !rbac.can(verb, resource, subresource, &other_namespace),
            "the operator must not be allowed to {verb} {resource} {} outside the watched namespace",
            subresource.unwrap_or("")
        );
    }
}

// ---------------------------------------------------------------------------------------
// deploy/kind
// ---------------------------------------------------------------------------------------

#[test]
fn kind_manifests_pass_server_dry_run() {
    apply_chart_crd();
    let namespace = create_namespace("kind-deps-", &[]);
    let directory = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kind");

    let cases = [
        (
            "kafka.yaml",
            &["service/kafka", "deployment.apps/kafka"][..],
        ),
        (
            "consul.yaml",
            &["service/consul", "deployment.apps/consul"][..],
        ),
        (
            "postgres.yaml",
            &[
                "secret/postgres-credentials",
                "service/postgres",
                "statefulset.apps/postgres",
            ][..],
        ),
        (
            "registry-postgres-url.yaml",
            &["secret/registry-postgres"][..],
        ),
        ("registrynode.yaml", &["registrynode.omninode.io/kind"][..]),
    ];
    for (file, objects) in cases {
        let manifests = std::fs::read_to_string(directory.join(file))
            .unwrap_or_else(|error| panic!("reading deploy/kind/{file} failed: {error}"));
        for document in parse_documents(&manifests) {
            assert!(
                document["metadata"].get("namespace").is_none(),
                "deploy/kind/{file}: objects take the namespace from kubectl -n"
            );
        }
        let applied = server_dry_run(
            &format!("dry run of deploy/kind/{file}"),
            Some(&namespace),
            &manifests,
        );
        for object in objects {
            assert!(
                applied.contains(object),
                "deploy/kind/{file}: the dry run accepted no {object}; kubectl printed:\n{applied}"
            );
        }
    }
}

#[test]
fn kind_values_pass_server_dry_run() {
    apply_chart_crd();
    let namespace = create_namespace("kind-chart-", &[]);
    let values = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/kind/values-kind.yaml");

    let documents = render_documents("registry-operator", &namespace, &["-f", values]);
    let container = operator_container(only(&documents, "Deployment"));
    assert_eq!(container["image"], "registry-operator:dev", "kind image");
    assert_eq!(
        container["imagePullPolicy"], "Never",
        "the image loaded with kind load is never pulled"
    );
    assert_eq!(
        env_value(container, "OMNINODE_DEPLOYMENT_ID"),
        "kind-blue",
        "kind deployment id"
    );

    let manifests = render("registry-operator", &namespace, &["-f", values]);
    server_dry_run(
        "dry run of the chart with deploy/kind/values-kind.yaml",
        None,
        &manifests,
    );
}
