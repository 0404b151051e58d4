//! Benchmarks of the registry against the local stack started by `hack/stack.sh up`.
//!
//! It measures the raw capacity of Kafka, PostgreSQL and Consul on this machine and the
//! registry's end-to-end ingest rate, with its ratio to the slowest backend. It also
//! measures self-registration and RegistryNode readiness latency, and the steady-state
//! CPU and memory of a registry whose nodes heartbeat every 30 seconds.
//!
//! Run it with `hack/bench.sh [--quick]`, which builds the release binary and starts
//! the stack when needed. Every measurement uses its own registry id, topic prefix,
//! schema and Consul node, and removes them when it ends. Results are printed as
//! Markdown tables and never asserted: the exit status is non-zero only when a
//! measurement could not be taken.

mod events;
mod ingest;
mod process;
mod raw;
mod report;
mod stack;
mod startup;
mod steady;

use std::future::Future;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use report::{Figure, Summary, Target, figures_table};
use stack::Stack;
use steady::{Schedule, SteadyRun};

/// Sizes and repetitions of one benchmark invocation.
struct Plan {
    name: &'static str,
    /// Repetitions of each measurement except the steady state, which repeats its
    /// measurement window instead.
    runs: usize,
    kafka_messages: usize,
    postgres_rows: usize,
    /// Rows per upsert statement: the registry consumer's maximum batch of 1000 messages.
    postgres_batch: usize,
    consul_services: usize,
    ingest_events: usize,
    steady_nodes: Vec<usize>,
    steady_schedule: Schedule,
}

impl Plan {
    fn full() -> Self {
        Self {
            name: "full",
            runs: 3,
            kafka_messages: 50_000,
            postgres_rows: 20_000,
            postgres_batch: 1000,
            consul_services: 5000,
            ingest_events: 5000,
            steady_nodes: vec![1000, 10_000, 100_000],
            steady_schedule: Schedule {
                consul_wait: Duration::from_secs(300),
                warm_up: Duration::from_secs(10),
                window: Duration::from_secs(60),
                windows: 3,
            },
        }
    }

    fn quick() -> Self {
        Self {
            name: "quick",
            runs: 1,
            kafka_messages: 2000,
            postgres_rows: 2000,
            postgres_batch: 1000,
            consul_services: 200,
            ingest_events: 200,
            steady_nodes: vec![1000],
            steady_schedule: Schedule {
                consul_wait: Duration::from_secs(30),
                warm_up: Duration::from_secs(2),
                window: Duration::from_secs(5),
                windows: 1,
            },
        }
    }
}

/// Samples of every figure, and the measurements that failed.
#[derive(Default)]
struct Results {
    kafka: Vec<f64>,
    postgres: Vec<f64>,
    consul: Vec<f64>,
    ingest: Vec<f64>,
    ingest_ratio: Vec<f64>,
    ingest_committed: Vec<f64>,
    produce_seconds: Vec<f64>,
    consul_poll_seconds: Vec<f64>,
    self_postgres: Vec<f64>,
    self_consul: Vec<f64>,
    self_both: Vec<f64>,
    ready: Vec<f64>,
    /// Runs in which the operator's `/readyz` never returned 200.
    ready_unreported: usize,
    steady: Vec<SteadyRun>,
    failures: Vec<String>,
}

/// Runs one measurement, removes what it created on the stack, and records a failure
/// instead of stopping the benchmark.
async fn measure<T, Fut>(
    stack: &Stack,
    results: &mut Results,
    description: &str,
    measurement: Fut,
) -> Option<T>
where
    Fut: Future<Output = anyhow::Result<T>>,
{
    eprintln!("[bench] {description}");
    let started = Instant::now();
    let outcome = measurement.await;
    stack.clean_up().await;
    match outcome {
        Ok(value) => {
            eprintln!("[bench]   done in {:.1} s", started.elapsed().as_secs_f64());
            Some(value)
        }
        Err(error) => {
            eprintln!("[bench]   FAILED: {error:#}");
            results.failures.push(format!("{description}: {error:#}"));
            None
        }
    }
}

async fn measure_capacity_and_ingest(stack: &Stack, plan: &Plan, results: &mut Results) {
    for run in 1..=plan.runs {
        let label = |step: &str| format!("run {run}/{}: {step}", plan.runs);
        let kafka = measure(
            stack,
            results,
            &label(&format!(
                "Kafka consume of {} introspections",
                plan.kafka_messages
            )),
            raw::kafka_consume_rate(stack, plan.kafka_messages),
        )
        .await;
        let postgres = measure(
            stack,
            results,
            &label(&format!(
                "PostgreSQL upsert of {} rows in batches of {}",
                plan.postgres_rows, plan.postgres_batch
            )),
            raw::postgres_upsert_rate(stack, plan.postgres_rows, plan.postgres_batch),
        )
        .await;
        let consul = measure(
            stack,
            results,
            &label(&format!(
                "Consul catalog register of {} services",
                plan.consul_services
            )),
            raw::consul_register_rate(stack, plan.consul_services),
        )
        .await;
        let ingest = measure(
            stack,
            results,
            &label(&format!(
                "registry ingest of {} introspections",
                plan.ingest_events
            )),
            ingest::ingest_rate(stack, plan.ingest_events),
        )
        .await;

        results.kafka.extend(kafka);
        results.postgres.extend(postgres);
        results.consul.extend(consul);
        if let Some(ingest) = &ingest {
            results.ingest.push(ingest.events_per_second);
            results.ingest_committed.push(ingest.committed_per_second);
            results.produce_seconds.push(ingest.produce_seconds);
            results.consul_poll_seconds.push(ingest.consul_poll_seconds);
        }
        if let (Some(kafka), Some(postgres), Some(consul), Some(ingest)) =
            (kafka, postgres, consul, ingest)
        {
            let slowest = kafka.min(postgres).min(consul);
            results
                .ingest_ratio
                .push(ingest.events_per_second / slowest);
        }
    }
}

async fn measure_startup(stack: &Stack, plan: &Plan, results: &mut Results) {
    for run in 1..=plan.runs {
        let self_registration = measure(
            stack,
            results,
            &format!(
                "run {run}/{}: self-registration of a standalone registry",
                plan.runs
            ),
            startup::self_registration_latency(stack),
        )
        .await;
        if let Some(latency) = self_registration {
            results.self_postgres.push(latency.postgres);
            results.self_consul.push(latency.consul);
            results.self_both.push(latency.both);
        }
        let ready = measure(
            stack,
            results,
            &format!("run {run}/{}: RegistryNode creation to Ready", plan.runs),
            startup::registry_node_ready_latency(stack),
        )
        .await;
        if let Some(ready) = ready {
            results.ready.push(ready.seconds);
            if !ready.operator_reported_ready {
                results.ready_unreported += 1;
            }
        }
    }
}

async fn measure_steady(stack: &Stack, plan: &Plan, results: &mut Results) {
    let schedule = &plan.steady_schedule;
    for &nodes in &plan.steady_nodes {
        let description = format!(
            "steady state of {nodes} nodes: up to {} s for Consul, {} s warm-up, then {} windows of {} s",
            schedule.consul_wait.as_secs(),
            schedule.warm_up.as_secs(),
            schedule.windows,
            schedule.window.as_secs()
        );
        let run = measure(
            stack,
            results,
            &description,
            steady::steady_state(stack, nodes, schedule),
        )
        .await;
        results.steady.extend(run);
    }
}

fn megabytes(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

fn steady_table(runs: &[SteadyRun]) -> String {
    let mut table = String::from(
        "| nodes | heartbeats/s | CPU cores, median (min–max) | RSS MB, median (min–max) | peak RSS MB | target | met |\n\
         |---:|---:|---|---|---:|---|---|\n",
    );
    for run in runs {
        let cores: Vec<f64> = run.windows.iter().map(|window| window.cpu_cores).collect();
        let rss: Vec<f64> = run
            .windows
            .iter()
            .map(|window| megabytes(window.rss_bytes))
            .collect();
        let (Some(cores), Some(rss)) = (Summary::of(&cores), Summary::of(&rss)) else {
            continue;
        };
        let (target, met) = if run.nodes == 100_000 {
            let met = Target::AtMost(0.5).verdict(cores.median) == "yes"
                && Target::Below(200.0).verdict(rss.median) == "yes";
            ("≤ 0.5 core, < 200 MB", if met { "yes" } else { "no" })
        } else {
            ("–", "–")
        };
        table.push_str(&format!(
            "| {} | {:.0} | {} | {} | {:.1} | {target} | {met} |\n",
            run.nodes,
            run.heartbeats_per_second,
            cores.display(3),
            rss.display(1),
            megabytes(run.peak_rss_bytes),
        ));
    }
    table
}

fn steady_checks_table(runs: &[SteadyRun]) -> String {
    let mut table = String::from(
        "| nodes | in PostgreSQL after s | in both backends after s | Consul services at warm-up / at end | heartbeats not delivered | heartbeat lag at end (messages) | nodes with a heartbeat in PostgreSQL |\n\
         |---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for run in runs {
        let both = run.registration_seconds.map_or_else(
            || "not within the wait".to_owned(),
            |seconds| format!("{seconds:.1}"),
        );
        table.push_str(&format!(
            "| {} | {:.1} | {both} | {} / {} | {} | {} | {} |\n",
            run.nodes,
            run.registration_postgres_seconds,
            run.consul_services_at_start,
            run.consul_services_at_end,
            run.failed_heartbeats,
            run.lag_at_end,
            run.heartbeats_recorded
        ));
    }
    table
}

fn first_line(path: &str, prefix: &str) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .find(|line| line.starts_with(prefix))
        .and_then(|line| line.split_once(':'))
        .map(|(_, value)| value.trim().to_owned())
        .unwrap_or_else(|| "unknown".to_owned())
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn source_version() -> String {
    std::process::Command::new("git")
        .args([
            "-C",
            env!("CARGO_MANIFEST_DIR"),
            "describe",
            "--always",
            "--dirty",
        ])
        .output()
        .ok()
        .and_then(|output| String::from_utf8(output.stdout).ok())
        .map(|text| text.trim().to_owned())
        .filter(|text| !text.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}

fn print_report(
    plan: &Plan,
    results: &Results,
    load_before: &str,
    source: &str,
    elapsed: Duration,
) {
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    println!("# registry-operator benchmark ({} mode)", plan.name);
    println!();
    println!(
        "Machine: {cores} cores ({}), {} memory. Load average (1, 5, 15 min) {load_before} \
         before and {} after. Source {source} (git describe at start). Took {:.0} s.",
        first_line("/proc/cpuinfo", "model name"),
        first_line("/proc/meminfo", "MemTotal"),
        load_average(),
        elapsed.as_secs_f64()
    );
    println!();

    println!(
        "## Backend capacity and registry ingest ({} runs)",
        plan.runs
    );
    println!();
    let figures = [
        Figure {
            name: format!("Kafka consume, {} introspections", plan.kafka_messages),
            unit: "messages/s",
            decimals: 0,
            target: Target::None,
            samples: results.kafka.clone(),
        },
        Figure {
            name: format!(
                "PostgreSQL upsert, {} rows in batches of {}",
                plan.postgres_rows, plan.postgres_batch
            ),
            unit: "rows/s",
            decimals: 0,
            target: Target::None,
            samples: results.postgres.clone(),
        },
        Figure {
            name: format!(
                "Consul catalog register, {} services, {} concurrent",
                plan.consul_services,
                raw::CONSUL_CONCURRENCY
            ),
            unit: "services/s",
            decimals: 0,
            target: Target::None,
            samples: results.consul.clone(),
        },
        Figure {
            name: format!(
                "registry ingest, {} introspections to both backends",
                plan.ingest_events
            ),
            unit: "events/s",
            decimals: 0,
            target: Target::None,
            samples: results.ingest.clone(),
        },
        Figure {
            name: "ingest / slowest raw rate of the same run".to_owned(),
            unit: "ratio",
            decimals: 2,
            target: Target::AtLeast(0.7),
            samples: results.ingest_ratio.clone(),
        },
        Figure {
            name: "registry ingest until its offsets were committed".to_owned(),
            unit: "events/s",
            decimals: 0,
            target: Target::None,
            samples: results.ingest_committed.clone(),
        },
        Figure {
            name: "time to produce the ingest events (included above)".to_owned(),
            unit: "s",
            decimals: 3,
            target: Target::None,
            samples: results.produce_seconds.clone(),
        },
        Figure {
            name: "duration of one Consul count during ingest (its resolution)".to_owned(),
            unit: "s",
            decimals: 3,
            target: Target::None,
            samples: results.consul_poll_seconds.clone(),
        },
    ];
    println!("{}", figures_table(&figures));

    println!("## Start-up latency ({} runs)", plan.runs);
    println!();
    let figures = [
        Figure {
            name: "standalone start to self record in PostgreSQL".to_owned(),
            unit: "s",
            decimals: 3,
            target: Target::None,
            samples: results.self_postgres.clone(),
        },
        Figure {
            name: "standalone start to self record in Consul".to_owned(),
            unit: "s",
            decimals: 3,
            target: Target::None,
            samples: results.self_consul.clone(),
        },
        Figure {
            name: "standalone start to self record in both backends".to_owned(),
            unit: "s",
            decimals: 3,
            target: Target::AtMost(1.0),
            samples: results.self_both.clone(),
        },
        Figure {
            name: "RegistryNode creation to Ready (registry-operator run)".to_owned(),
            unit: "s",
            decimals: 3,
            target: Target::AtMost(2.0),
            samples: results.ready.clone(),
        },
    ];
    println!("{}", figures_table(&figures));
    if results.ready_unreported > 0 {
        println!(
            "In {} of {} RegistryNode runs the operator's /readyz still returned 503 three \
             seconds after its HTTP server answered; the RegistryNode was created then.",
            results.ready_unreported,
            results.ready.len()
        );
        println!();
    }

    let schedule = &plan.steady_schedule;
    println!(
        "## Steady state, heartbeats every {} s ({} window(s) of {} s after {} s of warm-up)",
        steady::HEARTBEAT_PERIOD_SECONDS,
        schedule.windows,
        schedule.window.as_secs(),
        schedule.warm_up.as_secs()
    );
    println!();
    println!(
        "Heartbeats start once every node is in PostgreSQL. The warm-up starts once every \
         node is in Consul too, or after {} s at most.",
        schedule.consul_wait.as_secs()
    );
    println!();
    println!("{}", steady_table(&results.steady));
    println!("{}", steady_checks_table(&results.steady));

    if !results.failures.is_empty() {
        println!("## Measurements that failed");
        println!();
        for failure in &results.failures {
            println!("- {failure}");
        }
        println!();
    }
}

async fn run(plan: &Plan) -> anyhow::Result<Results> {
    let stack = Stack::connect().await?;
    let mut results = Results::default();
    measure_capacity_and_ingest(&stack, plan, &mut results).await;
    measure_startup(&stack, plan, &mut results).await;
    measure_steady(&stack, plan, &mut results).await;
    Ok(results)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // `cargo bench` passes `--bench`. `cargo test --all-targets` also runs bench
    // targets, without it, and must not start a benchmark.
    if !args.iter().any(|arg| arg == "--bench") {
        eprintln!(
            "registry benchmarks skipped: run them with hack/bench.sh or cargo bench --bench registry"
        );
        return ExitCode::SUCCESS;
    }
    let mut plan = Plan::full();
    for arg in &args {
        match arg.as_str() {
            "--bench" => {}
            "--quick" => plan = Plan::quick(),
            other => {
                eprintln!("unknown argument {other:?}: the only option is --quick");
                return ExitCode::from(2);
            }
        }
    }

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("starting the Tokio runtime failed: {error}");
            return ExitCode::FAILURE;
        }
    };
    let load_before = load_average();
    let source = source_version();
    let started = Instant::now();
    match runtime.block_on(run(&plan)) {
        Ok(results) => {
            print_report(&plan, &results, &load_before, &source, started.elapsed());
            if results.failures.is_empty() {
                ExitCode::SUCCESS
            } else {
                eprintln!(
                    "[bench] {} measurement(s) failed; see the list at the end of the report",
                    results.failures.len()
                );
                ExitCode::FAILURE
            }
        }
        Err(error) => {
            eprintln!("benchmark failed: {error:#}");
            ExitCode::FAILURE
        }
    }
}
