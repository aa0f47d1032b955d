use std::sync::Arc;
use std::time::Duration;

use crate::auth::revocation::{SessionEnds, SessionRef};
use crate::auth::tokens::{hash_refresh_token, random_token};
use crate::auth::{AuthUser, PasswordHasher, TokenIssuer};
use crate::db::sessions::{self, Rotation};
use crate::db::users::{self, NewUser};
use crate::db::{self, Db};
use crate::error::{AppError, ErrorCode, FieldError};

use super::{UserView, validate};

/// Tokens handed out at sign-in and on every refresh.
#[derive(Debug)]
pub struct IssuedTokens {
    pub user: UserView,
    pub access_token: String,
    pub refresh_token: String,
    pub expires_in: u64,
    pub refresh_expires_in: u64,
}

#[derive(Debug)]
pub struct UserPage {
    pub users: Vec<UserView>,
    /// Pass as `after` to get the next page; absent on the last one.
    pub next_after: Option<String>,
}

#[derive(Clone)]
pub struct Accounts {
    db: Db,
    passwords: PasswordHasher,
    tokens: TokenIssuer,
    refresh_ttl: Duration,
    /// Told of each session revoked here, so its sockets here close at once (other instances'
    /// close within a sweep: `auth::revocation`).
    ends: Arc<dyn SessionEnds>,
}

fn collect(errors: Vec<FieldError>) -> Result<(), AppError> {
    if errors.is_empty() {
        Ok(())
    } else {
        Err(AppError::validation(errors))
    }
}

fn invalid_credentials() -> AppError {
    AppError::new(ErrorCode::InvalidCredentials, "wrong user name or password")
}

impl Accounts {
    pub fn new(
        db: Db,
        passwords: PasswordHasher,
        tokens: TokenIssuer,
        refresh_ttl: Duration,
        ends: Arc<dyn SessionEnds>,
    ) -> Self {
        Self {
            db,
            passwords,
            tokens,
            refresh_ttl,
            ends,
        }
    }

    fn ended(&self, user_id: i64, sessions: &[i64]) {
        for &session_id in sessions {
            self.ends.end(SessionRef {
                user_id,
                session_id,
            });
        }
    }

    pub async fn register(
        &self,
        username: &str,
        password: String,
        display_name: Option<&str>,
    ) -> Result<IssuedTokens, AppError> {
        let mut errors = Vec::new();
        let username = validate::username(username)
            .map_err(|e| errors.push(e))
            .ok();
        let display_name = display_name
            .map(validate::display_name)
            .transpose()
            .map_err(|e| errors.push(e))
            .ok()
            .flatten();
        if let Err(e) = validate::password("password", &password) {
            errors.push(e);
        }
        collect(errors)?;
        let username = username.unwrap_or_default();
        let display_name = display_name.unwrap_or_else(|| username.clone());

        let password_hash = self.passwords.hash(password).await?;
        let taken_name = username.clone();
        let user = self
            .db
            .run(move |conn| {
                let now = db::now();
                users::create(
                    conn,
                    &NewUser {
                        username: &username,
                        display_name: &display_name,
                        password_hash: &password_hash,
                        created_at: now,
                        updated_at: now,
                    },
                )
                .map_err(|err| {
                    if db::is_unique_violation(&err) {
                        AppError::new(
                            ErrorCode::UsernameTaken,
                            format!("the name {taken_name:?} is taken"),
                        )
                    } else {
                        err.into()
                    }
                })
            })
            .await?;
        tracing::info!(user_id = user.id, username = %user.username, "registered");
        self.open_session(UserView::from(&user)).await
    }

    pub async fn login(&self, username: &str, password: String) -> Result<IssuedTokens, AppError> {
        // An impossible name or password still costs a bcrypt check: timing must not tell
        // which names exist.
        let name = validate::username(username).ok();
        let user = match name {
            Some(name) => {
                self.db
                    .run(move |conn| Ok(users::find_by_username(conn, &name)?))
                    .await?
            }
            None => None,
        };
        let stored = user.as_ref().map(|u| u.password_hash.clone());
        if !self.passwords.verify(password, stored).await? {
            return Err(invalid_credentials());
        }
        let user = user.ok_or_else(invalid_credentials)?;
        // Told only to whoever knows the password.
        if user.disabled_at.is_some() {
            return Err(AppError::new(
                ErrorCode::AccountDisabled,
                "this account has been disabled",
            ));
        }
        self.open_session(UserView::from(&user)).await
    }

    async fn open_session(&self, user: UserView) -> Result<IssuedTokens, AppError> {
        let refresh_token = random_token(32);
        let token_hash = hash_refresh_token(&refresh_token);
        let refresh_ttl = self.refresh_ttl;
        let user_id = user.id;
        let session_id = self
            .db
            .run(move |conn| {
                let now = db::now();
                Ok(sessions::create(
                    conn,
                    user_id,
                    &token_hash,
                    now,
                    now + refresh_ttl,
                )?)
            })
            .await?;
        self.tokens_for(user, session_id, refresh_token)
    }

    fn tokens_for(
        &self,
        user: UserView,
        session_id: i64,
        refresh_token: String,
    ) -> Result<IssuedTokens, AppError> {
        Ok(IssuedTokens {
            access_token: self.tokens.issue(user.id, session_id)?,
            refresh_token,
            expires_in: self.tokens.access_ttl().as_secs(),
            refresh_expires_in: self.refresh_ttl.as_secs(),
            user,
        })
    }

    /// Rotates a refresh token. A token seen before revokes its session.
    pub async fn refresh(&self, presented: &str) -> Result<IssuedTokens, AppError> {
        let presented_hash = hash_refresh_token(presented);
        let new_token = random_token(32);
        let new_hash = hash_refresh_token(&new_token);
        let (rotation, user) = self
            .db
            .run(move |conn| {
                let rotation = sessions::rotate(conn, &presented_hash, &new_hash, db::now())?;
                let user = match rotation {
                    Rotation::Rotated { user_id, .. } => users::find_by_id(conn, user_id)?,
                    _ => None,
                };
                Ok((rotation, user))
            })
            .await?;
        match (rotation, user) {
            (Rotation::Rotated { session_id, .. }, Some(user)) => {
                self.tokens_for(UserView::from(&user), session_id, new_token)
            }
            (
                Rotation::Reused {
                    user_id,
                    session_id,
                },
                _,
            ) => {
                tracing::warn!(user_id, session_id, "refresh token reused; session revoked");
                self.ended(user_id, &[session_id]);
                Err(AppError::new(
                    ErrorCode::RefreshTokenReused,
                    "this refresh token was already used; the session has been signed out",
                ))
            }
            _ => Err(AppError::new(
                ErrorCode::InvalidToken,
                "the refresh token is not valid",
            )),
        }
    }

    pub async fn logout(&self, auth: &AuthUser) -> Result<(), AppError> {
        let session_id = auth.session_id;
        self.db
            .run(move |conn| Ok(sessions::revoke(conn, session_id, db::now())?))
            .await?;
        self.ended(auth.user_id, &[session_id]);
        Ok(())
    }

    pub async fn me(&self, auth: &AuthUser) -> Result<UserView, AppError> {
        self.user(auth.user_id).await
    }

    /// A user by id; a missing one means the credentials outlived their user.
    pub async fn user(&self, user_id: i64) -> Result<UserView, AppError> {
        let user = self
            .db
            .run(move |conn| Ok(users::find_by_id(conn, user_id)?))
            .await?
            .ok_or_else(AppError::invalid_token)?;
        Ok(UserView::from(&user))
    }

    pub async fn update_display_name(
        &self,
        auth: &AuthUser,
        display_name: &str,
    ) -> Result<UserView, AppError> {
        let display_name =
            validate::display_name(display_name).map_err(|e| AppError::validation(vec![e]))?;
        let user_id = auth.user_id;
        let user = self
            .db
            .run(move |conn| {
                users::update_display_name(conn, user_id, &display_name, db::now())?;
                Ok(users::find_by_id(conn, user_id)?)
            })
            .await?
            .ok_or_else(AppError::invalid_token)?;
        Ok(UserView::from(&user))
    }

    /// Changes the password and signs out every other session of the user.
    pub async fn change_password(
        &self,
        auth: &AuthUser,
        current: String,
        new: String,
    ) -> Result<(), AppError> {
        validate::password("new_password", &new).map_err(|e| AppError::validation(vec![e]))?;
        let user_id = auth.user_id;
        let user = self
            .db
            .run(move |conn| Ok(users::find_by_id(conn, user_id)?))
            .await?
            .ok_or_else(AppError::invalid_token)?;
        if !self
            .passwords
            .verify(current, Some(user.password_hash))
            .await?
        {
            return Err(AppError::validation(vec![FieldError {
                field: "current_password",
                code: "incorrect",
                message: "is not your current password".into(),
            }]));
        }
        let new_hash = self.passwords.hash(new).await?;
        let keep = auth.session_id;
        let revoked = self
            .db
            .run(move |conn| {
                Ok(users::replace_password(
                    conn,
                    user_id,
                    &new_hash,
                    keep,
                    db::now(),
                )?)
            })
            .await?;
        self.ended(user_id, &revoked);
        tracing::info!(
            user_id,
            revoked_sessions = revoked.len(),
            "password changed"
        );
        Ok(())
    }

    pub async fn profile(&self, username: &str) -> Result<UserView, AppError> {
        let lookup = username.to_lowercase();
        self.db
            .run(move |conn| Ok(users::find_by_username(conn, &lookup)?))
            .await?
            .map(|user| UserView::from(&user))
            .ok_or_else(|| AppError::user_not_found(username))
    }

    pub async fn search(
        &self,
        prefix: &str,
        after: Option<String>,
        limit: usize,
    ) -> Result<UserPage, AppError> {
        let prefix = prefix.trim().to_lowercase();
        let after = after.map(|a| a.to_lowercase());
        // One extra row tells whether another page follows.
        let fetch = i64::try_from(limit + 1).unwrap_or(i64::MAX);
        let mut found = self
            .db
            .run(move |conn| Ok(users::search(conn, &prefix, after.as_deref(), fetch)?))
            .await?;
        let more = found.len() > limit;
        found.truncate(limit);
        let users: Vec<UserView> = found.iter().map(UserView::from).collect();
        let next_after = if more {
            users.last().map(|u| u.username.clone())
        } else {
            None
        };
        Ok(UserPage { users, next_after })
    }
}
