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
    let store = open_store().await?;
    Some(((), store))
}

async fn open_store() -> Option<Arc<PostgresStore>> {
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
    Some(Arc::new(PostgresStore::open_config(config).await.unwrap()))
}

mod contract {
    store_contract!(super::open().await);
}

/// Appends that wait together are committed together, each in a savepoint: a stale one fails
/// alone, the rest commit, and positions stay gap-free.
#[tokio::test]
async fn a_group_commit_undoes_only_the_append_that_failed() {
    use crate::domain::{DomainEvent, OwnerId};
    use crate::store::{SideWrites, StreamAppend};
    let Some(store) = open_store().await else {
        return;
    };
    let at = Timestamp::parse("2026-11-01T00:00:00Z").unwrap();
    let append = move |stream: String| {
        let owner_id = OwnerId::new();
        StreamAppend {
            stream_id: stream,
            expected_version: 0,
            owner_id: Some(owner_id),
            events: vec![DomainEvent::OwnerTokenIssued {
                owner_id,
                token_hash: uuid::Uuid::new_v4().to_string(),
                expires_at: at,
            }],
        }
    };
    let tasks: Vec<_> = (0..40)
        .map(|i| {
            let store = store.clone();
            // Every fourth append races for the same new stream.
            let stream = if i % 4 == 0 {
                "contested".to_owned()
            } else {
                format!("s{i}")
            };
            tokio::spawn(async move {
                store
                    .append(vec![append(stream.clone())], SideWrites::default(), at)
                    .await
                    .map(|recorded| (stream, recorded[0].position))
            })
        })
        .collect();
    let mut won = Vec::new();
    let mut conflicts = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(done) => won.push(done),
            Err(StoreError::Conflict { stream_id }) => {
                assert_eq!(stream_id, "contested");
                conflicts += 1;
            }
            Err(other) => panic!("{other}"),
        }
    }
    assert_eq!(
        (won.len(), conflicts),
        (31, 9),
        "30 distinct streams and one contested winner"
    );
    let mut positions: Vec<i64> = won.iter().map(|(_, p)| *p).collect();
    positions.sort();
    assert_eq!(positions, (1..=31).collect::<Vec<_>>(), "gap-free");
    assert_eq!(store.stream_version("contested").await.unwrap(), 1);
    assert!(
        store.commits() < 40,
        "40 appends waiting together took {} commits",
        store.commits()
    );
}
