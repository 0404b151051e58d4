use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Executor};

use super::PostgresError;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Checks that `schema` is a plain lowercase identifier, so it can be quoted into
/// `search_path` and `CREATE SCHEMA` without escaping.
pub fn validate_schema(schema: &str) -> Result<(), PostgresError> {
    let mut chars = schema.chars();
    let valid_start = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_');
    let valid_rest = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if valid_start && valid_rest && schema.len() <= 63 {
        Ok(())
    } else {
        Err(PostgresError::InvalidSchema(schema.to_owned()))
    }
}

/// Opens a lazy pool whose connections use `schema` as their search path. Connecting
/// happens on first use, so a database that is down does not fail start-up.
pub fn connect(url: &str, schema: &str, max_connections: u32) -> Result<PgPool, PostgresError> {
    validate_schema(schema)?;
    let options = PgConnectOptions::from_str(url)
        .map_err(|error| PostgresError::InvalidUrl(redact(&error.to_string())))?
        .log_statements(tracing::log::LevelFilter::Debug)
        .log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_secs(2));
    let search_path = format!("SET search_path TO \"{schema}\"");
    let pool = PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .after_connect(move |connection, _meta| {
            let search_path = search_path.clone();
            Box::pin(async move {
                connection.execute(search_path.as_str()).await?;
                Ok(())
            })
        })
        .connect_lazy_with(options);
    Ok(pool)
}

/// Creates the schema when missing and applies every migration in `migrations/`.
pub async fn migrate(pool: &PgPool, schema: &str) -> Result<(), PostgresError> {
    validate_schema(schema)?;
    let create = format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\"");
    match pool.execute(create.as_str()).await {
        Ok(_) => {}
        // Two sessions that create the same schema at once both pass the IF NOT EXISTS
        // check, and the later one fails on the catalog's unique index. The schema exists
        // either way.
        Err(sqlx::Error::Database(error)) if error.is_unique_violation() => {}
        Err(error) => return Err(PostgresError::query("create schema")(error)),
    }
    MIGRATOR
        .run(pool)
        .await
        .map_err(|source| PostgresError::Migrate {
            schema: schema.to_owned(),
            source,
        })
}

/// Hides a password that an error message might echo back from the URL.
fn redact(message: &str) -> String {
    match (message.find("://"), message.find('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            format!("{}://***{}", &message[..scheme_end], &message[at..])
        }
        _ => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names() {
        assert!(validate_schema("public").is_ok());
        assert!(validate_schema("registry_a1").is_ok());
        assert!(validate_schema("_x").is_ok());
        assert!(validate_schema("").is_err());
        assert!(validate_schema("1abc").is_err());
        assert!(validate_schema("Upper").is_err());
        assert!(validate_schema("a\"; DROP TABLE x; --").is_err());
        assert!(validate_schema(&"a".repeat(64)).is_err());
    }

    #[test]
    fn redact_hides_password() {
        let message = redact("bad url postgres://user:secret@host/db");
        assert!(!message.contains("secret"));
        assert!(message.contains("@host/db"));
    }
}
