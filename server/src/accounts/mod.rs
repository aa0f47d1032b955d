//! Account rules: sign-up, sign-in, sessions, profiles. No actix types here; handlers in `api/`
//! translate HTTP to these calls.

mod service;
pub mod validate;

pub use service::{Accounts, IssuedTokens, UserPage};

use serde::Serialize;
use time::OffsetDateTime;
use ts_rs::TS;
use utoipa::ToSchema;

use crate::db::users::User;

/// What anyone signed in may see of a user.
#[derive(Debug, Clone, Serialize, ToSchema, TS, PartialEq, Eq)]
pub struct UserView {
    pub id: i64,
    pub username: String,
    pub display_name: String,
    #[ts(type = "string")]
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

impl From<&User> for UserView {
    fn from(user: &User) -> Self {
        Self {
            id: user.id,
            username: user.username.clone(),
            display_name: user.display_name.clone(),
            created_at: user.created_at.assume_utc(),
        }
    }
}
