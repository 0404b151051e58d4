//! Size limits that the reader enforces on untrusted message values.

/// Size limits for [`read_event`](super::read_event). A value over any of them is
/// rejected whole, never truncated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadLimits {
    /// Maximum size of a message value in bytes.
    pub max_message_bytes: usize,
    /// Maximum nesting depth of arrays and objects, the outer envelope object
    /// counting as 1. Checked on the raw bytes before parsing.
    pub max_depth: usize,
    /// Maximum size in bytes of each free-form object (`capabilities`, both
    /// `metadata` objects, `resource_usage`), measured as compact JSON.
    pub max_object_bytes: usize,
    /// Maximum number of entries in `endpoints`.
    pub max_endpoints: usize,
    /// Maximum number of entries in a registry request's `target_node_types`.
    pub max_target_node_types: usize,
    /// Maximum length in characters of `node_id`, `source_node_id`, `node_role`,
    /// `network_id`, `deployment_id` and `registry_id`.
    pub max_identifier_chars: usize,
    /// Maximum length in bytes of other strings, such as endpoint URLs, versions,
    /// `source_service`, `environment`, `region`, `partition_key` and `reason`.
    pub max_text_bytes: usize,
}

impl Default for ReadLimits {
    fn default() -> Self {
        ReadLimits {
            max_message_bytes: 1_048_576,
            // serde_json stops at 128 levels, so this check runs first and cheaper.
            max_depth: 64,
            max_object_bytes: 65_536,
            max_endpoints: 32,
            max_target_node_types: 64,
            max_identifier_chars: 128,
            // Consul rejects service meta values longer than 512 bytes
            // (metaValueMaxLength in hashicorp/consul agent/structs/structs.go), and
            // these strings may end up there.
            max_text_bytes: 512,
        }
    }
}
