//! End-to-end tests of the user commands `nodes list`, `nodes get` and `emit`,
//! run as a user would against a `registry-operator standalone` on the real stack.

mod support;

use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;
use support::eventually;
use support::registry::Registry;

const WAIT: Duration = Duration::from_secs(60);

/// Returns the command as a user runs it: without backtraces, so that standard error
/// contains only the error message.
fn user_command() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_registry-operator"));
    command
        .env("RUST_BACKTRACE", "0")
        .env("RUST_LIB_BACKTRACE", "0");
    command
}

/// Runs `registry-operator nodes <args> --server <registry>`.
fn nodes(registry: &Registry, args: &[&str]) -> Output {
    nodes_at(&registry.base_url(), args)
}

fn nodes_at(server: &str, args: &[&str]) -> Output {
    user_command()
        .arg("nodes")
        .args(args)
        .args(["--server", server])
        .output()
        .expect("starting registry-operator nodes failed")
}

fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "command failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test]
async fn nodes_list_and_get() {
    let mut registry = Registry::new(&[]);
    registry.start();
    registry.wait_until_serving().await;
    let registry_id = registry.registry_id.clone();

    // emit prints where the broker stored the event.
    let published = registry.emit(
        "introspection",
        &[
            "--node-id",
            "cli-effect-1",
            "--node-type",
            "effect",
            "--deployment-id",
            "blue-7",
            "--epoch",
            "7",
            "--endpoint",
            "health=http://10.1.2.3:8080/health",
            "--endpoint",
            "api=http://10.1.2.3:8081",
        ],
    );
    let line = published.trim_end();
    let prefix = "published node_introspection event ";
    assert!(line.starts_with(prefix), "{line}");
    let topic = registry.topic("node-introspection");
    let (_, placement) = line[prefix.len()..]
        .split_once(&format!(
            " of node cli-effect-1 to topic {topic} partition "
        ))
        .unwrap_or_else(|| panic!("no topic in {line:?}"));
    let (partition, offset) = placement
        .split_once(" offset ")
        .unwrap_or_else(|| panic!("no offset in {line:?}"));
    assert!(partition.parse::<i32>().is_ok(), "{line}");
    assert!(offset.parse::<i64>().is_ok(), "{line}");
    assert_eq!(published.lines().count(), 1, "{published}");

    registry.emit(
        "introspection",
        &[
            "--node-id",
            "cli-orchestrator-22",
            "--node-type",
            "orchestrator",
            "--deployment-id",
            "green",
            "--epoch",
            "12",
        ],
    );
    // The emitted node appears through `nodes get`.
    let node: Value = eventually("cli-effect-1 through nodes get", WAIT, || async {
        let output = nodes(&registry, &["get", "cli-effect-1"]);
        output
            .status
            .success()
            .then(|| serde_json::from_slice(&output.stdout).expect("JSON output"))
    })
    .await;
    assert_eq!(node["node_id"], "cli-effect-1");
    assert_eq!(node["node_type"], "effect");
    assert_eq!(node["deployment_id"], "blue-7");
    assert_eq!(node["epoch"], 7);
    assert_eq!(node["registry"], registry_id.as_str());
    assert_eq!(node["endpoints"]["api"], "http://10.1.2.3:8081");
    assert_eq!(node["endpoints"]["health"], "http://10.1.2.3:8080/health");

    let table = stdout(&nodes(&registry, &["get", "cli-effect-1", "-o", "table"]));
    assert_eq!(
        table.lines().collect::<Vec<_>>(),
        [
            "NODE_ID        TYPE     HEALTH    DEPLOYMENT   EPOCH   REGISTRY".to_owned(),
            format!("cli-effect-1   effect   healthy   blue-7       7       {registry_id}"),
        ]
    );

    // Heartbeats of unknown nodes are ignored, so this one follows the registration.
    eventually("cli-orchestrator-22 through nodes get", WAIT, || async {
        let output = nodes(&registry, &["get", "cli-orchestrator-22"]);
        output.status.success().then_some(())
    })
    .await;
    registry.emit(
        "heartbeat",
        &[
            "--node-id",
            "cli-orchestrator-22",
            "--node-type",
            "orchestrator",
            "--health",
            "degraded",
        ],
    );

    // Filtered lists, as tables, once the heartbeat is applied.
    eventually("the degraded heartbeat applied", WAIT, || async {
        let output = nodes(&registry, &["list", "--health", "degraded"]);
        stdout(&output)
            .contains("cli-orchestrator-22")
            .then_some(())
    })
    .await;
    let table = stdout(&nodes(&registry, &["list", "--type", "orchestrator"]));
    assert_eq!(
        table.lines().collect::<Vec<_>>(),
        [
            "NODE_ID               TYPE           HEALTH     DEPLOYMENT   EPOCH   REGISTRY"
                .to_owned(),
            format!(
                "cli-orchestrator-22   orchestrator   degraded   green        12      {registry_id}"
            ),
        ]
    );

    // The whole list contains both nodes and the registry itself, sorted by node id.
    let self_id = registry.self_node_id();
    let table = stdout(&nodes(&registry, &["list", "--registry", &registry_id]));
    let listed: Vec<&str> = table
        .lines()
        .skip(1)
        .map(|line| line.split_whitespace().next().expect("a node id"))
        .collect();
    let mut expected = vec!["cli-effect-1", "cli-orchestrator-22", self_id.as_str()];
    expected.sort();
    assert_eq!(listed, expected);
    let self_row = table
        .lines()
        .find(|line| line.starts_with(&self_id))
        .expect("the registry's own row");
    assert_eq!(
        self_row.split_whitespace().collect::<Vec<_>>(),
        [
            self_id.as_str(),
            "registry",
            "healthy",
            "<none>",
            "<none>",
            registry_id.as_str()
        ]
    );

    // --limit cuts the list and prints a note that more nodes match.
    let output = nodes(&registry, &["list", "--limit", "1"]);
    let table = stdout(&output);
    assert_eq!(table.lines().count(), 2, "{table}");
    assert!(
        table
            .lines()
            .nth(1)
            .unwrap_or_default()
            .starts_with(expected[0])
    );
    assert_eq!(
        stderr(&output).trim_end(),
        "More nodes match: raise --limit to list them."
    );

    // JSON output is an array of the API's items.
    let json = stdout(&nodes(
        &registry,
        &["list", "--type", "effect", "-o", "json"],
    ));
    let items: Value = serde_json::from_str(&json).expect("JSON output");
    let ids: Vec<&str> = items
        .as_array()
        .expect("an array")
        .iter()
        .map(|item| item["node_id"].as_str().expect("node_id"))
        .collect();
    assert_eq!(ids, ["cli-effect-1"]);

    // An empty result is reported on standard error.
    let output = nodes(&registry, &["list", "--type", "reducer"]);
    assert_eq!(stdout(&output), "");
    assert_eq!(stderr(&output).trim_end(), "No nodes found.");

    // A shutdown introspection removes the node.
    registry.emit(
        "introspection",
        &[
            "--node-id",
            "cli-effect-1",
            "--node-type",
            "effect",
            "--shutdown",
        ],
    );
    eventually("cli-effect-1 gone", WAIT, || async {
        let output = nodes(&registry, &["get", "cli-effect-1"]);
        (!output.status.success()).then_some(())
    })
    .await;
}

#[tokio::test]
async fn nodes_errors_are_clear() {
    let mut registry = Registry::new(&["--no-self-registration"]);
    registry.start();
    registry.wait_until_serving().await;

    let output = nodes(&registry, &["get", "no-such-node"]);
    assert!(!output.status.success());
    assert_eq!(
        stderr(&output).trim_end(),
        "Error: node no-such-node not found"
    );
    assert_eq!(String::from_utf8_lossy(&output.stdout), "");

    // A port that nothing listens on: bind, read the port, close.
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free port");
    let server = format!("http://127.0.0.1:{closed_port}");
    let output = nodes_at(&server, &["list"]);
    assert!(!output.status.success());
    let message = stderr(&output);
    assert!(
        message.starts_with(&format!(
            "Error: cannot reach the registry API at {server}/"
        )),
        "{message}"
    );
    assert!(message.contains("REGISTRY_OPERATOR_SERVER"), "{message}");

    let output = nodes_at("not a url", &["list"]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).starts_with("Error: invalid server URL \"not a url\""),
        "{}",
        stderr(&output)
    );

    let output = nodes(&registry, &["list", "--health", "sleepy"]);
    assert!(!output.status.success());
    assert!(stderr(&output).contains("sleepy"), "{}", stderr(&output));

    // emit refuses an event that registries would dead-letter.
    let output = user_command()
        .args([
            "emit",
            "introspection",
            "--node-id",
            "bad id",
            "--node-type",
            "effect",
        ])
        .args(["--brokers", "127.0.0.1:9"])
        .output()
        .expect("starting registry-operator emit failed");
    assert!(!output.status.success());
    let message = stderr(&output);
    assert!(
        message.starts_with(
            "Error: not publishing: registries would reject this node_introspection event of node bad id"
        ),
        "{message}"
    );

    let output = user_command()
        .args([
            "emit",
            "introspection",
            "--node-id",
            "n1",
            "--node-type",
            "effect",
        ])
        .args(["--endpoint", "health"])
        .output()
        .expect("starting registry-operator emit failed");
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("expected NAME=URL"),
        "{}",
        stderr(&output)
    );
}
