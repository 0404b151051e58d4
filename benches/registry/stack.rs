//! Clients of the local stack, whose addresses come from the variables that
//! `hack/stack.sh env` prints: producing events, counting what the backends contain,
//! and removing everything a measurement created.

use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::StreamExt;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use registry_operator::consul::{ConsulClient, shard_node_name};
use registry_operator::wire::Topics;
use serde::Deserialize;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

use crate::events::Message;

/// Concurrent Consul requests when reading a registry's synthetic nodes.
const CONSUL_CONCURRENCY: usize = 16;

/// Something a measurement created on the shared stack and removes afterwards.
enum Created {
    Schema(String),
    Topics(Vec<String>),
    ConsumerGroup(String),
    ConsulNode(String),
}

/// Clients of the running stack.
pub struct Stack {
    pub kafka_brokers: String,
    pub consul_address: String,
    pub database_url: String,
    pub http: reqwest::Client,
    pub consul: ConsulClient,
    /// Small pool on the database's default schema, for counting and dropping schemas.
    pub postgres: PgPool,
    created: Mutex<Vec<Created>>,
}

fn stack_variable(name: &str) -> anyhow::Result<String> {
    std::env::var(name).with_context(|| {
        format!(
            "{name} is not set: run hack/bench.sh, or start the stack with hack/stack.sh up \
             and then eval \"$(hack/stack.sh env)\""
        )
    })
}

/// Returns `prefix` followed by 10 random lowercase hex digits: valid as a registry id,
/// topic prefix, PostgreSQL schema and Kubernetes name.
pub fn unique_name(prefix: &str) -> String {
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}{}", &suffix[..10])
}

/// Returns every topic that a registry of `environment` creates.
pub fn registry_topics(environment: &str) -> Vec<String> {
    let topics = Topics::for_environment(environment);
    let consumed = [
        topics.introspection,
        topics.heartbeat,
        topics.registry_request,
    ];
    let mut all: Vec<String> = consumed
        .iter()
        .map(|topic| registry_operator::wire::dead_letter_for(topic))
        .collect();
    all.extend(consumed);
    all.push(topics.topology);
    all
}

/// Calls `check` every `interval` until it returns `Some`, failing after `timeout`.
pub async fn wait_for<T, F, Fut>(
    description: &str,
    timeout: Duration,
    interval: Duration,
    mut check: F,
) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await? {
            return Ok(value);
        }
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {description}");
        }
        tokio::time::sleep(interval).await;
    }
}

#[derive(Deserialize)]
struct NodeName {
    #[serde(rename = "Node")]
    node: String,
}

#[derive(Deserialize)]
struct NodeServices {
    #[serde(rename = "Services", default)]
    services: Option<Vec<ServiceId>>,
}

#[derive(Deserialize)]
struct ServiceId {
    #[serde(rename = "ID")]
    id: String,
}

impl Stack {
    /// Reads the stack's addresses from the environment and opens the clients.
    pub async fn connect() -> anyhow::Result<Self> {
        let kafka_brokers = stack_variable("KAFKA_BOOTSTRAP_SERVERS")?;
        let consul_address = stack_variable("CONSUL_HTTP_ADDR")?;
        let database_url = stack_variable("DATABASE_URL")?;
        let postgres = PgPoolOptions::new()
            .max_connections(2)
            .acquire_timeout(Duration::from_secs(10))
            .connect(&database_url)
            .await
            .context("connecting to PostgreSQL at DATABASE_URL failed")?;
        let consul = ConsulClient::new(&consul_address, None, Duration::from_secs(60))
            .context("creating the Consul client failed")?;
        Ok(Self {
            kafka_brokers,
            consul_address,
            database_url,
            http: reqwest::Client::new(),
            consul,
            postgres,
            created: Mutex::new(Vec::new()),
        })
    }

    fn remember(&self, created: Created) {
        if let Ok(mut list) = self.created.lock() {
            list.push(created);
        }
    }

    /// Records a schema to drop at the next [`Stack::clean_up`].
    pub fn created_schema(&self, schema: &str) {
        self.remember(Created::Schema(schema.to_owned()));
    }

    /// Records topics to delete at the next [`Stack::clean_up`].
    pub fn created_topics(&self, topics: Vec<String>) {
        self.remember(Created::Topics(topics));
    }

    /// Records a Kafka consumer group to delete at the next [`Stack::clean_up`].
    pub fn created_consumer_group(&self, group: &str) {
        self.remember(Created::ConsumerGroup(group.to_owned()));
    }

    /// Records a Consul node to deregister, with all its services, at the next
    /// [`Stack::clean_up`].
    pub fn created_consul_node(&self, node: &str) {
        self.remember(Created::ConsulNode(node.to_owned()));
    }

    /// Removes everything recorded since the last call. Failures are printed and do not
    /// stop the removal of the rest.
    pub async fn clean_up(&self) {
        let created: Vec<Created> = match self.created.lock() {
            Ok(mut list) => list.drain(..).collect(),
            Err(_) => return,
        };
        let admin: Option<AdminClient<DefaultClientContext>> = ClientConfig::new()
            .set("bootstrap.servers", &self.kafka_brokers)
            .create()
            .inspect_err(|error| eprintln!("[bench] cleanup: Kafka admin client failed: {error}"))
            .ok();
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));

        for item in created {
            let result = match &item {
                Created::Schema(schema) => {
                    let statement = format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE");
                    sqlx::query(&statement)
                        .execute(&self.postgres)
                        .await
                        .map(|_| ())
                        .with_context(|| format!("dropping schema {schema}"))
                }
                Created::Topics(topics) => match &admin {
                    Some(admin) => {
                        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
                        admin
                            .delete_topics(&names, &options)
                            .await
                            .map(|_| ())
                            .with_context(|| format!("deleting topics {names:?}"))
                    }
                    None => Ok(()),
                },
                Created::ConsumerGroup(group) => match &admin {
                    Some(admin) => admin
                        .delete_groups(&[group.as_str()], &options)
                        .await
                        .map(|_| ())
                        .with_context(|| format!("deleting consumer group {group}")),
                    None => Ok(()),
                },
                Created::ConsulNode(base) => self.deregister_synthetic_nodes(base).await,
            };
            if let Err(error) = result {
                eprintln!("[bench] cleanup: {error:#}");
            }
        }
    }

    /// Creates a producer configured like a node's: acknowledged by all in-sync
    /// replicas, batching for 5 ms.
    pub fn producer(&self) -> anyhow::Result<FutureProducer> {
        ClientConfig::new()
            .set("bootstrap.servers", &self.kafka_brokers)
            .set("linger.ms", "5")
            .set("acks", "all")
            .set("queue.buffering.max.messages", "1000000")
            .create()
            .context("creating the Kafka producer failed")
    }

    /// Produces `messages` to `topic` with up to 10,000 in flight and waits until the
    /// broker has acknowledged each of them.
    pub async fn produce(
        &self,
        producer: &FutureProducer,
        topic: &str,
        messages: &[Message],
    ) -> anyhow::Result<()> {
        let mut deliveries = futures::stream::iter(messages)
            .map(|message| {
                let record = FutureRecord::to(topic)
                    .key(message.key.as_str())
                    .payload(message.value.as_slice());
                producer.send(record, Duration::from_secs(30))
            })
            .buffer_unordered(10_000);
        while let Some(delivery) = deliveries.next().await {
            if let Err((error, _)) = delivery {
                bail!("producing to topic {topic} failed: {error}");
            }
        }
        Ok(())
    }

    /// Counts the registered rows whose node id starts with `node_prefix` in
    /// `schema.node_registrations`. Returns `None` while the table does not exist.
    pub async fn count_rows(&self, schema: &str, node_prefix: &str) -> Option<i64> {
        let statement = format!(
            "SELECT count(*) FROM \"{schema}\".node_registrations \
             WHERE node_id LIKE $1 AND deregistered_at IS NULL"
        );
        sqlx::query_scalar(&statement)
            .bind(format!("{node_prefix}%"))
            .fetch_one(&self.postgres)
            .await
            .ok()
    }

    /// Returns whether `schema.node_registrations` contains a registered row for
    /// `node_id`, and false while the table does not exist.
    pub async fn has_row(&self, schema: &str, node_id: &str) -> bool {
        let statement = format!(
            "SELECT count(*) FROM \"{schema}\".node_registrations \
             WHERE node_id = $1 AND deregistered_at IS NULL"
        );
        sqlx::query_scalar::<_, i64>(&statement)
            .bind(node_id)
            .fetch_one(&self.postgres)
            .await
            .is_ok_and(|count| count > 0)
    }

    /// Lists the IDs of the services on a Consul node that match `filter` (Consul's
    /// filter expression language), through `/v1/catalog/node-services/<node>`.
    async fn consul_service_ids(
        &self,
        node: &str,
        filter: Option<&str>,
    ) -> anyhow::Result<Vec<String>> {
        let url = format!(
            "{}/v1/catalog/node-services/{node}",
            self.consul_address.trim_end_matches('/')
        );
        let mut request = self.http.get(&url);
        if let Some(filter) = filter {
            request = request.query(&[("filter", filter)]);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("GET {url} failed"))?
            .error_for_status()
            .with_context(|| format!("GET {url} failed"))?;
        let body: Option<NodeServices> = response
            .json()
            .await
            .with_context(|| format!("reading the response of GET {url} failed"))?;
        Ok(body
            .and_then(|node| node.services)
            .unwrap_or_default()
            .into_iter()
            .map(|service| service.id)
            .collect())
    }

    /// Counts the services whose ID starts with `prefix-` on the synthetic nodes named
    /// `<base>-<shard>`.
    pub async fn count_consul_services(&self, base: &str, prefix: &str) -> anyhow::Result<usize> {
        let filter = format!("ID matches \"^{prefix}-\"");
        let nodes = self.synthetic_nodes(base).await?;
        let counts: Vec<anyhow::Result<usize>> = futures::stream::iter(nodes)
            .map(|node| {
                let filter = filter.clone();
                async move { Ok(self.consul_service_ids(&node, Some(&filter)).await?.len()) }
            })
            .buffer_unordered(CONSUL_CONCURRENCY)
            .collect()
            .await;
        counts.into_iter().sum()
    }

    /// Lists the synthetic nodes named `<base>-<shard>`.
    async fn synthetic_nodes(&self, base: &str) -> anyhow::Result<Vec<String>> {
        let url = format!(
            "{}/v1/catalog/nodes",
            self.consul_address.trim_end_matches('/')
        );
        let filter = format!("Node matches \"^{base}-[0-9a-f][0-9a-f]$\"");
        let nodes: Vec<NodeName> = self
            .http
            .get(&url)
            .query(&[("filter", filter.as_str())])
            .send()
            .await
            .with_context(|| format!("GET {url} failed"))?
            .error_for_status()
            .with_context(|| format!("GET {url} failed"))?
            .json()
            .await
            .with_context(|| format!("reading the response of GET {url} failed"))?;
        Ok(nodes.into_iter().map(|node| node.node).collect())
    }

    async fn deregister_synthetic_nodes(&self, base: &str) -> anyhow::Result<()> {
        for node in self.synthetic_nodes(base).await? {
            self.consul
                .catalog_deregister_node(&node)
                .await
                .with_context(|| format!("deregistering Consul node {node}"))?;
        }
        Ok(())
    }

    /// Creates a reader of the committed offsets of `group`.
    pub fn offset_reader(&self, group: &str) -> anyhow::Result<OffsetReader> {
        // A consumer that never subscribes does not join the group, so the registry's
        // consumer keeps its partitions.
        let consumer = ClientConfig::new()
            .set("bootstrap.servers", &self.kafka_brokers)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .create()
            .context("creating a Kafka consumer to read committed offsets failed")?;
        Ok(OffsetReader { consumer })
    }

    /// Returns whether the synthetic node of `service_id` has that service.
    pub async fn has_consul_service(&self, base: &str, service_id: &str) -> anyhow::Result<bool> {
        let filter = format!("ID == \"{service_id}\"");
        let node = shard_node_name(base, service_id);
        let ids = self.consul_service_ids(&node, Some(&filter)).await?;
        Ok(ids.iter().any(|id| id == service_id))
    }
}

/// Reads a consumer group's committed offsets without joining the group.
pub struct OffsetReader {
    consumer: BaseConsumer,
}

impl OffsetReader {
    /// Returns the committed offset on partition 0 of `topic` (0 when none is committed)
    /// and the partition's high watermark.
    pub fn committed_and_high(&self, topic: &str) -> anyhow::Result<(i64, i64)> {
        let mut partitions = TopicPartitionList::new();
        partitions.add_partition(topic, 0);
        let committed = self
            .consumer
            .committed_offsets(partitions, Duration::from_secs(10))?;
        let committed = match committed.elements().first().map(|element| element.offset()) {
            Some(Offset::Offset(offset)) => offset,
            _ => 0,
        };
        let (_, high) = self
            .consumer
            .fetch_watermarks(topic, 0, Duration::from_secs(10))?;
        Ok((committed, high))
    }

    /// Returns the messages of `topic` that the group has not committed.
    pub fn lag(&self, topic: &str) -> anyhow::Result<i64> {
        let (committed, high) = self.committed_and_high(topic)?;
        Ok(high - committed)
    }
}
