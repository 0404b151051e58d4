//! Processes of the release binary under measurement, and their CPU time and resident
//! memory read from `/proc`.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use registry_operator::consul::ServiceContext;
use registry_operator::wire::Topics;

use crate::events::Fleet;
use crate::stack::{Stack, registry_topics, unique_name, wait_for};

/// The `registry-operator` binary that `cargo bench` built with the bench profile, which
/// inherits the release profile.
pub const BINARY: &str = env!("CARGO_BIN_EXE_registry-operator");

/// Pod name the benchmark gives the processes it starts.
pub const POD_NAME: &str = "bench";

/// CPU time and resident memory of a process at one instant.
#[derive(Debug, Clone, Copy)]
pub struct ProcSample {
    /// User plus system CPU time of all threads since the process started.
    pub cpu_seconds: f64,
    /// `VmRSS`.
    pub rss_bytes: u64,
    /// `VmHWM`: the largest resident set since the process started.
    pub peak_rss_bytes: u64,
}

/// Clock ticks per second of the `utime` and `stime` fields of `/proc/<pid>/stat`.
fn clock_ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|output| String::from_utf8(output.stdout).ok())
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(100.0)
}

/// Reads the CPU time of a process from `/proc/<pid>/stat` and its memory from
/// `/proc/<pid>/status`.
pub fn sample(pid: u32) -> anyhow::Result<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat failed"))?;
    // The command name is in parentheses and may contain spaces, so fields are counted
    // from the last closing parenthesis: state is field 3, utime 14 and stime 15.
    let after_name = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .with_context(|| format!("unexpected /proc/{pid}/stat: {stat}"))?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |index: usize| -> anyhow::Result<f64> {
        fields
            .get(index)
            .and_then(|field| field.parse::<f64>().ok())
            .with_context(|| format!("unexpected /proc/{pid}/stat: {stat}"))
    };
    let cpu_seconds = (ticks(11)? + ticks(12)?) / clock_ticks_per_second();

    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status failed"))?;
    let kilobytes = |name: &str| -> anyhow::Result<u64> {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .with_context(|| format!("{name} missing from /proc/{pid}/status"))
    };
    Ok(ProcSample {
        cpu_seconds,
        rss_bytes: kilobytes("VmRSS:")? * 1024,
        peak_rss_bytes: kilobytes("VmHWM:")? * 1024,
    })
}

/// Returns a TCP port on 127.0.0.1 that nothing listens on right now.
pub fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .context("binding a free port on 127.0.0.1 failed")?;
    Ok(listener.local_addr()?.port())
}

/// A child process, killed when dropped, with its output in a log file.
pub struct Child {
    /// Behind a mutex so that checks can run from the `Fn` closures of polling loops.
    child: Mutex<Option<std::process::Child>>,
    pub name: String,
    pub log_path: PathBuf,
    pub started: Instant,
}

impl Child {
    /// Starts `command` with standard output and error appended to a log file named
    /// after `name` in the temporary directory.
    pub fn spawn(mut command: Command, name: &str) -> anyhow::Result<Self> {
        let log_path = std::env::temp_dir().join(format!("registry-operator-bench-{name}.log"));
        let log = std::fs::File::create(&log_path)
            .with_context(|| format!("creating {} failed", log_path.display()))?;
        command
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log));
        let started = Instant::now();
        let child = command
            .spawn()
            .with_context(|| format!("starting {BINARY} failed; build it with hack/bench.sh"))?;
        Ok(Self {
            child: Mutex::new(Some(child)),
            name: name.to_owned(),
            log_path,
            started,
        })
    }

    pub fn pid(&self) -> u32 {
        self.lock().as_ref().map_or(0, std::process::Child::id)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<std::process::Child>> {
        self.child
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Fails with the end of the log when the process has exited.
    pub fn check_running(&self) -> anyhow::Result<()> {
        let mut guard = self.lock();
        let Some(child) = guard.as_mut() else {
            bail!("{} is not running", self.name);
        };
        if let Some(status) = child.try_wait()? {
            bail!(
                "{} exited with {status}; log: {}\n{}",
                self.name,
                self.log_path.display(),
                self.log_tail()
            );
        }
        Ok(())
    }

    /// Returns the last 20 lines of the log.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Sends SIGTERM and waits up to `timeout` for the process to exit, then kills it.
    pub fn terminate(&self, timeout: Duration) -> anyhow::Result<()> {
        let Some(mut child) = self.lock().take() else {
            return Ok(());
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if child.try_wait()?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        bail!(
            "{} did not exit within {timeout:?} of SIGTERM and was killed; log: {}",
            self.name,
            self.log_path.display()
        )
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if let Some(mut child) = self.lock().take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `registry-operator standalone` with its own registry id, topic prefix and schema,
/// which the stack removes at its next cleanup.
pub struct StandaloneRegistry {
    pub registry_id: String,
    pub environment: String,
    pub schema: String,
    pub process: Child,
}

impl StandaloneRegistry {
    /// Starts the registry with default settings plus `extra_args`, logging at `info`.
    pub fn start(stack: &Stack, extra_args: &[&str]) -> anyhow::Result<Self> {
        let name = unique_name("");
        let registry_id = format!("bench-{name}");
        let environment = format!("bench{name}");
        let schema = format!("bench_{name}");
        let http_port = free_port()?;

        stack.created_schema(&schema);
        stack.created_topics(registry_topics(&environment));
        stack.created_consumer_group(&format!("registry-operator.{registry_id}"));
        stack.created_consul_node(&ServiceContext::default_synthetic_node(&registry_id));

        let mut command = Command::new(BINARY);
        command
            .args(["standalone", "--registry-id", &registry_id])
            .args(["--environment", &environment, "--schema", &schema])
            .args(["--http-addr", &format!("127.0.0.1:{http_port}")])
            .args(["--kafka-brokers", &stack.kafka_brokers])
            .args(["--consul-address", &stack.consul_address])
            .args(["--database-url", &stack.database_url])
            .args(["--log-format", "json"])
            .args(extra_args)
            .env("POD_NAME", POD_NAME)
            .env("RUST_LOG", "info");
        let process = Child::spawn(command, &registry_id)?;
        Ok(Self {
            registry_id,
            environment,
            schema,
            process,
        })
    }

    pub fn topics(&self) -> Topics {
        Topics::for_environment(&self.environment)
    }

    pub fn self_node_id(&self) -> String {
        format!("{}-{POD_NAME}", self.registry_id)
    }

    pub fn synthetic_node(&self) -> String {
        ServiceContext::default_synthetic_node(&self.registry_id)
    }

    pub fn consumer_group(&self) -> String {
        format!("registry-operator.{}", self.registry_id)
    }

    /// Produces the introspection of one node outside any measured fleet and waits
    /// until it is registered in both backends. Afterwards the registry's consumer has
    /// joined its group and found every topic, so measured events do not wait for its
    /// start-up, including the consumer's 5 s metadata refresh when a topic is created
    /// while it subscribes.
    pub async fn wait_until_consuming(&self, stack: &Stack) -> anyhow::Result<()> {
        let fleet = Fleet::new();
        let producer = stack.producer()?;
        let message = [fleet.introspection_message(0)?];
        stack
            .produce(&producer, &self.topics().introspection, &message)
            .await?;
        let node = self.synthetic_node();
        wait_for(
            "the warm-up node in both backends",
            Duration::from_secs(60),
            Duration::from_millis(50),
            || async {
                self.process.check_running()?;
                let rows = stack.count_rows(&self.schema, &fleet.prefix).await;
                let services = stack.count_consul_services(&node, &fleet.prefix).await?;
                Ok((rows == Some(1) && services == 1).then_some(()))
            },
        )
        .await
    }
}
