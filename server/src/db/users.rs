//! Queries on `users`.

use diesel::prelude::*;
use time::PrimitiveDateTime;

use super::DbConnection;
use super::schema::users;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = users)]
pub struct User {
    pub id: i64,
    pub username: String,
    pub display_name: String,
    pub password_hash: String,
    pub created_at: PrimitiveDateTime,
    pub updated_at: PrimitiveDateTime,
    pub last_seen_at: Option<PrimitiveDateTime>,
    pub disabled_at: Option<PrimitiveDateTime>,
}

#[derive(Insertable)]
#[diesel(table_name = users)]
pub struct NewUser<'a> {
    pub username: &'a str,
    pub display_name: &'a str,
    pub password_hash: &'a str,
    pub created_at: PrimitiveDateTime,
    pub updated_at: PrimitiveDateTime,
}

/// Inserts a user; a taken name fails with a unique violation.
pub fn create(conn: &mut DbConnection, new: &NewUser<'_>) -> QueryResult<User> {
    diesel::insert_into(users::table)
        .values(new)
        .execute(conn)?;
    users::table
        .filter(users::username.eq(new.username))
        .select(User::as_select())
        .first(conn)
}

pub fn find_by_username(conn: &mut DbConnection, username: &str) -> QueryResult<Option<User>> {
    users::table
        .filter(users::username.eq(username))
        .select(User::as_select())
        .first(conn)
        .optional()
}

pub fn find_by_id(conn: &mut DbConnection, id: i64) -> QueryResult<Option<User>> {
    users::table
        .find(id)
        .select(User::as_select())
        .first(conn)
        .optional()
}

/// Users whose name starts with `prefix`, in name order, after the cursor `after`.
pub fn search(
    conn: &mut DbConnection,
    prefix: &str,
    after: Option<&str>,
    limit: i64,
) -> QueryResult<Vec<User>> {
    let mut query = users::table
        .filter(
            users::username
                .like(format!("{}%", escape_like(prefix)))
                .escape('\\'),
        )
        .select(User::as_select())
        .order(users::username.asc())
        .limit(limit)
        .into_boxed();
    if let Some(after) = after {
        query = query.filter(users::username.gt(after.to_string()));
    }
    query.load(conn)
}

/// `_` is legal in user names and a wildcard in LIKE: escape it, `%` and the escape itself.
fn escape_like(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '\\' | '%' | '_') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

pub fn update_display_name(
    conn: &mut DbConnection,
    id: i64,
    display_name: &str,
    now: PrimitiveDateTime,
) -> QueryResult<usize> {
    diesel::update(users::table.find(id))
        .set((
            users::display_name.eq(display_name),
            users::updated_at.eq(now),
        ))
        .execute(conn)
}

/// User names by id, for the ids given.
pub fn names(conn: &mut DbConnection, ids: &[i64]) -> QueryResult<Vec<(i64, String)>> {
    users::table
        .filter(users::id.eq_any(ids))
        .select((users::id, users::username))
        .load(conn)
}

pub fn find_many(conn: &mut DbConnection, ids: &[i64]) -> QueryResult<Vec<User>> {
    users::table
        .filter(users::id.eq_any(ids))
        .select(User::as_select())
        .load(conn)
}

pub fn set_last_seen(
    conn: &mut DbConnection,
    id: i64,
    at: PrimitiveDateTime,
) -> QueryResult<usize> {
    diesel::update(users::table.find(id))
        .set(users::last_seen_at.eq(at))
        .execute(conn)
}

/// Sets a new password hash and revokes every session but `keep`; returns the ids it revoked.
pub fn replace_password(
    conn: &mut DbConnection,
    id: i64,
    password_hash: &str,
    keep: i64,
    now: PrimitiveDateTime,
) -> QueryResult<Vec<i64>> {
    super::write_transaction(conn, |conn| {
        diesel::update(users::table.find(id))
            .set((
                users::password_hash.eq(password_hash),
                users::updated_at.eq(now),
            ))
            .execute(conn)?;
        super::sessions::revoke_all(conn, id, Some(keep), now)
    })
}

/// Disables (`disabled`) or enables the account named `username`. Disabling revokes every session
/// of it. Returns the user's id and the sessions revoked, or `None` for no such user.
pub fn set_disabled(
    conn: &mut DbConnection,
    username: &str,
    disabled: bool,
    now: PrimitiveDateTime,
) -> QueryResult<Option<(i64, Vec<i64>)>> {
    super::write_transaction(conn, |conn| {
        let Some(user) = find_by_username(conn, username)? else {
            return Ok(None);
        };
        diesel::update(users::table.find(user.id))
            .set((
                users::disabled_at.eq(disabled.then_some(now)),
                users::updated_at.eq(now),
            ))
            .execute(conn)?;
        let revoked = if disabled {
            super::sessions::revoke_all(conn, user.id, None, now)?
        } else {
            Vec::new()
        };
        Ok(Some((user.id, revoked)))
    })
}

#[cfg(test)]
mod tests {
    use super::escape_like;

    #[test]
    fn escapes_like_wildcards() {
        assert_eq!(escape_like("a_b%c\\"), "a\\_b\\%c\\\\");
    }
}
