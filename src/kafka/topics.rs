use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;

use super::{KafkaError, client_config};

/// Creates the topics that do not exist yet. Existing topics are left as they are.
/// `compacted` topics get `cleanup.policy=compact`.
pub async fn ensure_topics(
    brokers: &str,
    extra: &BTreeMap<String, String>,
    topics: &[String],
    compacted: &[String],
) -> Result<(), KafkaError> {
    let admin: AdminClient<DefaultClientContext> =
        client_config(brokers, extra)
            .create()
            .map_err(|source| KafkaError::Client {
                brokers: brokers.to_owned(),
                source,
            })?;
    let mut new_topics: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|name| NewTopic::new(name, 1, TopicReplication::Fixed(-1)))
        .collect();
    new_topics.extend(compacted.iter().map(|name| {
        NewTopic::new(name, 1, TopicReplication::Fixed(-1)).set("cleanup.policy", "compact")
    }));
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results = admin
        .create_topics(&new_topics, &options)
        .await
        .map_err(|source| KafkaError::Publish {
            topic: topics.join(","),
            source,
        })?;
    for result in results {
        if let Err((topic, code)) = result
            && code != RDKafkaErrorCode::TopicAlreadyExists
        {
            return Err(KafkaError::Publish {
                topic,
                source: rdkafka::error::KafkaError::AdminOp(code),
            });
        }
    }
    Ok(())
}
