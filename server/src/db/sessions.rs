//! Sessions and their refresh tokens. A session is one sign-in; each refresh rotates its token,
//! and presenting a used token again revokes the whole session (reuse detection).

use diesel::prelude::*;
use time::PrimitiveDateTime;

use super::DbConnection;
use super::schema::{refresh_tokens, sessions, users};

fn insert_token(
    conn: &mut DbConnection,
    session_id: i64,
    token_hash: &str,
    now: PrimitiveDateTime,
) -> QueryResult<usize> {
    diesel::insert_into(refresh_tokens::table)
        .values((
            refresh_tokens::session_id.eq(session_id),
            refresh_tokens::token_hash.eq(token_hash),
            refresh_tokens::created_at.eq(now),
        ))
        .execute(conn)
}

/// Opens a session for `user_id` with its first refresh token; returns the session id.
pub fn create(
    conn: &mut DbConnection,
    user_id: i64,
    token_hash: &str,
    now: PrimitiveDateTime,
    expires_at: PrimitiveDateTime,
) -> QueryResult<i64> {
    super::write_transaction(conn, |conn| {
        diesel::insert_into(sessions::table)
            .values((
                sessions::user_id.eq(user_id),
                sessions::created_at.eq(now),
                sessions::expires_at.eq(expires_at),
            ))
            .execute(conn)?;
        let session_id = super::last_insert_id(conn)?;
        insert_token(conn, session_id, token_hash, now)?;
        Ok(session_id)
    })
}

/// The user name of a live session belonging to `user_id`, if it is live.
pub fn active_session_user(
    conn: &mut DbConnection,
    session_id: i64,
    user_id: i64,
) -> QueryResult<Option<String>> {
    sessions::table
        .inner_join(users::table)
        .filter(sessions::id.eq(session_id))
        .filter(users::id.eq(user_id))
        .filter(sessions::revoked_at.is_null())
        .filter(sessions::expires_at.gt(super::now()))
        .filter(users::disabled_at.is_null())
        .select(users::username)
        .first(conn)
        .optional()
}

#[derive(Debug, PartialEq, Eq)]
pub enum Rotation {
    /// The token was current: it is now used, and `new_hash` is the session's token.
    Rotated { user_id: i64, session_id: i64 },
    /// No live session has this token.
    Invalid,
    /// The token had been used already: the session is now revoked.
    Reused { user_id: i64, session_id: i64 },
}

/// Exchanges the refresh token hashed as `presented_hash` for the one hashed as `new_hash`.
pub fn rotate(
    conn: &mut DbConnection,
    presented_hash: &str,
    new_hash: &str,
    now: PrimitiveDateTime,
) -> QueryResult<Rotation> {
    super::write_transaction(conn, |conn| {
        let found = refresh_tokens::table
            .inner_join(sessions::table.inner_join(users::table))
            .filter(refresh_tokens::token_hash.eq(presented_hash))
            .select((
                refresh_tokens::id,
                refresh_tokens::used_at,
                sessions::id,
                sessions::user_id,
                sessions::revoked_at,
                sessions::expires_at,
                users::disabled_at,
            ))
            .first::<(
                i64,
                Option<PrimitiveDateTime>,
                i64,
                i64,
                Option<PrimitiveDateTime>,
                PrimitiveDateTime,
                Option<PrimitiveDateTime>,
            )>(conn)
            .optional()?;
        let Some((token_id, used_at, session_id, user_id, revoked_at, expires_at, disabled_at)) =
            found
        else {
            return Ok(Rotation::Invalid);
        };
        if revoked_at.is_some() || expires_at <= now || disabled_at.is_some() {
            return Ok(Rotation::Invalid);
        }
        if used_at.is_some() {
            revoke(conn, session_id, now)?;
            return Ok(Rotation::Reused {
                user_id,
                session_id,
            });
        }
        // Two requests racing with one token: only one update matches; the other is a reuse.
        let claimed = diesel::update(
            refresh_tokens::table
                .filter(refresh_tokens::id.eq(token_id))
                .filter(refresh_tokens::used_at.is_null()),
        )
        .set(refresh_tokens::used_at.eq(now))
        .execute(conn)?;
        if claimed == 0 {
            revoke(conn, session_id, now)?;
            return Ok(Rotation::Reused {
                user_id,
                session_id,
            });
        }
        insert_token(conn, session_id, new_hash, now)?;
        Ok(Rotation::Rotated {
            user_id,
            session_id,
        })
    })
}

pub fn revoke(
    conn: &mut DbConnection,
    session_id: i64,
    now: PrimitiveDateTime,
) -> QueryResult<usize> {
    diesel::update(
        sessions::table
            .filter(sessions::id.eq(session_id))
            .filter(sessions::revoked_at.is_null()),
    )
    .set(sessions::revoked_at.eq(now))
    .execute(conn)
}

/// Revokes every live session of `user_id` except `keep` (none: all of them); returns the ids
/// it revoked.
pub fn revoke_all(
    conn: &mut DbConnection,
    user_id: i64,
    keep: Option<i64>,
    now: PrimitiveDateTime,
) -> QueryResult<Vec<i64>> {
    let live = sessions::table
        .filter(sessions::user_id.eq(user_id))
        .filter(sessions::id.ne(keep.unwrap_or(0)))
        .filter(sessions::revoked_at.is_null());
    let ids: Vec<i64> = live.select(sessions::id).load(conn)?;
    diesel::update(sessions::table.filter(sessions::id.eq_any(&ids)))
        .set(sessions::revoked_at.eq(now))
        .execute(conn)?;
    Ok(ids)
}

/// Sessions revoked at `since` or later, with their users: (session id, user id).
pub fn revoked_since(
    conn: &mut DbConnection,
    since: PrimitiveDateTime,
) -> QueryResult<Vec<(i64, i64)>> {
    sessions::table
        .filter(sessions::revoked_at.ge(since))
        .select((sessions::id, sessions::user_id))
        .load(conn)
}

/// Of `ids`, the sessions still live: not revoked, not expired, their user there and enabled.
pub fn live_among(
    conn: &mut DbConnection,
    ids: &[i64],
    now: PrimitiveDateTime,
) -> QueryResult<Vec<i64>> {
    sessions::table
        .inner_join(users::table)
        .filter(sessions::id.eq_any(ids))
        .filter(sessions::revoked_at.is_null())
        .filter(sessions::expires_at.gt(now))
        .filter(users::disabled_at.is_null())
        .select(sessions::id)
        .load(conn)
}
