//! Rate limits: requests per API owner (all its tokens together), and login attempts per client
//! address and per username from each address. Over a limit: 429 with `Retry-After`.

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU32, Ordering};

use super::ApiError;
use crate::config::RateLimits;
use crate::domain::OwnerId;

pub struct Limiters {
    owners: DefaultKeyedRateLimiter<OwnerId>,
    /// Per client address and username: one address guessing one owner's password is slowed
    /// down without locking the owner out from anywhere else.
    logins: DefaultKeyedRateLimiter<(IpAddr, String)>,
    /// Per client address, whatever the username: a spray over many usernames is slowed too.
    clients: DefaultKeyedRateLimiter<IpAddr>,
    /// Login checks since the limiters last forgot idle keys.
    since_cleanup: AtomicU32,
}

/// Login checks between two passes that drop the keys of clients that have gone quiet (their
/// memory would otherwise grow with every address and username ever tried).
const CLEANUP_EVERY: u32 = 4096;

fn at_least_one(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n.max(1)).unwrap_or(NonZeroU32::MIN)
}

fn too_many(wait: std::time::Duration, what: &str) -> ApiError {
    ApiError::TooManyRequests {
        retry_after_secs: wait.as_secs().max(1),
        what: what.to_owned(),
    }
}

impl Limiters {
    pub fn new(limits: RateLimits) -> Self {
        let owners = Quota::per_second(at_least_one(limits.owner_per_second))
            .allow_burst(at_least_one(limits.owner_burst));
        let logins = Quota::per_minute(at_least_one(limits.logins_per_minute));
        let clients = Quota::per_minute(at_least_one(limits.logins_per_client_per_minute));
        Self {
            owners: DefaultKeyedRateLimiter::keyed(owners),
            logins: DefaultKeyedRateLimiter::keyed(logins),
            clients: DefaultKeyedRateLimiter::keyed(clients),
            since_cleanup: AtomicU32::new(0),
        }
    }

    pub fn check_owner(&self, owner: OwnerId) -> Result<(), ApiError> {
        self.owners.check_key(&owner).map_err(|not_until| {
            too_many(
                not_until.wait_time_from(DefaultClock::default().now()),
                "requests",
            )
        })
    }

    /// Counts a login attempt from `client` for `username`: the address's own limit first (so
    /// a refused spray adds no key per username), then the address's limit for that username.
    pub fn check_login(&self, client: IpAddr, username: &str) -> Result<(), ApiError> {
        if self.since_cleanup.fetch_add(1, Ordering::Relaxed) >= CLEANUP_EVERY {
            self.since_cleanup.store(0, Ordering::Relaxed);
            self.logins.retain_recent();
            self.logins.shrink_to_fit();
            self.clients.retain_recent();
            self.clients.shrink_to_fit();
        }
        let refused = |not_until: governor::NotUntil<_>| {
            too_many(
                not_until.wait_time_from(DefaultClock::default().now()),
                "login attempts",
            )
        };
        self.clients.check_key(&client).map_err(refused)?;
        // At most this much of a username is kept as a key.
        let name: String = username
            .chars()
            .take(256)
            .collect::<String>()
            .to_lowercase();
        self.logins.check_key(&(client, name)).map_err(refused)
    }
}
