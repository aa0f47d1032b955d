//! Read positions: how far each user has read each conversation.

use diesel::prelude::*;

use super::DbConnection;
use super::schema::conversation_reads as reads;

pub fn get(conn: &mut DbConnection, user_id: i64, peer_id: i64) -> QueryResult<i64> {
    Ok(reads::table
        .find((user_id, peer_id))
        .select(reads::last_read_id)
        .first(conn)
        .optional()?
        .unwrap_or(0))
}

pub fn for_peers(
    conn: &mut DbConnection,
    user_id: i64,
    peers: &[i64],
) -> QueryResult<Vec<(i64, i64)>> {
    reads::table
        .filter(reads::user_id.eq(user_id))
        .filter(reads::peer_id.eq_any(peers))
        .select((reads::peer_id, reads::last_read_id))
        .load(conn)
}

/// How far each of `readers` has read their conversation with `peer_id`.
pub fn of_readers(
    conn: &mut DbConnection,
    readers: &[i64],
    peer_id: i64,
) -> QueryResult<Vec<(i64, i64)>> {
    reads::table
        .filter(reads::user_id.eq_any(readers))
        .filter(reads::peer_id.eq(peer_id))
        .select((reads::user_id, reads::last_read_id))
        .load(conn)
}

/// Moves the read position forward to `up_to` (never back); returns the position now stored.
pub fn advance(
    conn: &mut DbConnection,
    user_id: i64,
    peer_id: i64,
    up_to: i64,
) -> QueryResult<i64> {
    // No transaction: on PostgreSQL a failed INSERT would poison it. Each statement is atomic,
    // and the last one reads whatever position won.
    {
        let updated = diesel::update(
            reads::table
                .filter(reads::user_id.eq(user_id))
                .filter(reads::peer_id.eq(peer_id))
                .filter(reads::last_read_id.lt(up_to)),
        )
        .set(reads::last_read_id.eq(up_to))
        .execute(conn)?;
        if updated == 0 {
            let inserted = diesel::insert_into(reads::table)
                .values((
                    reads::user_id.eq(user_id),
                    reads::peer_id.eq(peer_id),
                    reads::last_read_id.eq(up_to),
                ))
                .execute(conn);
            match inserted {
                // The row exists already, at or past `up_to`.
                Err(err) if super::is_unique_violation(&err) => {}
                other => {
                    other?;
                }
            }
        }
    }
    get(conn, user_id, peer_id)
}
