//! Helpers shared by the integration tests, which run against the local real stack
//! started by `hack/stack.sh up`.
#![allow(dead_code)]

pub mod operator;
pub mod registry;

use std::time::Duration;

/// Reads a variable of the stack's env file, failing with the way to set it.
pub fn stack_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: run the tests with hack/test.sh, or start the stack with \
             hack/stack.sh up and then eval \"$(hack/stack.sh env)\""
        )
    })
}

/// Returns a name unique to this test run, usable as a Kubernetes name, topic part and schema.
pub fn unique_name(prefix: &str) -> String {
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}{}", &suffix[..10])
}

/// Polls `check` every 100 ms until it returns `Some`, failing after `timeout` with `what`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
