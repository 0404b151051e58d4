/// Failures of the PostgreSQL adapter. Never contains the connection URL, which may
/// carry a password.
#[derive(Debug, thiserror::Error)]
pub enum PostgresError {
    #[error(
        "invalid PostgreSQL schema name {0:?}: expected 1 to 63 of a-z, 0-9 and _, not starting with a digit"
    )]
    InvalidSchema(String),
    #[error("invalid PostgreSQL connection URL: {0}")]
    InvalidUrl(String),
    #[error("PostgreSQL query {query} failed: {source}")]
    Query {
        query: &'static str,
        #[source]
        source: sqlx::Error,
    },
    #[error("PostgreSQL migration of schema {schema:?} failed: {source}")]
    Migrate {
        schema: String,
        #[source]
        source: sqlx::migrate::MigrateError,
    },
}

impl PostgresError {
    pub(crate) fn query(query: &'static str) -> impl FnOnce(sqlx::Error) -> Self {
        move |source| PostgresError::Query { query, source }
    }

    /// Short stable label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            PostgresError::InvalidSchema(_) => "invalid_schema",
            PostgresError::InvalidUrl(_) => "invalid_url",
            PostgresError::Query { .. } => "query",
            PostgresError::Migrate { .. } => "migrate",
        }
    }

    /// True when retrying later may succeed (the server is unreachable or restarting).
    pub fn is_transient(&self) -> bool {
        match self {
            PostgresError::Query { source, .. } => matches!(
                source,
                sqlx::Error::Io(_)
                    | sqlx::Error::PoolTimedOut
                    | sqlx::Error::PoolClosed
                    | sqlx::Error::Tls(_)
                    | sqlx::Error::Protocol(_)
                    | sqlx::Error::Database(_)
            ),
            PostgresError::Migrate { .. } => true,
            _ => false,
        }
    }
}
