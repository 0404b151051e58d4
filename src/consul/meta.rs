//! Service meta within the limits Consul enforces.
//!
//! Consul 1.14 (`agent/structs/structs.go`, `validateMetaPair`) rejects a whole registration
//! when one pair breaks a limit, so a pair that would break one is left out and reported
//! instead. Values are never truncated, because a shortened value would be read as true.

use std::collections::BTreeMap;
use std::fmt;

/// Maximum number of meta pairs on one service.
pub const MAX_META_PAIRS: usize = 64;
/// Maximum length of a meta key, in bytes.
pub const MAX_META_KEY_BYTES: usize = 128;
/// Maximum length of a meta value, in bytes.
pub const MAX_META_VALUE_BYTES: usize = 512;
/// Key prefix Consul reserves for its own meta.
pub const RESERVED_META_KEY_PREFIX: &str = "consul-";

/// Reason a meta pair was left out of a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetaRejection {
    EmptyKey,
    /// The key contains a character outside `A-Z a-z 0-9 _ -`.
    InvalidKeyCharacters,
    KeyTooLong {
        bytes: usize,
    },
    ReservedKeyPrefix,
    ValueTooLong {
        bytes: usize,
    },
    /// The service already has the maximum number of pairs.
    TooManyPairs,
}

impl fmt::Display for MetaRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MetaRejection::EmptyKey => f.write_str("the key is empty"),
            MetaRejection::InvalidKeyCharacters => {
                f.write_str("the key may contain only A-Z, a-z, 0-9, '_' and '-'")
            }
            MetaRejection::KeyTooLong { bytes } => write!(
                f,
                "the key is {bytes} bytes long and Consul allows at most {MAX_META_KEY_BYTES}"
            ),
            MetaRejection::ReservedKeyPrefix => write!(
                f,
                "Consul reserves the key prefix {RESERVED_META_KEY_PREFIX:?}"
            ),
            MetaRejection::ValueTooLong { bytes } => write!(
                f,
                "the value is {bytes} bytes long and Consul allows at most {MAX_META_VALUE_BYTES}"
            ),
            MetaRejection::TooManyPairs => {
                write!(f, "the service already has {MAX_META_PAIRS} meta pairs")
            }
        }
    }
}

/// A meta pair left out of a service, with the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OmittedMeta {
    pub key: String,
    pub reason: MetaRejection,
}

impl fmt::Display for OmittedMeta {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "meta {:?} left out: {}", self.key, self.reason)
    }
}

/// Checks one pair against Consul's limits, not counting the number of pairs.
pub fn check_meta_pair(key: &str, value: &str) -> Result<(), MetaRejection> {
    if key.is_empty() {
        return Err(MetaRejection::EmptyKey);
    }
    let valid_characters = key
        .bytes()
        .all(|byte| byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-');
    if !valid_characters {
        return Err(MetaRejection::InvalidKeyCharacters);
    }
    if key.len() > MAX_META_KEY_BYTES {
        return Err(MetaRejection::KeyTooLong { bytes: key.len() });
    }
    if key.starts_with(RESERVED_META_KEY_PREFIX) {
        return Err(MetaRejection::ReservedKeyPrefix);
    }
    if value.len() > MAX_META_VALUE_BYTES {
        return Err(MetaRejection::ValueTooLong { bytes: value.len() });
    }
    Ok(())
}

/// Service meta under construction: pairs Consul accepts, and the pairs left out.
#[derive(Debug, Default)]
pub struct MetaBuilder {
    meta: BTreeMap<String, String>,
    omitted: Vec<OmittedMeta>,
}

impl MetaBuilder {
    /// Adds the pair, or records why it was left out. A repeated key replaces the earlier value.
    pub fn insert(&mut self, key: &str, value: &str) {
        let checked = check_meta_pair(key, value).and_then(|()| {
            let is_new_key = !self.meta.contains_key(key);
            if is_new_key && self.meta.len() >= MAX_META_PAIRS {
                Err(MetaRejection::TooManyPairs)
            } else {
                Ok(())
            }
        });

        match checked {
            Ok(()) => {
                self.meta.insert(key.to_owned(), value.to_owned());
            }
            Err(reason) => self.omitted.push(OmittedMeta {
                key: key.to_owned(),
                reason,
            }),
        }
    }

    /// Adds the pair when a value is present.
    pub fn insert_some(&mut self, key: &str, value: Option<&str>) {
        if let Some(value) = value {
            self.insert(key, value);
        }
    }

    /// Returns the accepted meta and the omitted pairs.
    pub fn finish(self) -> (BTreeMap<String, String>, Vec<OmittedMeta>) {
        (self.meta, self.omitted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pair_within_limits_accepted() {
        assert_eq!(check_meta_pair("node_type", "effect"), Ok(()));
        assert_eq!(check_meta_pair("managed-by", "registry-operator"), Ok(()));
        assert_eq!(check_meta_pair(&"k".repeat(128), &"v".repeat(512)), Ok(()));
    }

    #[test]
    fn empty_key_rejected() {
        assert_eq!(check_meta_pair("", "v"), Err(MetaRejection::EmptyKey));
    }

    #[test]
    fn key_characters_rejected() {
        for key in ["a.b", "a b", "a/b", "a:b", "é"] {
            assert_eq!(
                check_meta_pair(key, "v"),
                Err(MetaRejection::InvalidKeyCharacters),
                "key {key:?}"
            );
        }
    }

    #[test]
    fn long_key_rejected() {
        assert_eq!(
            check_meta_pair(&"k".repeat(129), "v"),
            Err(MetaRejection::KeyTooLong { bytes: 129 })
        );
    }

    #[test]
    fn reserved_prefix_rejected() {
        assert_eq!(
            check_meta_pair("consul-version", "v"),
            Err(MetaRejection::ReservedKeyPrefix)
        );
    }

    #[test]
    fn value_length_counts_bytes() {
        // 257 two-byte characters are 514 bytes, over the limit although only 257 characters.
        let value = "é".repeat(257);
        assert_eq!(
            check_meta_pair("k", &value),
            Err(MetaRejection::ValueTooLong { bytes: 514 })
        );
    }

    #[test]
    fn builder_stops_at_max_pairs() {
        let mut builder = MetaBuilder::default();
        for index in 0..MAX_META_PAIRS {
            builder.insert(&format!("key{index}"), "v");
        }
        builder.insert("one_too_many", "v");
        builder.insert("key0", "replaced");

        let (meta, omitted) = builder.finish();
        assert_eq!(meta.len(), MAX_META_PAIRS);
        assert_eq!(meta.get("key0").map(String::as_str), Some("replaced"));
        assert_eq!(
            omitted,
            vec![OmittedMeta {
                key: "one_too_many".to_owned(),
                reason: MetaRejection::TooManyPairs,
            }]
        );
    }

    #[test]
    fn omission_message_names_key_and_limit() {
        let omitted = OmittedMeta {
            key: "deployment_id".to_owned(),
            reason: MetaRejection::ValueTooLong { bytes: 600 },
        };
        assert_eq!(
            omitted.to_string(),
            "meta \"deployment_id\" left out: the value is 600 bytes long and Consul allows at most 512"
        );
    }
}
