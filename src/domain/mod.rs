//! The domain: commands, events and state, with no I/O. Everything here is pure and synchronous;
//! the store appends what `decide` returns and projections apply what `evolve` folds.

pub mod event;
pub mod fields;
pub mod ids;
pub mod owner;
pub mod provider;
pub mod providers;
pub mod time;
pub mod user;

pub use event::DomainEvent;
pub use fields::FieldError;
pub use ids::{CredentialId, ExchangeId, OwnerId, UserId};
pub use provider::{ClientEnvironment, CredentialStatus, Provider};
pub use time::{Clock, SystemClock, Timestamp};
