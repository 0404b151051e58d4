//! `kind-config.yaml` must decode as kind's `kind.x-k8s.io/v1alpha4` `Cluster`. kind
//! decodes its config strictly, so an unknown field fails `kind create cluster`. The structs mirror the
//! fields of `pkg/apis/config/v1alpha4/types.go` in kubernetes-sigs/kind. The sample event
//! of the kind walkthrough must pass the operator's wire reader.

// The structs mirror kind's schema so that decoding rejects unknown fields, and the tests
// read only some of the decoded fields.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;

use registry_operator::wire::{Event, ReadLimits, read_event};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Cluster {
    kind: String,
    api_version: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    nodes: Vec<Node>,
    #[serde(default)]
    networking: Option<Networking>,
    #[serde(default)]
    feature_gates: BTreeMap<String, bool>,
    #[serde(default)]
    runtime_config: BTreeMap<String, String>,
    #[serde(default)]
    kubeadm_config_patches: Vec<String>,
    #[serde(default, rename = "kubeadmConfigPatchesJSON6902")]
    kubeadm_config_patches_json6902: Vec<PatchJson6902>,
    #[serde(default)]
    containerd_config_patches: Vec<String>,
    #[serde(default, rename = "containerdConfigPatchesJSON6902")]
    containerd_config_patches_json6902: Vec<String>,
}

#[derive(Debug, Deserialize, PartialEq, Eq)]
enum NodeRole {
    #[serde(rename = "control-plane")]
    ControlPlane,
    #[serde(rename = "worker")]
    Worker,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Node {
    /// kind's default when unset is `control-plane`.
    #[serde(default)]
    role: Option<NodeRole>,
    #[serde(default)]
    image: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    extra_mounts: Vec<Mount>,
    #[serde(default)]
    extra_port_mappings: Vec<PortMapping>,
    /// GPUs passed to the node container (`all`), a field of kind's current types.go.
    #[serde(default)]
    gpus: Option<String>,
    #[serde(default)]
    kubeadm_config_patches: Vec<String>,
    #[serde(default, rename = "kubeadmConfigPatchesJSON6902")]
    kubeadm_config_patches_json6902: Vec<PatchJson6902>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Networking {
    #[serde(default)]
    ip_family: Option<IpFamily>,
    #[serde(default)]
    api_server_port: Option<i32>,
    #[serde(default)]
    api_server_address: Option<String>,
    #[serde(default)]
    pod_subnet: Option<String>,
    #[serde(default)]
    service_subnet: Option<String>,
    #[serde(default, rename = "disableDefaultCNI")]
    disable_default_cni: Option<bool>,
    #[serde(default)]
    kube_proxy_mode: Option<KubeProxyMode>,
    #[serde(default, rename = "dnsSearch")]
    dns_search: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "lowercase")]
enum IpFamily {
    Ipv4,
    Ipv6,
    Dual,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "lowercase")]
enum KubeProxyMode {
    Iptables,
    Ipvs,
    Nftables,
    None,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Mount {
    #[serde(default)]
    container_path: Option<String>,
    #[serde(default)]
    host_path: Option<String>,
    #[serde(default)]
    read_only: Option<bool>,
    #[serde(default)]
    selinux_relabel: Option<bool>,
    #[serde(default)]
    propagation: Option<MountPropagation>,
}

#[derive(Debug, Deserialize)]
enum MountPropagation {
    None,
    HostToContainer,
    Bidirectional,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PortMapping {
    #[serde(default)]
    container_port: Option<i32>,
    #[serde(default)]
    host_port: Option<i32>,
    #[serde(default)]
    listen_address: Option<String>,
    #[serde(default)]
    protocol: Option<PortProtocol>,
}

#[derive(Debug, Deserialize)]
enum PortProtocol {
    #[serde(rename = "TCP")]
    Tcp,
    #[serde(rename = "UDP")]
    Udp,
    #[serde(rename = "SCTP")]
    Sctp,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PatchJson6902 {
    #[serde(default)]
    group: String,
    #[serde(default)]
    version: String,
    kind: String,
    patch: String,
}

fn repo_file(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&full)
        .unwrap_or_else(|error| panic!("reading {} failed: {error}", full.display()))
}

fn parse_cluster(text: &str) -> Result<Cluster, serde_yaml::Error> {
    serde_yaml::from_str(text)
}

#[test]
fn kind_config_parses_strictly() {
    let cluster = parse_cluster(&repo_file("kind-config.yaml"))
        .unwrap_or_else(|error| panic!("kind-config.yaml is not a valid kind Cluster: {error}"));

    assert_eq!(cluster.kind, "Cluster", "kind must be Cluster");
    assert_eq!(
        cluster.api_version, "kind.x-k8s.io/v1alpha4",
        "apiVersion must be kind.x-k8s.io/v1alpha4"
    );
    assert_eq!(
        cluster.name.as_deref(),
        Some("registry-operator"),
        "docs/kind.md uses the cluster name registry-operator"
    );
}

#[test]
fn kind_config_has_one_control_plane() {
    let cluster = parse_cluster(&repo_file("kind-config.yaml")).expect("kind-config.yaml parses");

    assert_eq!(cluster.nodes.len(), 1, "expected exactly one node");
    let role = cluster.nodes[0]
        .role
        .as_ref()
        .unwrap_or(&NodeRole::ControlPlane);
    assert_eq!(
        *role,
        NodeRole::ControlPlane,
        "the only node must be a control-plane node"
    );
}

#[test]
fn kind_config_accepts_every_known_field() {
    let full = r#"
kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
name: every-field
featureGates: {SomeGate: true}
runtimeConfig: {"api/alpha": "false"}
kubeadmConfigPatches: ["kind: ClusterConfiguration"]
kubeadmConfigPatchesJSON6902:
  - {group: kubeadm.k8s.io, version: v1beta3, kind: ClusterConfiguration, patch: "[]"}
containerdConfigPatches: ["[plugins]"]
containerdConfigPatchesJSON6902: ["[]"]
networking:
  ipFamily: dual
  apiServerPort: 6443
  apiServerAddress: 127.0.0.1
  podSubnet: 10.244.0.0/16
  serviceSubnet: 10.96.0.0/12
  disableDefaultCNI: false
  kubeProxyMode: ipvs
  dnsSearch: [example.internal]
nodes:
  - role: control-plane
    image: kindest/node:v1.33.1
    labels: {tier: control}
    extraMounts:
      - {hostPath: /tmp/a, containerPath: /a, readOnly: true, selinuxRelabel: false, propagation: HostToContainer}
    extraPortMappings:
      - {containerPort: 30080, hostPort: 8080, listenAddress: 127.0.0.1, protocol: TCP}
    kubeadmConfigPatches: ["kind: InitConfiguration"]
    kubeadmConfigPatchesJSON6902:
      - {kind: InitConfiguration, patch: "[]"}
  - role: worker
"#;
    let cluster = parse_cluster(full).unwrap_or_else(|error| {
        panic!("a config that uses every kind v1alpha4 field was rejected: {error}")
    });
    assert_eq!(cluster.nodes.len(), 2, "both nodes are read");
    assert_eq!(
        cluster.nodes[1].role,
        Some(NodeRole::Worker),
        "second node is a worker"
    );
}

#[test]
fn kind_config_rejects_unknown_fields() {
    let cases = [
        (
            "top-level field",
            "kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nworkers: 2\n",
            "workers",
        ),
        (
            "node field",
            "kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nnodes:\n  - role: control-plane\n    taints: []\n",
            "taints",
        ),
        (
            "networking field",
            "kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nnetworking:\n  apiServerHost: 127.0.0.1\n",
            "apiServerHost",
        ),
        (
            "port mapping field",
            "kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nnodes:\n  - extraPortMappings:\n      - {containerPort: 80, nodePort: 30080}\n",
            "nodePort",
        ),
    ];
    for (case, text, field) in cases {
        match parse_cluster(text) {
            Ok(cluster) => panic!("{case}: `{field}` was accepted: {cluster:?}"),
            Err(error) => assert!(
                error.to_string().contains(field),
                "{case}: the error must name `{field}`, got: {error}"
            ),
        }
    }
}

#[test]
fn kind_config_rejects_unknown_role() {
    let text = "kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nnodes:\n  - role: master\n";
    let result = parse_cluster(text);
    assert!(
        result.is_err(),
        "role `master` must be rejected: only control-plane and worker exist"
    );
}

#[test]
fn kind_sample_event_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kind/sample-introspection.json");
    let bytes = std::fs::read(&path)
        .unwrap_or_else(|error| panic!("reading {} failed: {error}", path.display()));

    let event = read_event(&bytes, &ReadLimits::default())
        .unwrap_or_else(|error| panic!("{} is rejected: {error}", path.display()));

    let Event::Introspection(envelope) = event else {
        panic!("{} must be a node introspection", path.display());
    };
    assert_eq!(
        envelope.payload.node_id, "kind-demo-orchestrator",
        "docs/kind.md looks this node id up in PostgreSQL and Consul"
    );
}

#[test]
fn kind_sample_event_fits_one_line() {
    // docs/kind.md publishes the sample with kafka-console-producer, one message per
    // line, as `<key>|<value>` after replacing the timestamps with the current time.
    let text = repo_file("deploy/kind/sample-introspection.json");
    assert!(
        !text.contains('|'),
        "the sample must not contain `|`, the key separator of the published line"
    );
    assert_eq!(
        text.matches("2026-01-01T00:00:00+00:00").count(),
        2,
        "docs/kind.md replaces event_timestamp and payload.timestamp, both 2026-01-01T00:00:00+00:00"
    );
}
