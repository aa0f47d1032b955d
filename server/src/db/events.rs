//! Queries on `events`, the log of every conversation: one sequence across all of them, so a
//! client resumes with one number. A message is the event that created it (its id is its seq).
//! Every list here is in seq order.

use diesel::dsl::{count_star, max, not};
use diesel::prelude::*;
use time::PrimitiveDateTime;

use super::DbConnection;
use super::schema::{conversation_members as members, events};

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = events)]
pub struct EventRow {
    pub seq: i64,
    pub conversation_id: i64,
    pub sender_id: i64,
    pub kind: String,
    pub body: String,
    pub client_msg_id: String,
    pub created_at: PrimitiveDateTime,
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = events)]
pub struct NewEvent {
    pub conversation_id: i64,
    pub sender_id: i64,
    pub kind: String,
    pub body: String,
    pub client_msg_id: String,
    pub created_at: PrimitiveDateTime,
}

impl NewEvent {
    pub fn new(
        conversation_id: i64,
        sender_id: i64,
        kind: &str,
        body: String,
        client_msg_id: String,
        created_at: PrimitiveDateTime,
    ) -> Self {
        Self {
            conversation_id,
            sender_id,
            kind: kind.to_string(),
            body,
            client_msg_id,
            created_at,
        }
    }
}

/// Runs `work` in a transaction. With several instances writing (`cluster`), writers take a
/// cluster-wide lock first, so ids become visible in the order they were assigned: a resume
/// cursor then never skips a message that committed late. (SQLite's write lock already does so.)
pub fn in_write_order<T>(
    conn: &mut DbConnection,
    cluster: bool,
    work: impl FnOnce(&mut DbConnection) -> QueryResult<T>,
) -> QueryResult<T> {
    use diesel::connection::SimpleConnection;
    match conn {
        DbConnection::Postgres(_) if cluster => conn.transaction(|conn| {
            conn.batch_execute("SELECT pg_advisory_xact_lock(7270011)")?;
            work(conn)
        }),
        DbConnection::Mysql(_) if cluster => {
            conn.batch_execute("DO GET_LOCK('pychat_message_writer', 10)")?;
            let result = conn.transaction(work);
            let released = conn.batch_execute("DO RELEASE_LOCK('pychat_message_writer')");
            result.and_then(|value| released.map(|()| value))
        }
        // SQLite: the batch reads (`prev`, retries) before it writes, so it takes the write lock
        // first (also against another process sharing the file).
        DbConnection::Sqlite(_) => super::write_transaction(conn, work),
        _ => conn.transaction(work),
    }
}

/// Inserts all rows in one statement and returns them as stored (ids assigned by the database).
/// Fails as a whole on any constraint violation; the caller retries row by row.
pub fn insert_batch(conn: &mut DbConnection, rows: &[NewEvent]) -> QueryResult<Vec<EventRow>> {
    // A multi-row INSERT is not expressible through the MultiConnection's backend: it runs on the
    // concrete connection. PostgreSQL returns the rows (reading them back could fall on a cached
    // generic plan that scans the table); MySQL has no RETURNING; SQLite's own RETURNING measured
    // slower here than one indexed read-back (34k against 44k acked messages/s).
    let insert = diesel::insert_into(events::table).values(rows);
    match conn {
        DbConnection::Postgres(c) => insert.returning(EventRow::as_returning()).get_results(c),
        DbConnection::Mysql(c) => {
            insert.execute(c)?;
            read_back_mysql(conn, rows)
        }
        DbConnection::Sqlite(c) => {
            insert.execute(c)?;
            read_back_by_key(conn, rows)
        }
    }
}

/// The rows just inserted, found through the unique (sender_id, client_msg_id) index.
fn read_back_by_key(conn: &mut DbConnection, rows: &[NewEvent]) -> QueryResult<Vec<EventRow>> {
    let senders: Vec<i64> = rows.iter().map(|r| r.sender_id).collect();
    let client_ids: Vec<&str> = rows.iter().map(|r| r.client_msg_id.as_str()).collect();
    let mut found: Vec<EventRow> = events::table
        .filter(events::sender_id.eq_any(&senders))
        .filter(events::client_msg_id.eq_any(&client_ids))
        .select(EventRow::as_select())
        .load(conn)?;
    // The IN lists can match other rows of these senders; keep exactly the inserted ones.
    found.retain(|row| {
        rows.iter()
            .any(|r| r.sender_id == row.sender_id && r.client_msg_id == row.client_msg_id)
    });
    Ok(found)
}

/// MySQL: a multi-row INSERT's ids are consecutive from LAST_INSERT_ID() under the default
/// `innodb_autoinc_lock_mode` (0 or 1), so one primary-key range reads them back. Under mode 2
/// they may interleave with another writer's: then the rows are found by their unique key.
fn read_back_mysql(conn: &mut DbConnection, rows: &[NewEvent]) -> QueryResult<Vec<EventRow>> {
    let first = super::last_insert_id(conn)?;
    let count = i64::try_from(rows.len()).unwrap_or(i64::MAX);
    let found: Vec<EventRow> = events::table
        .filter(events::seq.between(first, first + count - 1))
        .select(EventRow::as_select())
        .load(conn)?;
    let all_ours = found.len() == rows.len()
        && found.iter().all(|row| {
            rows.iter()
                .any(|r| r.sender_id == row.sender_id && r.client_msg_id == row.client_msg_id)
        });
    if all_ours {
        Ok(found)
    } else {
        read_back_by_key(conn, rows)
    }
}

pub fn find_by_client_id(
    conn: &mut DbConnection,
    sender_id: i64,
    client_msg_id: &str,
) -> QueryResult<Option<EventRow>> {
    events::table
        .filter(events::sender_id.eq(sender_id))
        .filter(events::client_msg_id.eq(client_msg_id))
        .select(EventRow::as_select())
        .first(conn)
        .optional()
}

/// The newest seq in the log, if any.
pub fn newest_seq(conn: &mut DbConnection) -> QueryResult<Option<i64>> {
    events::table.select(max(events::seq)).first(conn)
}

/// Every event with a seq in `(after, upto]`, oldest first, at most `limit`: a stretch of the
/// log that did not arrive through the bus.
pub fn in_range(
    conn: &mut DbConnection,
    after: i64,
    upto: i64,
    limit: i64,
) -> QueryResult<Vec<EventRow>> {
    events::table
        .filter(events::seq.gt(after))
        .filter(events::seq.le(upto))
        .order(events::seq.asc())
        .limit(limit)
        .select(EventRow::as_select())
        .load(conn)
}

// Every read that a client can take a resume cursor from takes `upto`, the writers' released
// watermark (`MessageWriter::visible_up_to`): rows above it may sit above an uncommitted gap.

/// The events `user_id` may see (of the conversations they belong to, from when they joined
/// until they left) with a seq in `(after, upto]`.
macro_rules! visible_to {
    ($user_id:expr, $after:expr, $upto:expr) => {
        events::table
            .inner_join(
                members::table.on(members::conversation_id
                    .eq(events::conversation_id)
                    .and(members::user_id.eq($user_id))),
            )
            .filter(events::seq.gt($after))
            .filter(events::seq.le($upto))
            .filter(members::joined_seq.le(events::seq))
            .filter(
                members::left_seq
                    .is_null()
                    .or(members::left_seq.ge(events::seq.nullable())),
            )
            .filter(
                events::kind
                    .ne($crate::db::events::READ_OWN)
                    .or(events::sender_id.eq($user_id)),
            )
    };
}

/// The events `user_id` may see with a seq in `(after, upto]`, oldest first, at most `limit`.
pub fn after_for_user(
    conn: &mut DbConnection,
    user_id: i64,
    after: i64,
    upto: i64,
    limit: i64,
) -> QueryResult<Vec<EventRow>> {
    visible_to!(user_id, after, upto)
        .order(events::seq.asc())
        .limit(limit)
        .select(EventRow::as_select())
        .load(conn)
}

/// How many events `user_id` may see with a seq in `(after, upto]`, counting no further than
/// `cap`.
pub fn count_after_for_user(
    conn: &mut DbConnection,
    user_id: i64,
    after: i64,
    upto: i64,
    cap: i64,
) -> QueryResult<usize> {
    let seqs: Vec<i64> = visible_to!(user_id, after, upto)
        .limit(cap)
        .select(events::seq)
        .load(conn)?;
    Ok(seqs.len())
}

/// The newest seq `user_id` may see, up to `upto`.
pub fn newest_for_user(
    conn: &mut DbConnection,
    user_id: i64,
    upto: i64,
) -> QueryResult<Option<i64>> {
    visible_to!(user_id, 0_i64, upto)
        .select(max(events::seq))
        .first(conn)
}

/// Which end of a conversation's history a page is taken from.
#[derive(Debug, Clone, Copy)]
pub enum PageCursor {
    /// The newest messages.
    Latest,
    /// The newest messages older than this seq.
    Before(i64),
    /// The oldest messages newer than this seq.
    After(i64),
}

/// A page of a conversation (seqs up to `upto`), oldest first.
pub fn page(
    conn: &mut DbConnection,
    conversation_id: i64,
    cursor: PageCursor,
    upto: i64,
    limit: i64,
) -> QueryResult<Vec<EventRow>> {
    let query = events::table
        .filter(events::conversation_id.eq(conversation_id))
        .filter(events::seq.le(upto))
        .filter(not(events::kind.eq_any(READ_KINDS)))
        .select(EventRow::as_select())
        .limit(limit)
        .into_boxed();
    let mut rows: Vec<EventRow> = match cursor {
        PageCursor::Latest => query.order(events::seq.desc()).load(conn)?,
        PageCursor::Before(seq) => query
            .filter(events::seq.lt(seq))
            .order(events::seq.desc())
            .load(conn)?,
        PageCursor::After(seq) => query
            .filter(events::seq.gt(seq))
            .order(events::seq.asc())
            .load(conn)?,
    };
    rows.sort_by_key(|row| row.seq);
    Ok(rows)
}

/// The newest seq (up to `upto`) of each of these conversations that has any event.
pub fn newest_per_conversation(
    conn: &mut DbConnection,
    conversation_ids: &[i64],
    upto: i64,
) -> QueryResult<Vec<(i64, i64)>> {
    let newest: Vec<(i64, Option<i64>)> = events::table
        .filter(events::conversation_id.eq_any(conversation_ids))
        .filter(events::seq.le(upto))
        .filter(not(events::kind.eq_any(READ_KINDS)))
        .group_by(events::conversation_id)
        .select((events::conversation_id, max(events::seq)))
        .load(conn)?;
    Ok(newest
        .into_iter()
        .filter_map(|(conversation, seq)| Some((conversation, seq?)))
        .collect())
}

pub fn find_many(conn: &mut DbConnection, seqs: &[i64]) -> QueryResult<Vec<EventRow>> {
    events::table
        .filter(events::seq.eq_any(seqs))
        .select(EventRow::as_select())
        .load(conn)
}

/// The kinds of events users write (and missed calls): what unread counts count.
pub const MESSAGE_KINDS: &[&str] = &["text", "missed_call"];
/// A member's read position moved: in a direct conversation (`read`, both members learn it) or in
/// a group (`read_own`, only the reader's own connections do). Not part of a conversation's
/// history, its newest event or its unread count.
pub const READ_KINDS: &[&str] = &["read", "read_own"];
/// Of the read kinds, the one only its sender sees.
pub const READ_OWN: &str = "read_own";

/// Messages of the conversation newer than `last_read` that `user_id` did not send.
pub fn unread_count(
    conn: &mut DbConnection,
    conversation_id: i64,
    user_id: i64,
    last_read: i64,
) -> QueryResult<i64> {
    events::table
        .filter(events::conversation_id.eq(conversation_id))
        .filter(events::seq.gt(last_read))
        .filter(events::sender_id.ne(user_id))
        .filter(events::kind.eq_any(MESSAGE_KINDS))
        .select(count_star())
        .first(conn)
}

/// The newest seq of the conversation, if it has any event (read marks aside).
pub fn newest_in(conn: &mut DbConnection, conversation_id: i64) -> QueryResult<Option<i64>> {
    events::table
        .filter(events::conversation_id.eq(conversation_id))
        .filter(not(events::kind.eq_any(READ_KINDS)))
        .select(max(events::seq))
        .first(conn)
}
