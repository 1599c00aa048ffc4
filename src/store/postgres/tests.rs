//! The PostgreSQL store against the contract suite, each test in a schema of its own on the
//! database `CREDENTIAL_LEDGER_TEST_POSTGRES` names (the README's test command starts a
//! throwaway cluster and sets it). Without it the tests say so and pass, except under `CI=true`,
//! where a missing PostgreSQL fails them.

use super::*;
use crate::store::SharedStore;

/// The connection string of the test database, if one is given.
pub fn test_database() -> Option<String> {
    match std::env::var("CREDENTIAL_LEDGER_TEST_POSTGRES") {
        Ok(database) if !database.is_empty() => Some(database),
        _ if std::env::var("CI").is_ok_and(|ci| ci == "true") => {
            panic!("CI=true but CREDENTIAL_LEDGER_TEST_POSTGRES is not set: PostgreSQL tests cannot be skipped in CI")
        }
        _ => {
            eprintln!("CREDENTIAL_LEDGER_TEST_POSTGRES is not set: PostgreSQL test skipped");
            None
        }
    }
}

/// A fresh store in a new schema of the test database.
pub async fn open() -> Option<((), SharedStore)> {
    let database = test_database()?;
    let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
    let mut config = tokio_postgres::Config::from_str(&database).expect("a connection string");
    let (client, connection) = config
        .connect(NoTls)
        .await
        .expect("the test database answers");
    tokio::spawn(connection);
    client
        .batch_execute(&format!("CREATE SCHEMA {schema}"))
        .await
        .unwrap();
    config.options(format!("-c search_path={schema}"));
    let store = PostgresStore::open_config(config).await.unwrap();
    Some(((), Arc::new(store)))
}

mod contract {
    store_contract!(super::open().await);
}
