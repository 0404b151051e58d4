//! The committed CRD must be exactly what `registry-operator crd` prints.

#[test]
fn committed_crd_matches_generated() {
    let committed = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/crds/registrynodes.omninode.io.yaml"
    ))
    .expect("crds/registrynodes.omninode.io.yaml is missing");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_registry-operator"))
        .arg("crd")
        .output()
        .expect("running registry-operator crd failed");
    assert!(
        output.status.success(),
        "registry-operator crd exited with {}",
        output.status
    );
    let generated = String::from_utf8(output.stdout).expect("CRD output is not UTF-8");
    assert!(
        committed == generated,
        "crds/registrynodes.omninode.io.yaml is stale: regenerate it with \
         `cargo run -- crd > crds/registrynodes.omninode.io.yaml`"
    );
}
