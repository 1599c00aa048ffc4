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

/// A node that hangs inside a transaction (holding the head lock, say) loses its session after
/// 30 s, so the other nodes' writes wait no longer than that.
#[tokio::test]
async fn a_session_idle_in_a_transaction_is_ended_after_30_seconds() {
    let Some(store) = open_store().await else {
        return;
    };
    let client = store.pool.get().await.unwrap();
    let timeout: String = client
        .query_one("SHOW idle_in_transaction_session_timeout", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(timeout, "30s");
}

/// Positions are handed out in commit order: a reader following the ledger by position, while
/// three writers append, only ever sees a contiguous run after what it has read (a reader that
/// saw N + 2 before N + 1 would skip N + 1 for good).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reader_following_positions_never_sees_a_gap_while_writers_append() {
    use crate::domain::{DomainEvent, OwnerId};
    use crate::store::{SideWrites, StreamAppend};
    let Some(store) = open_store().await else {
        return;
    };
    let at = Timestamp::parse("2026-11-01T00:00:00Z").unwrap();
    let writers: Vec<_> = (0..3)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in 0..150 {
                    let owner_id = OwnerId::new();
                    let append = StreamAppend {
                        stream_id: format!("w{w}-{i}"),
                        expected_version: 0,
                        owner_id: Some(owner_id),
                        events: vec![DomainEvent::OwnerTokenIssued {
                            owner_id,
                            token_hash: format!("w{w}-{i}"),
                            expires_at: at,
                        }],
                    };
                    store
                        .append(vec![append], SideWrites::default(), at)
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    let client = store.pool.get().await.unwrap();
    let mut seen = 0i64;
    let mut reads = 0;
    while seen < 450 {
        let rows = client
            .query(
                "SELECT position FROM events WHERE position > $1 ORDER BY position",
                &[&seen],
            )
            .await
            .unwrap();
        for row in rows {
            let position: i64 = row.get(0);
            assert_eq!(position, seen + 1, "the reader saw {position} after {seen}");
            seen = position;
        }
        reads += 1;
        assert!(reads < 100_000, "the writers stalled at {seen}");
    }
    for writer in writers {
        writer.await.unwrap();
    }
    assert!(reads > 1, "the reader followed the writes ({reads} reads)");
}

/// A rebuild builds beside the live views: appends go on while it replays (only the cut-over
/// holds them), and the views it swaps in hold every event, those appended meanwhile too.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rebuild_lets_appends_go_on_and_misses_none_of_them() {
    use crate::domain::{DomainEvent, OwnerId};
    use crate::store::{ReadModel, SideWrites, StreamAppend};
    let Some(store) = open_store().await else {
        return;
    };
    let at = Timestamp::parse("2026-11-01T00:00:00Z").unwrap();
    let later = Timestamp::parse("2030-01-01T00:00:00Z").unwrap();
    let token = move |n: usize| {
        let owner_id = OwnerId::new();
        StreamAppend {
            stream_id: format!("token-{n}"),
            expected_version: 0,
            owner_id: Some(owner_id),
            events: vec![DomainEvent::OwnerTokenIssued {
                owner_id,
                token_hash: format!("hash-{n}"),
                expires_at: later,
            }],
        }
    };
    // A ledger worth replaying, then a writer that keeps appending during the rebuild.
    for n in 0..3000 {
        store
            .append(vec![token(n)], SideWrites::default(), at)
            .await
            .unwrap();
    }
    let writing = store.clone();
    let writer = tokio::spawn(async move {
        let mut n = 3000;
        let started = std::time::Instant::now();
        while started.elapsed() < std::time::Duration::from_millis(1500) {
            writing
                .append(vec![token(n)], SideWrites::default(), at)
                .await
                .unwrap();
            n += 1;
        }
        n
    });
    let before = store.commits();
    let progress: crate::store::Progress = Box::new(|_, _| {});
    let head = store.rebuild(progress).await.unwrap();
    let during = store.commits() - before;
    let written = writer.await.unwrap();
    assert!(during > 0, "appends went on during the rebuild");
    assert!(head >= 3000);
    for n in (0..written).step_by(97).chain([written - 1]) {
        assert!(
            store
                .owner_by_token(&format!("hash-{n}"), at)
                .await
                .unwrap()
                .is_some(),
            "token {n} of {written} is in the rebuilt views"
        );
    }
}

/// Two stores on one fresh schema, as two nodes on one database.
async fn open_pair() -> Option<(Arc<PostgresStore>, Arc<PostgresStore>)> {
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
    let first = PostgresStore::open_config(config.clone()).await.unwrap();
    let second = PostgresStore::open_config(config).await.unwrap();
    Some((Arc::new(first), Arc::new(second)))
}

/// A check's result is recorded only while its node leads: when the leader's session ends
/// (its connection reset, a failover) and another node takes over, a late result written
/// under the old fence is refused, and the new leader's is taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_under_an_old_fence_is_refused_once_another_node_leads() {
    use crate::domain::{DomainEvent, OwnerId};
    use crate::store::{SideWrites, StreamAppend};
    let Some((a, b)) = open_pair().await else {
        return;
    };
    let at = Timestamp::parse("2026-11-01T00:00:00Z").unwrap();
    let fenced = |stream: &str, fence: u64| {
        let owner_id = OwnerId::new();
        let append = StreamAppend {
            stream_id: stream.to_owned(),
            expected_version: 0,
            owner_id: Some(owner_id),
            events: vec![DomainEvent::OwnerTokenIssued {
                owner_id,
                token_hash: stream.to_owned(),
                expires_at: at,
            }],
        };
        let side = SideWrites {
            leader_fence: Some(fence),
            ..SideWrites::default()
        };
        (vec![append], side)
    };
    let first = a.lead().await.unwrap().expect("the first node leads");
    assert_eq!(b.lead().await.unwrap(), None, "one leader at a time");
    let (append, side) = fenced("first", first);
    a.append(append, side, at).await.unwrap();

    // The leader's session ends; the other node takes over at its next try.
    let admin = a.pool.get().await.unwrap();
    admin
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_locks
             WHERE locktype = 'advisory' AND granted
               AND classid::bigint = $1 AND objid::bigint = $2",
            &[&(LEADER_LOCK >> 32), &(LEADER_LOCK & 0xffff_ffff)],
        )
        .await
        .unwrap();
    let mut second = None;
    for _ in 0..100 {
        second = b.lead().await.unwrap();
        if second.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let second = second.expect("the other node took over");
    assert!(second > first, "a new leadership, a new fence");
    assert_eq!(
        a.lead().await.unwrap(),
        None,
        "the old leader does not lead again"
    );

    let (append, side) = fenced("late", first);
    assert!(
        matches!(a.append(append, side, at).await, Err(StoreError::Fenced)),
        "the old leader's late result is refused"
    );
    assert_eq!(
        a.stream_version("late").await.unwrap(),
        0,
        "and nothing of it written"
    );
    let (append, side) = fenced("taken", second);
    b.append(append, side, at).await.unwrap();
}
