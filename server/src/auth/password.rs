//! bcrypt on a bounded pool: at most one hash per core runs at once, so a burst of logins
//! queues here instead of taking every thread of the blocking pool.
//!
//! bcrypt reads only the first 72 bytes of its input, and a 128-character password can be 512
//! bytes. Each password is therefore hashed with SHA-256 first and its base64 (44 bytes) is what
//! bcrypt sees, so every character counts.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha256};
use tokio::sync::{OnceCell, Semaphore};

use crate::error::AppError;

#[derive(Clone)]
pub struct PasswordHasher {
    cost: u32,
    permits: Arc<Semaphore>,
    /// Verified against when the user does not exist, so both failures take the same time.
    dummy_hash: Arc<OnceCell<String>>,
}

impl PasswordHasher {
    pub fn new(cost: u32) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        Self {
            cost,
            permits: Arc::new(Semaphore::new(cores)),
            dummy_hash: Arc::new(OnceCell::new()),
        }
    }

    pub async fn hash(&self, password: String) -> Result<String, AppError> {
        let cost = self.cost;
        self.bounded(move || bcrypt::hash(prehash(&password), cost).map_err(AppError::internal))
            .await
    }

    /// Checks `password` against `stored`; with no stored hash it spends the same effort and
    /// answers false.
    pub async fn verify(&self, password: String, stored: Option<String>) -> Result<bool, AppError> {
        let (hash, known) = match stored {
            Some(hash) => (hash, true),
            None => (self.dummy_hash().await?, false),
        };
        let matches = self
            .bounded(move || Ok(bcrypt::verify(prehash(&password), &hash).unwrap_or(false)))
            .await?;
        Ok(known && matches)
    }

    async fn dummy_hash(&self) -> Result<String, AppError> {
        self.dummy_hash
            .get_or_try_init(|| self.hash(super::tokens::random_token(16)))
            .await
            .cloned()
    }

    async fn bounded<T, F>(&self, work: F) -> Result<T, AppError>
    where
        F: FnOnce() -> Result<T, AppError> + Send + 'static,
        T: Send + 'static,
    {
        let _permit = self.permits.acquire().await.map_err(AppError::internal)?;
        actix_web::web::block(work)
            .await
            .map_err(AppError::internal)?
    }
}

fn prehash(password: &str) -> String {
    STANDARD.encode(Sha256::digest(password.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[actix_web::test]
    async fn verifies_whole_long_passwords() {
        let hasher = PasswordHasher::new(4);
        let base = "x".repeat(100);
        let hash = hasher.hash(format!("{base}a")).await.expect("hash");
        assert!(
            hasher
                .verify(format!("{base}a"), Some(hash.clone()))
                .await
                .expect("verify")
        );
        // Differs only after byte 72: plain bcrypt would accept it.
        assert!(
            !hasher
                .verify(format!("{base}b"), Some(hash))
                .await
                .expect("verify")
        );
        assert!(
            !hasher
                .verify(format!("{base}a"), None)
                .await
                .expect("verify")
        );
    }
}
