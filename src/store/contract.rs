//! The contract every storage backend keeps, as tests over the [`Store`] traits alone.
//! `store_contract!(open)` writes one `#[tokio::test]` per check into the module that invokes
//! it, each on a fresh store from `open()` (which returns whatever must live as long as the
//! store, e.g. its temporary directory, and the store; or `None` when the backend is not
//! available, which the opener reports). The SQLite store runs them in
//! `store::sqlite::tests`; another backend passes when it runs them unchanged.

use serde_json::{json, Map, Value};
use std::sync::Arc;

use super::{
    ExchangeContent, RecordedEvent, SharedStore, SideWrites, Store, StoreError, StreamAppend,
    UserQuery, WrappedKey,
};
use crate::domain::event::{ExchangeMeta, UserProfile};
use crate::domain::{
    CredentialId, CredentialStatus, DomainEvent, ExchangeId, OwnerId, Provider, Timestamp, UserId,
};

/// Writes the contract's tests, each over `$open()`.
macro_rules! store_contract {
    ($open:expr) => {
        store_contract!(@tests $open;
            appends_at_the_expected_version_and_refuses_a_stale_one,
            an_append_to_several_streams_is_all_or_nothing,
            concurrent_appends_at_one_version_leave_exactly_one_winner,
            a_stream_reads_in_version_order_from_after_a_version,
            owners_and_tokens_are_found_by_name_and_unexpired_hash,
            users_and_credentials_are_read_only_by_their_owner,
            the_user_list_pages_and_filters_oldest_first,
            new_and_requested_credentials_are_due_and_checked_ones_wait,
            exchanges_show_newest_first_and_old_ones_are_purged,
            rewrapping_replaces_every_data_key,
            a_rebuild_reproduces_every_view,
        );
    };
    (@tests $open:expr; $($name:ident),* $(,)?) => {$(
        #[tokio::test]
        async fn $name() {
            // `None`: the backend is not available here, and its opener has said so.
            let Some((_guard, store)) = $open else { return };
            $crate::store::contract::$name(store).await;
        }
    )*};
}

fn at(text: &str) -> Timestamp {
    Timestamp::parse(text).expect("a test timestamp")
}

fn t0() -> Timestamp {
    at("2026-11-01T00:00:00Z")
}

async fn append(
    store: &dyn Store,
    stream: &str,
    expected_version: u64,
    owner_id: Option<OwnerId>,
    events: Vec<DomainEvent>,
) -> Result<Vec<RecordedEvent>, StoreError> {
    let append = StreamAppend {
        stream_id: stream.to_owned(),
        expected_version,
        owner_id,
        events,
    };
    store
        .append(vec![append], SideWrites::default(), t0())
        .await
}

fn token(owner_id: OwnerId, hash: &str, expires_at: Timestamp) -> DomainEvent {
    DomainEvent::OwnerTokenIssued {
        owner_id,
        token_hash: hash.to_owned(),
        expires_at,
    }
}

/// An owner `name`, stored; its id.
async fn owner(store: &dyn Store, name: &str) -> OwnerId {
    let owner_id = OwnerId::new();
    let created = DomainEvent::OwnerCreated {
        owner_id,
        username: name.to_owned(),
        password_hash: format!("hash of {name}"),
        created_at: t0(),
    };
    append(
        store,
        &format!("owner:{name}"),
        0,
        Some(owner_id),
        vec![created],
    )
    .await
    .expect("owner appended");
    owner_id
}

fn fields(refresh: &str) -> Map<String, Value> {
    let fields = json!({"clientId": "id", "clientSecret": "secret", "refreshToken": refresh});
    fields.as_object().cloned().unwrap_or_default()
}

fn data_key(credential_id: CredentialId) -> WrappedKey {
    WrappedKey {
        credential_id,
        key_id: "k1".into(),
        wrapped: credential_id.0.as_bytes().to_vec(),
    }
}

/// A user of `owner` with a Raven credential, created at `created_at`; their ids.
async fn user_with_raven(
    store: &dyn Store,
    owner_id: OwnerId,
    profile: UserProfile,
    created_at: Timestamp,
) -> (UserId, CredentialId) {
    let (user_id, credential_id) = (UserId::new(), CredentialId::new());
    let events = vec![
        DomainEvent::UserCreated {
            user_id,
            owner_id,
            profile,
            created_at,
        },
        DomainEvent::CredentialCreated {
            user_id,
            credential_id,
            provider: Provider::Raven,
            fields: fields("r1"),
            created_at,
        },
    ];
    let append = StreamAppend {
        stream_id: format!("user:{user_id}"),
        expected_version: 0,
        owner_id: Some(owner_id),
        events,
    };
    let side = SideWrites {
        data_keys: vec![data_key(credential_id)],
        ..SideWrites::default()
    };
    store
        .append(vec![append], side, created_at)
        .await
        .expect("user appended");
    (user_id, credential_id)
}

/// Records one exchange of the credential at `recorded_at`, at the log's version `version`.
async fn exchange(
    store: &dyn Store,
    (owner_id, user_id, credential_id): (OwnerId, UserId, CredentialId),
    version: u64,
    status_code: u16,
    recorded_at: Timestamp,
) -> ExchangeId {
    let exchange_id = ExchangeId::new();
    let meta = ExchangeMeta {
        exchange_id,
        user_id,
        credential_id,
        provider: Provider::Raven,
        request_method: "POST".into(),
        request_url: "http://127.0.0.1:9/token".into(),
        status_code,
        recorded_at,
    };
    let append = StreamAppend {
        stream_id: format!("exchanges:{credential_id}"),
        expected_version: version,
        owner_id: Some(owner_id),
        events: vec![DomainEvent::ProviderExchangeRecorded { exchange: meta }],
    };
    let side = SideWrites {
        contents: vec![ExchangeContent {
            exchange_id,
            credential_id,
            recorded_at,
            headers: "{}".into(),
            body: format!("answer {status_code}"),
        }],
        ..SideWrites::default()
    };
    store
        .append(vec![append], side, recorded_at)
        .await
        .expect("exchange appended");
    exchange_id
}

fn positions(events: &[RecordedEvent]) -> Vec<i64> {
    events.iter().map(|e| e.position).collect()
}

pub async fn appends_at_the_expected_version_and_refuses_a_stale_one(store: SharedStore) {
    let owner_id = OwnerId::new();
    let first = append(
        &*store,
        "s",
        0,
        Some(owner_id),
        vec![token(owner_id, "a", t0())],
    )
    .await
    .unwrap();
    assert_eq!((first[0].position, first[0].version), (1, 1));
    assert_eq!(first[0].stream_id, "s");
    assert_eq!(first[0].owner_id, Some(owner_id));
    let stale = append(
        &*store,
        "s",
        0,
        Some(owner_id),
        vec![token(owner_id, "b", t0())],
    )
    .await;
    assert!(
        matches!(&stale, Err(StoreError::Conflict { stream_id }) if stream_id == "s"),
        "{stale:?}"
    );
    let events = vec![token(owner_id, "c", t0()), token(owner_id, "d", t0())];
    let next = append(&*store, "s", 1, Some(owner_id), events)
        .await
        .unwrap();
    assert_eq!(
        positions(&next),
        [2, 3],
        "gap-free: the refused append took no position"
    );
    assert_eq!(store.stream_version("s").await.unwrap(), 3);
    assert_eq!(store.stream_version("none").await.unwrap(), 0);
    // An append of no events only checks the version.
    assert!(append(&*store, "s", 3, None, vec![])
        .await
        .unwrap()
        .is_empty());
    assert!(matches!(
        append(&*store, "s", 2, None, vec![]).await,
        Err(StoreError::Conflict { .. })
    ));
}

pub async fn an_append_to_several_streams_is_all_or_nothing(store: SharedStore) {
    let owner_id = OwnerId::new();
    append(&*store, "a", 0, None, vec![token(owner_id, "a1", t0())])
        .await
        .unwrap();
    let appends = vec![
        StreamAppend {
            stream_id: "b".into(),
            expected_version: 0,
            owner_id: None,
            events: vec![token(owner_id, "b1", t0())],
        },
        StreamAppend {
            stream_id: "a".into(),
            expected_version: 0, // stale: `a` is at 1
            owner_id: None,
            events: vec![token(owner_id, "a2", t0())],
        },
    ];
    let refused = store.append(appends, SideWrites::default(), t0()).await;
    assert!(
        matches!(refused, Err(StoreError::Conflict { .. })),
        "{refused:?}"
    );
    assert!(store.read_stream("b", 0).await.unwrap().is_empty());
    assert_eq!(store.owner_by_token("b1", t0()).await.unwrap(), None);
    let both = vec![
        StreamAppend {
            stream_id: "b".into(),
            expected_version: 0,
            owner_id: None,
            events: vec![token(owner_id, "b1", t0().plus(chrono::Duration::hours(1)))],
        },
        StreamAppend {
            stream_id: "a".into(),
            expected_version: 1,
            owner_id: None,
            events: vec![token(owner_id, "a2", t0())],
        },
    ];
    let recorded = store
        .append(both, SideWrites::default(), t0())
        .await
        .unwrap();
    assert_eq!(positions(&recorded), [2, 3]);
}

pub async fn concurrent_appends_at_one_version_leave_exactly_one_winner(store: SharedStore) {
    let owner_id = OwnerId::new();
    let attempts = (0..20).map(|i| {
        let store = store.clone();
        tokio::spawn(async move {
            append(
                &*store,
                "race",
                0,
                None,
                vec![token(owner_id, &format!("t{i}"), t0())],
            )
            .await
        })
    });
    let mut won = 0;
    for attempt in attempts {
        match attempt.await.unwrap() {
            Ok(_) => won += 1,
            Err(StoreError::Conflict { .. }) => {}
            Err(other) => panic!("{other:?}"),
        }
    }
    assert_eq!(won, 1);
    let stream = store.read_stream("race", 0).await.unwrap();
    assert_eq!((stream.len(), stream[0].position), (1, 1));
}

pub async fn a_stream_reads_in_version_order_from_after_a_version(store: SharedStore) {
    let owner_id = OwnerId::new();
    for (version, other) in [(0, "x"), (1, "y"), (2, "z")] {
        append(
            &*store,
            "s",
            version,
            None,
            vec![token(owner_id, other, t0())],
        )
        .await
        .unwrap();
        append(
            &*store,
            other,
            0,
            None,
            vec![token(owner_id, &format!("{other}!"), t0())],
        )
        .await
        .unwrap();
    }
    let all = store.read_stream("s", 0).await.unwrap();
    assert_eq!(all.iter().map(|e| e.version).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(positions(&all), [1, 3, 5]);
    assert_eq!(all[1].event, token(owner_id, "y", t0()));
    assert_eq!(all[1].recorded_at, t0());
    let after = store.read_stream("s", 2).await.unwrap();
    assert_eq!(after, all[2..]);
    assert!(store.read_stream("s", 3).await.unwrap().is_empty());
}

pub async fn owners_and_tokens_are_found_by_name_and_unexpired_hash(store: SharedStore) {
    assert_eq!(store.count_owners().await.unwrap(), 0);
    let alice = owner(&*store, "alice").await;
    owner(&*store, "bob").await;
    assert_eq!(store.count_owners().await.unwrap(), 2);
    let found = store.owner_by_username("alice").await.unwrap().unwrap();
    assert_eq!((found.id, found.username.as_str()), (alice, "alice"));
    assert_eq!(found.password_hash, "hash of alice");
    assert_eq!(store.owner_by_username("carol").await.unwrap(), None);
    let expires = t0().plus(chrono::Duration::hours(24));
    append(
        &*store,
        "token:h",
        0,
        Some(alice),
        vec![token(alice, "h", expires)],
    )
    .await
    .unwrap();
    assert_eq!(
        store.owner_by_token("h", t0()).await.unwrap(),
        Some((alice, expires))
    );
    assert_eq!(
        store.owner_by_token("h", expires).await.unwrap(),
        None,
        "expired"
    );
    assert_eq!(store.owner_by_token("other", t0()).await.unwrap(), None);
}

pub async fn users_and_credentials_are_read_only_by_their_owner(store: SharedStore) {
    let (alice, bob) = (owner(&*store, "alice").await, owner(&*store, "bob").await);
    let profile = UserProfile {
        name: Some("Jane".into()),
        ..UserProfile::default()
    };
    let (user, credential) = user_with_raven(&*store, alice, profile.clone(), t0()).await;
    let view = store.user(alice, user).await.unwrap().unwrap();
    assert_eq!(
        (view.id, &view.profile, view.created_at),
        (user, &profile, t0())
    );
    assert_eq!(view.credentials.len(), 1);
    let raven = store
        .credential(alice, user, Provider::Raven)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(view.credentials[0], raven);
    assert_eq!(
        (raven.id, raven.user_id, raven.provider),
        (credential, user, Provider::Raven)
    );
    assert_eq!(
        (raven.status, raven.created_at),
        (CredentialStatus::Ok, t0())
    );
    assert_eq!(raven.fields, fields("r1"));
    assert_eq!(raven.data_key, Some(data_key(credential)));
    assert_eq!(
        store
            .credential(alice, user, Provider::JohnDeere)
            .await
            .unwrap(),
        None
    );
    // Another owner's ids read as missing.
    assert_eq!(store.user(bob, user).await.unwrap(), None);
    assert_eq!(
        store.credential(bob, user, Provider::Raven).await.unwrap(),
        None
    );
    let since = t0().minus(chrono::Duration::days(1));
    assert_eq!(
        store
            .exchanges(bob, user, Provider::Raven, since)
            .await
            .unwrap(),
        None
    );
    let everyone = UserQuery {
        size: 10,
        ..UserQuery::default()
    };
    assert_eq!(store.users(bob, everyone).await.unwrap(), (vec![], 0));

    // A status change, a replacement (its data key goes with the old credential), a deletion.
    let changed = DomainEvent::CredentialStatusChanged {
        user_id: user,
        credential_id: credential,
        provider: Provider::Raven,
        status: CredentialStatus::Unauthenticated,
        reason: Some("invalid_grant".into()),
    };
    append(
        &*store,
        &format!("user:{user}"),
        2,
        Some(alice),
        vec![changed],
    )
    .await
    .unwrap();
    let raven = store
        .credential(alice, user, Provider::Raven)
        .await
        .unwrap();
    assert_eq!(
        raven.map(|c| c.status),
        Some(CredentialStatus::Unauthenticated)
    );
    let replacement = CredentialId::new();
    let replaced = DomainEvent::CredentialReplaced {
        user_id: user,
        replaced_credential_id: credential,
        credential_id: replacement,
        provider: Provider::Raven,
        fields: fields("r2"),
        created_at: t0(),
    };
    let append_replace = StreamAppend {
        stream_id: format!("user:{user}"),
        expected_version: 3,
        owner_id: Some(alice),
        events: vec![replaced],
    };
    let side = SideWrites {
        data_keys: vec![data_key(replacement)],
        ..SideWrites::default()
    };
    store
        .append(vec![append_replace], side, t0())
        .await
        .unwrap();
    let raven = store
        .credential(alice, user, Provider::Raven)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (raven.id, raven.status),
        (replacement, CredentialStatus::Ok)
    );
    assert_eq!(raven.fields, fields("r2"));
    let deleted = DomainEvent::UserDeleted { user_id: user };
    append(
        &*store,
        &format!("user:{user}"),
        4,
        Some(alice),
        vec![deleted],
    )
    .await
    .unwrap();
    assert_eq!(store.user(alice, user).await.unwrap(), None);
    assert_eq!(
        store
            .credential(alice, user, Provider::Raven)
            .await
            .unwrap(),
        None
    );
}

pub async fn the_user_list_pages_and_filters_oldest_first(store: SharedStore) {
    let alice = owner(&*store, "alice").await;
    let mut users = Vec::new();
    for i in 0..5 {
        let profile = UserProfile {
            name: Some(format!("user {i}")),
            email: Some(
                if i % 2 == 0 {
                    "even@example.com"
                } else {
                    "odd@example.com"
                }
                .into(),
            ),
            ..UserProfile::default()
        };
        let created = t0().plus(chrono::Duration::minutes(i));
        users.push(user_with_raven(&*store, alice, profile, created).await.0);
    }
    let page = |page, size, email: Option<&str>| UserQuery {
        email: email.map(str::to_owned),
        page,
        size,
        ..UserQuery::default()
    };
    let ids = |found: (Vec<super::UserView>, u64)| {
        (found.0.iter().map(|u| u.id).collect::<Vec<_>>(), found.1)
    };
    assert_eq!(
        ids(store.users(alice, page(0, 2, None)).await.unwrap()),
        (users[..2].to_vec(), 5)
    );
    assert_eq!(
        ids(store.users(alice, page(2, 2, None)).await.unwrap()),
        (users[4..].to_vec(), 5)
    );
    assert_eq!(
        ids(store.users(alice, page(3, 2, None)).await.unwrap()),
        (vec![], 5)
    );
    let even = store
        .users(alice, page(0, 10, Some("even@example.com")))
        .await
        .unwrap();
    assert_eq!(ids(even.clone()), (vec![users[0], users[2], users[4]], 3));
    assert!(
        even.0.iter().all(|u| u.credentials.len() == 1),
        "with their credentials"
    );
    let named = UserQuery {
        name: Some("user 3".into()),
        size: 10,
        ..UserQuery::default()
    };
    assert_eq!(
        ids(store.users(alice, named).await.unwrap()),
        (vec![users[3]], 1)
    );
    // Sorted by email (odd before even) descending, then by name descending.
    let sorted = UserQuery {
        sort: vec![
            super::SortBy {
                key: super::UserSortKey::Email,
                descending: true,
            },
            super::SortBy {
                key: super::UserSortKey::Name,
                descending: true,
            },
        ],
        size: 10,
        ..UserQuery::default()
    };
    assert_eq!(
        ids(store.users(alice, sorted).await.unwrap()),
        (vec![users[3], users[1], users[4], users[2], users[0]], 5)
    );
}

pub async fn new_and_requested_credentials_are_due_and_checked_ones_wait(store: SharedStore) {
    let alice = owner(&*store, "alice").await;
    let (user, credential) = user_with_raven(&*store, alice, UserProfile::default(), t0()).await;
    let later = t0().plus(chrono::Duration::hours(1));
    let due = store.due_checks(t0(), Provider::ALL, 10).await.unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(
        (due[0].owner_id, due[0].credential.id, due[0].next_check_at),
        (alice, credential, t0())
    );
    assert!(store
        .due_checks(t0(), &[Provider::JohnDeere], 10)
        .await
        .unwrap()
        .is_empty());
    assert!(
        store
            .due_checks(t0(), Provider::ALL, 0)
            .await
            .unwrap()
            .is_empty(),
        "limit"
    );
    let never = store
        .credential(alice, user, Provider::Raven)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((never.last_checked_at, never.status_reason), (None, None));
    let checked = DomainEvent::CredentialChecked {
        user_id: user,
        credential_id: credential,
        provider: Provider::Raven,
        next_check_at: Some(later),
        consecutive_failures: 0,
        reason: Some("fresh tokens".into()),
    };
    let recorded = append(
        &*store,
        &format!("user:{user}"),
        2,
        Some(alice),
        vec![checked],
    )
    .await
    .unwrap();
    let shown = store
        .credential(alice, user, Provider::Raven)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (shown.last_checked_at, shown.status_reason.as_deref()),
        (Some(recorded[0].recorded_at), Some("fresh tokens")),
        "a check shows when it was recorded, and why"
    );
    assert!(store
        .due_checks(t0(), Provider::ALL, 10)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        store
            .due_checks(later, Provider::ALL, 10)
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        store
            .due_check(credential)
            .await
            .unwrap()
            .map(|d| d.next_check_at),
        Some(later)
    );
    let requested = DomainEvent::CredentialCheckRequested {
        user_id: user,
        credential_id: credential,
        provider: Provider::Raven,
        at: t0(),
    };
    append(
        &*store,
        &format!("user:{user}"),
        3,
        Some(alice),
        vec![requested],
    )
    .await
    .unwrap();
    assert_eq!(
        store
            .due_checks(t0(), Provider::ALL, 10)
            .await
            .unwrap()
            .len(),
        1
    );
    let parked = DomainEvent::CredentialChecked {
        user_id: user,
        credential_id: credential,
        provider: Provider::Raven,
        next_check_at: None,
        consecutive_failures: 0,
        reason: None,
    };
    append(
        &*store,
        &format!("user:{user}"),
        4,
        Some(alice),
        vec![parked],
    )
    .await
    .unwrap();
    let shown = store
        .credential(alice, user, Provider::Raven)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        shown.status_reason.as_deref(),
        Some("fresh tokens"),
        "a check without a reason (an older event) keeps the last one"
    );
    assert_eq!(
        store.due_check(credential).await.unwrap(),
        None,
        "not scheduled"
    );
    assert!(store
        .due_checks(later, Provider::ALL, 10)
        .await
        .unwrap()
        .is_empty());
}

pub async fn exchanges_show_newest_first_and_old_ones_are_purged(store: SharedStore) {
    let alice = owner(&*store, "alice").await;
    let (user, credential) = user_with_raven(&*store, alice, UserProfile::default(), t0()).await;
    let ids = (alice, user, credential);
    let old = exchange(&*store, ids, 0, 200, t0()).await;
    let newer = t0().plus(chrono::Duration::days(10));
    let new = exchange(&*store, ids, 1, 401, newer).await;
    let since = t0().minus(chrono::Duration::days(1));
    let shown = store
        .exchanges(alice, user, Provider::Raven, since)
        .await
        .unwrap()
        .unwrap();
    let summary: Vec<_> = shown
        .iter()
        .map(|x| (x.id, x.status_code, x.recorded_at))
        .collect();
    assert_eq!(summary, [(new, 401, newer), (old, 200, t0())]);
    assert_eq!(
        (shown[0].headers.as_str(), shown[0].body.as_str()),
        ("{}", "answer 401")
    );
    let only_new = store
        .exchanges(alice, user, Provider::Raven, newer)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(only_new.len(), 1);
    assert_eq!(store.purge_exchanges(newer).await.unwrap(), 1);
    let kept = store
        .exchanges(alice, user, Provider::Raven, since)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(kept.iter().map(|x| x.id).collect::<Vec<_>>(), [new]);
    // The ledger keeps both events.
    assert_eq!(
        store
            .read_stream(&format!("exchanges:{credential}"), 0)
            .await
            .unwrap()
            .len(),
        2
    );
}

pub async fn rewrapping_replaces_every_data_key(store: SharedStore) {
    let alice = owner(&*store, "alice").await;
    assert_eq!(store.data_key_ids().await.unwrap(), Vec::<String>::new());
    let (user, credential) = user_with_raven(&*store, alice, UserProfile::default(), t0()).await;
    assert_eq!(store.data_key_ids().await.unwrap(), ["k1"]);
    let rewrapped = store
        .rewrap_keys(Box::new(|old| {
            Ok(WrappedKey {
                key_id: "k2".into(),
                wrapped: old.wrapped.iter().rev().copied().collect(),
                ..old.clone()
            })
        }))
        .await
        .unwrap();
    assert_eq!(rewrapped, 1);
    let raven = store
        .credential(alice, user, Provider::Raven)
        .await
        .unwrap()
        .unwrap();
    let key = raven.data_key.unwrap();
    assert_eq!(key.key_id, "k2");
    assert_eq!(
        key.wrapped,
        data_key(credential)
            .wrapped
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
    );
    let failed = store
        .rewrap_keys(Box::new(|_| Err("the old master key is gone".into())))
        .await;
    assert!(failed.is_err());
    let unchanged = store
        .credential(alice, user, Provider::Raven)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(unchanged.data_key.unwrap().key_id, "k2", "all or none");
    assert_eq!(
        store.data_key_ids().await.unwrap(),
        ["k2"],
        "the master keys in use"
    );
}

/// Everything the read model shows of `owners`, for comparing two of its states.
async fn everything(store: &dyn Store, owners: &[(OwnerId, &str)]) -> Vec<String> {
    let far = t0().plus(chrono::Duration::days(3650));
    let since = t0().minus(chrono::Duration::days(3650));
    let mut seen = vec![format!("{} owners", store.count_owners().await.unwrap())];
    for (owner_id, name) in owners {
        seen.push(format!(
            "{:?}",
            store.owner_by_username(name).await.unwrap()
        ));
        let all = UserQuery {
            size: 1000,
            ..UserQuery::default()
        };
        let (users, total) = store.users(*owner_id, all).await.unwrap();
        seen.push(format!("{total} users: {users:?}"));
        for user in &users {
            for provider in Provider::ALL {
                let exchanges = store.exchanges(*owner_id, user.id, *provider, since).await;
                seen.push(format!("{:?}", exchanges.unwrap()));
            }
        }
    }
    let due = store.due_checks(far, Provider::ALL, 1000).await.unwrap();
    seen.push(format!("due: {due:?}"));
    seen.push(format!(
        "{:?}",
        store.owner_by_token("h", t0()).await.unwrap()
    ));
    seen
}

pub async fn a_rebuild_reproduces_every_view(store: SharedStore) {
    let alice = owner(&*store, "alice").await;
    let bob = owner(&*store, "bob").await;
    append(
        &*store,
        "token:h",
        0,
        Some(bob),
        vec![token(bob, "h", t0().plus(chrono::Duration::days(1)))],
    )
    .await
    .unwrap();
    let mut credentials = Vec::new();
    for (i, owner_id) in [alice, alice, bob].into_iter().enumerate() {
        let profile = UserProfile {
            external_id: Some(format!("x{i}")),
            ..UserProfile::default()
        };
        let created = t0().plus(chrono::Duration::minutes(i as i64));
        let (user, credential) = user_with_raven(&*store, owner_id, profile, created).await;
        credentials.push((owner_id, user, credential));
    }
    let (owner_id, user, credential) = credentials[0];
    exchange(&*store, (owner_id, user, credential), 0, 200, t0()).await;
    let events = vec![
        DomainEvent::UserUpdated {
            user_id: user,
            profile: UserProfile {
                name: Some("renamed".into()),
                ..UserProfile::default()
            },
        },
        DomainEvent::CredentialChecked {
            user_id: user,
            credential_id: credential,
            provider: Provider::Raven,
            next_check_at: Some(t0().plus(chrono::Duration::hours(2))),
            consecutive_failures: 1,
            reason: Some("the provider answered 503".into()),
        },
    ];
    append(&*store, &format!("user:{user}"), 2, Some(owner_id), events)
        .await
        .unwrap();
    let (owner_id, user, credential) = credentials[1];
    let gone = DomainEvent::CredentialDeleted {
        user_id: user,
        credential_id: credential,
        provider: Provider::Raven,
    };
    append(
        &*store,
        &format!("user:{user}"),
        2,
        Some(owner_id),
        vec![gone],
    )
    .await
    .unwrap();
    let owners = [(alice, "alice"), (bob, "bob")];
    let before = everything(&*store, &owners).await;
    let progress = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = progress.clone();
    let replayed = store
        .rebuild(Box::new(move |done, total| {
            seen.lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((done, total))
        }))
        .await
        .unwrap();
    assert_eq!(replayed, 13);
    let last = progress
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .last()
        .copied();
    assert_eq!(last, Some((13, 13)), "progress ends at the total");
    assert_eq!(everything(&*store, &owners).await, before);
}
