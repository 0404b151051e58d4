//! Services as Consul lists them, for comparing with what the registry expects.

use std::collections::BTreeMap;

use serde::Deserialize;

/// A service found in Consul.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisteredService {
    pub id: String,
    pub name: String,
    pub tags: Vec<String>,
    /// Empty when the service uses its node's address.
    pub address: String,
    pub port: u16,
    pub meta: BTreeMap<String, String>,
}

impl RegisteredService {
    /// Returns the `registry_id` meta value: the registry that registered the service.
    pub fn registry_id(&self) -> Option<&str> {
        self.meta.get("registry_id").map(String::as_str)
    }
}

/// One service in the responses of `/v1/catalog/node/<node>` and `/v1/agent/services`,
/// which share these field names. Consul may send `null` for empty tags and meta.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ServiceEntry {
    #[serde(rename = "ID")]
    id: String,
    service: String,
    #[serde(default)]
    tags: Option<Vec<String>>,
    #[serde(default)]
    address: String,
    #[serde(default)]
    port: u16,
    #[serde(default)]
    meta: Option<BTreeMap<String, String>>,
}

impl From<ServiceEntry> for RegisteredService {
    fn from(entry: ServiceEntry) -> Self {
        RegisteredService {
            id: entry.id,
            name: entry.service,
            tags: entry.tags.unwrap_or_default(),
            address: entry.address,
            port: entry.port,
            meta: entry.meta.unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_with_nulls_decoded() {
        let entry: ServiceEntry = serde_json::from_str(
            r#"{"ID":"a:1","Service":"onex-effect","Tags":null,"Address":"","Port":0,"Meta":null,"Weights":{"Passing":1}}"#,
        )
        .unwrap();
        let service = RegisteredService::from(entry);
        assert_eq!(service.id, "a:1");
        assert_eq!(service.name, "onex-effect");
        assert!(service.tags.is_empty());
        assert!(service.meta.is_empty());
        assert_eq!(service.registry_id(), None);
    }
}
