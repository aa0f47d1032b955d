//! Queries on `conversations` and `conversation_members`: who belongs where, and how far each
//! member has read.

use std::collections::HashMap;

use diesel::prelude::*;

use super::DbConnection;
use super::schema::{conversation_members as members, conversations};

pub const DIRECT: &str = "direct";
pub const MEMBER: &str = "member";

/// The direct conversation of two users, if they have one.
pub fn find_direct(conn: &mut DbConnection, a: i64, b: i64) -> QueryResult<Option<i64>> {
    conversations::table
        .filter(conversations::direct_low.eq(a.min(b)))
        .filter(conversations::direct_high.eq(a.max(b)))
        .select(conversations::id)
        .first(conn)
        .optional()
}

/// The direct conversation of two users, made (with both as members) if they have none yet.
/// `a` is the one who opens it.
pub fn open_direct(conn: &mut DbConnection, a: i64, b: i64) -> QueryResult<i64> {
    if let Some(id) = find_direct(conn, a, b)? {
        return Ok(id);
    }
    let now = super::now();
    let made = super::write_transaction(conn, |conn| {
        diesel::insert_into(conversations::table)
            .values((
                conversations::kind.eq(DIRECT),
                conversations::direct_low.eq(a.min(b)),
                conversations::direct_high.eq(a.max(b)),
                conversations::created_by.eq(a),
                conversations::created_at.eq(now),
            ))
            .execute(conn)?;
        let id = find_direct(conn, a, b)?.ok_or(diesel::result::Error::NotFound)?;
        let member = |user_id: i64| {
            (
                members::conversation_id.eq(id),
                members::user_id.eq(user_id),
                members::role.eq(MEMBER),
                members::joined_at.eq(now),
                members::joined_seq.eq(0_i64),
                members::last_read_seq.eq(0_i64),
                members::muted.eq(false),
            )
        };
        // Row by row: a multi-row INSERT does not go through the MultiConnection.
        for user_id in [a.min(b), a.max(b)] {
            diesel::insert_into(members::table)
                .values(member(user_id))
                .execute(conn)?;
        }
        Ok(id)
    });
    match made {
        // Opened by someone else at the same moment.
        Err(err) if super::is_unique_violation(&err) => {
            find_direct(conn, a, b)?.ok_or(diesel::result::Error::NotFound)
        }
        other => other,
    }
}

/// The two users of each of these conversations that is direct.
pub fn direct_pairs(conn: &mut DbConnection, ids: &[i64]) -> QueryResult<HashMap<i64, (i64, i64)>> {
    let rows: Vec<(i64, Option<i64>, Option<i64>)> = conversations::table
        .filter(conversations::id.eq_any(ids))
        .select((
            conversations::id,
            conversations::direct_low,
            conversations::direct_high,
        ))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .filter_map(|(id, low, high)| Some((id, (low?, high?))))
        .collect())
}

/// A user's membership of a conversation.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = members)]
pub struct Membership {
    pub conversation_id: i64,
    pub user_id: i64,
    pub last_read_seq: i64,
}

/// The conversations `user_id` belongs to now.
pub fn memberships(conn: &mut DbConnection, user_id: i64) -> QueryResult<Vec<Membership>> {
    members::table
        .filter(members::user_id.eq(user_id))
        .filter(members::left_seq.is_null())
        .select(Membership::as_select())
        .load(conn)
}

/// Every current member of these conversations.
pub fn members_of(conn: &mut DbConnection, ids: &[i64]) -> QueryResult<Vec<Membership>> {
    members::table
        .filter(members::conversation_id.eq_any(ids))
        .filter(members::left_seq.is_null())
        .select(Membership::as_select())
        .load(conn)
}

/// Everyone who shares a conversation with `user_id`.
pub fn peers(conn: &mut DbConnection, user_id: i64) -> QueryResult<Vec<i64>> {
    let (mine, theirs) = diesel::alias!(members as mine, members as theirs);
    theirs
        .inner_join(
            mine.on(mine
                .field(members::conversation_id)
                .eq(theirs.field(members::conversation_id))),
        )
        .filter(mine.field(members::user_id).eq(user_id))
        .filter(mine.field(members::left_seq).is_null())
        .filter(theirs.field(members::user_id).ne(user_id))
        .filter(theirs.field(members::left_seq).is_null())
        .select(theirs.field(members::user_id))
        .distinct()
        .load(conn)
}

/// How far `user_id` has read the conversation (0: nothing).
pub fn read_position(
    conn: &mut DbConnection,
    conversation_id: i64,
    user_id: i64,
) -> QueryResult<i64> {
    Ok(members::table
        .find((conversation_id, user_id))
        .select(members::last_read_seq)
        .first(conn)
        .optional()?
        .unwrap_or(0))
}

/// Moves the member's read position forward to `up_to` (never back); returns the position now
/// stored.
pub fn advance_read(
    conn: &mut DbConnection,
    conversation_id: i64,
    user_id: i64,
    up_to: i64,
) -> QueryResult<i64> {
    diesel::update(
        members::table
            .find((conversation_id, user_id))
            .filter(members::last_read_seq.lt(up_to)),
    )
    .set(members::last_read_seq.eq(up_to))
    .execute(conn)?;
    read_position(conn, conversation_id, user_id)
}
