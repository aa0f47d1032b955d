//! Queries on `conversations` and `conversation_members`: who belongs where, and how far each
//! member has read.

use std::collections::HashMap;

use diesel::prelude::*;

use super::DbConnection;
use super::schema::{conversation_members as members, conversations};

pub const DIRECT: &str = "direct";
pub const GROUP: &str = "group";
pub const MEMBER: &str = "member";

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = conversations)]
pub struct ConversationRow {
    pub id: i64,
    pub kind: String,
    pub title: Option<String>,
    pub direct_low: Option<i64>,
    pub direct_high: Option<i64>,
    pub created_at: time::PrimitiveDateTime,
}

impl ConversationRow {
    pub fn is_group(&self) -> bool {
        self.kind == GROUP
    }

    /// In a direct conversation, the user who is not `user_id`.
    pub fn peer_of(&self, user_id: i64) -> Option<i64> {
        let (low, high) = (self.direct_low?, self.direct_high?);
        Some(if low == user_id { high } else { low })
    }
}

pub fn find_many(conn: &mut DbConnection, ids: &[i64]) -> QueryResult<Vec<ConversationRow>> {
    conversations::table
        .filter(conversations::id.eq_any(ids))
        .select(ConversationRow::as_select())
        .load(conn)
}

/// A new group's row (its members join through the writer, with the event that made it).
pub fn insert_group(
    conn: &mut DbConnection,
    creator: i64,
    title: &str,
    now: time::PrimitiveDateTime,
) -> QueryResult<i64> {
    super::write_transaction(conn, |conn| {
        diesel::insert_into(conversations::table)
            .values((
                conversations::kind.eq(GROUP),
                conversations::title.eq(title),
                conversations::created_by.eq(creator),
                conversations::created_at.eq(now),
            ))
            .execute(conn)?;
        super::last_insert_id(conn)
    })
}

pub fn set_title(conn: &mut DbConnection, id: i64, title: &str) -> QueryResult<()> {
    diesel::update(conversations::table.find(id))
        .set(conversations::title.eq(title))
        .execute(conn)?;
    Ok(())
}

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

/// The conversations `user_id` belongs to now.
pub fn memberships(conn: &mut DbConnection, user_id: i64) -> QueryResult<Vec<MemberRow>> {
    members::table
        .filter(members::user_id.eq(user_id))
        .filter(members::left_seq.is_null())
        .select(MemberRow::as_select())
        .load(conn)
}

/// A member row: role, when they joined and left, how far they read.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = members)]
pub struct MemberRow {
    pub conversation_id: i64,
    pub user_id: i64,
    pub role: String,
    pub joined_at: time::PrimitiveDateTime,
    pub joined_seq: i64,
    pub left_seq: Option<i64>,
    pub last_read_seq: i64,
}

impl MemberRow {
    /// Whether this member sees the event `seq` (joined at or before it, not left before it).
    pub fn sees(&self, seq: i64) -> bool {
        self.joined_seq <= seq && self.left_seq.is_none_or(|left| seq <= left)
    }
}

/// The current members of these conversations.
pub fn current_members(conn: &mut DbConnection, ids: &[i64]) -> QueryResult<Vec<MemberRow>> {
    members::table
        .filter(members::conversation_id.eq_any(ids))
        .filter(members::left_seq.is_null())
        .order((
            members::conversation_id,
            members::joined_seq,
            members::user_id,
        ))
        .select(MemberRow::as_select())
        .load(conn)
}

/// Everyone who ever was a member of these conversations, with when they joined and left.
pub fn all_members(conn: &mut DbConnection, ids: &[i64]) -> QueryResult<Vec<MemberRow>> {
    members::table
        .filter(members::conversation_id.eq_any(ids))
        .select(MemberRow::as_select())
        .load(conn)
}

/// `user_id` joins (or joins again) as `role` with the event `seq`.
pub fn join(
    conn: &mut DbConnection,
    conversation_id: i64,
    user_id: i64,
    role: &str,
    seq: i64,
    now: time::PrimitiveDateTime,
) -> QueryResult<()> {
    let rejoined = diesel::update(members::table.find((conversation_id, user_id)))
        .set((
            members::role.eq(role),
            members::joined_at.eq(now),
            members::joined_seq.eq(seq),
            members::left_seq.eq(None::<i64>),
        ))
        .execute(conn)?;
    if rejoined == 0 {
        diesel::insert_into(members::table)
            .values((
                members::conversation_id.eq(conversation_id),
                members::user_id.eq(user_id),
                members::role.eq(role),
                members::joined_at.eq(now),
                members::joined_seq.eq(seq),
                members::last_read_seq.eq(0_i64),
                members::muted.eq(false),
            ))
            .execute(conn)?;
    }
    Ok(())
}

/// `user_id` leaves with the event `seq` (the last one they see).
pub fn leave(
    conn: &mut DbConnection,
    conversation_id: i64,
    user_id: i64,
    seq: i64,
) -> QueryResult<()> {
    diesel::update(members::table.find((conversation_id, user_id)))
        .set(members::left_seq.eq(seq))
        .execute(conn)?;
    Ok(())
}

pub fn set_role(
    conn: &mut DbConnection,
    conversation_id: i64,
    user_id: i64,
    role: &str,
) -> QueryResult<()> {
    diesel::update(members::table.find((conversation_id, user_id)))
        .set(members::role.eq(role))
        .execute(conn)?;
    Ok(())
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
