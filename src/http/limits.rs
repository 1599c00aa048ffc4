//! Rate limits: requests per API owner (all its tokens together) and login attempts per
//! username. Over the limit: 429 with `Retry-After`.

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use std::num::NonZeroU32;

use super::ApiError;
use crate::config::RateLimits;
use crate::domain::OwnerId;

pub struct Limiters {
    owners: DefaultKeyedRateLimiter<OwnerId>,
    logins: DefaultKeyedRateLimiter<String>,
}

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
        Self {
            owners: DefaultKeyedRateLimiter::keyed(owners),
            logins: DefaultKeyedRateLimiter::keyed(logins),
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

    pub fn check_login(&self, username: &str) -> Result<(), ApiError> {
        self.logins
            .check_key(&username.to_lowercase())
            .map_err(|not_until| {
                too_many(
                    not_until.wait_time_from(DefaultClock::default().now()),
                    "login attempts",
                )
            })
    }
}
