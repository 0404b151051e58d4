use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::error::KafkaError as RdKafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

use super::client_config;

/// Failures of the Kafka producer.
#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    #[error("creating the Kafka client for {brokers} failed: {source}")]
    Client {
        brokers: String,
        #[source]
        source: RdKafkaError,
    },
    #[error("publishing to topic {topic} failed: {source}")]
    Publish {
        topic: String,
        #[source]
        source: RdKafkaError,
    },
}

/// A rejected message as written to the dead-letter topic: the original bytes as value,
/// the reason and origin in headers.
pub struct DeadLetter<'a> {
    pub topic: &'a str,
    pub source_topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<&'a [u8]>,
    pub value: &'a [u8],
    pub label: &'static str,
    pub reason: &'a str,
}

/// Producer of one registry instance: its own events, topology changes and dead letters.
#[derive(Clone)]
pub struct EventProducer {
    producer: FutureProducer,
}

impl EventProducer {
    pub fn new(brokers: &str, extra: &BTreeMap<String, String>) -> Result<Self, KafkaError> {
        let producer = client_config(brokers, extra)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            .set("message.timeout.ms", "30000")
            // Dead letters carry rejected messages whole, including oversized ones.
            .set("message.max.bytes", "16777216")
            .create()
            .map_err(|source| KafkaError::Client {
                brokers: brokers.to_owned(),
                source,
            })?;
        Ok(Self { producer })
    }

    /// Checks that a broker answers a metadata request within `timeout`.
    pub async fn probe(&self, timeout: Duration) -> Result<(), String> {
        let producer = self.producer.clone();
        tokio::task::spawn_blocking(move || {
            use rdkafka::producer::Producer;
            producer
                .client()
                .fetch_metadata(None, timeout)
                .map(|_| ())
                .map_err(|error| error.to_string())
        })
        .await
        .map_err(|error| error.to_string())?
    }

    /// Publishes `value` (or a tombstone when `None`) and waits for the broker's acknowledgement.
    pub async fn publish(
        &self,
        topic: &str,
        key: &str,
        value: Option<&[u8]>,
    ) -> Result<(i32, i64), KafkaError> {
        let mut record: FutureRecord<'_, str, [u8]> = FutureRecord::to(topic).key(key);
        if let Some(value) = value {
            record = record.payload(value);
        }
        let delivery = self
            .producer
            .send(record, Duration::from_secs(30))
            .await
            .map_err(|(source, _)| KafkaError::Publish {
                topic: topic.to_owned(),
                source,
            })?;
        Ok((delivery.partition, delivery.offset))
    }

    /// Publishes records to one topic in the given order and returns one result per
    /// record, in that order. Every record is queued before any acknowledgement is
    /// awaited. A record the local queue rejects fails without waiting.
    pub async fn publish_all<'a>(
        &self,
        topic: &str,
        records: impl IntoIterator<Item = (&'a str, Option<&'a [u8]>)>,
    ) -> Vec<Result<(), KafkaError>> {
        let publish_error = |source| KafkaError::Publish {
            topic: topic.to_owned(),
            source,
        };
        let queued: Vec<_> = records
            .into_iter()
            .map(|(key, value)| {
                let mut record: FutureRecord<'_, str, [u8]> = FutureRecord::to(topic).key(key);
                if let Some(value) = value {
                    record = record.payload(value);
                }
                self.producer
                    .send_result(record)
                    .map_err(|(source, _)| publish_error(source))
            })
            .collect();
        let mut results = Vec::with_capacity(queued.len());
        for delivery in queued {
            let result = match delivery {
                Err(error) => Err(error),
                Ok(delivery) => match delivery.await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err((source, _))) => Err(publish_error(source)),
                    Err(_canceled) => Err(publish_error(RdKafkaError::Canceled)),
                },
            };
            results.push(result);
        }
        results
    }

    /// Publishes a dead letter and waits for the broker's acknowledgement.
    pub async fn publish_dead_letter(&self, letter: &DeadLetter<'_>) -> Result<(), KafkaError> {
        let partition = letter.partition.to_string();
        let offset = letter.offset.to_string();
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "dlt.reason",
                value: Some(letter.reason),
            })
            .insert(Header {
                key: "dlt.error",
                value: Some(letter.label),
            })
            .insert(Header {
                key: "dlt.source.topic",
                value: Some(letter.source_topic),
            })
            .insert(Header {
                key: "dlt.source.partition",
                value: Some(&partition),
            })
            .insert(Header {
                key: "dlt.source.offset",
                value: Some(&offset),
            });
        let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(letter.topic)
            .payload(letter.value)
            .headers(headers);
        if let Some(key) = letter.key {
            record = record.key(key);
        }
        self.producer
            .send(record, Duration::from_secs(30))
            .await
            .map_err(|(source, _)| KafkaError::Publish {
                topic: letter.topic.to_owned(),
                source,
            })?;
        Ok(())
    }
}
