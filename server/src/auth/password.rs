//! bcrypt on its own threads, one per core, under Linux's `SCHED_IDLE` policy: a burst of logins
//! queues here and takes only the CPU that sockets leave over, and a worker woken by a message
//! preempts a hashing thread at once. Nice 10 was not enough: the login-storm benchmark measured
//! other users' signal p99 going from 0.26 to 10 ms with it, and to below its calm value with
//! `SCHED_IDLE`. The price: on a server whose cores are busy all the time, logins wait.
//!
//! bcrypt reads only the first 72 bytes of its input, and a 128-character password can be 512
//! bytes. Each password is therefore hashed with SHA-256 first and its base64 (44 bytes) is what
//! bcrypt sees, so every character counts.

use std::sync::{Arc, Mutex, mpsc};
use std::thread;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha256};
use thread_priority::ThreadPriority;
use thread_priority::unix::{
    NormalThreadSchedulePolicy, ThreadSchedulePolicy, set_thread_priority_and_policy,
    thread_native_id,
};
use tokio::sync::{OnceCell, oneshot};

use crate::error::AppError;

type Job = Box<dyn FnOnce() + Send>;

#[derive(Clone)]
pub struct PasswordHasher {
    cost: u32,
    jobs: mpsc::Sender<Job>,
    /// Verified against when the user does not exist, so both failures take the same time.
    dummy_hash: Arc<OnceCell<String>>,
}

impl PasswordHasher {
    /// Starts one hashing thread per core; they end when every handle is dropped.
    pub fn new(cost: u32) -> Self {
        let cores = thread::available_parallelism().map_or(1, usize::from);
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for i in 0..cores {
            let queue = queue.clone();
            let spawned = thread::Builder::new()
                .name(format!("pychat-bcrypt-{i}"))
                .spawn(move || hashing_thread(&queue));
            if let Err(err) = spawned {
                tracing::error!(error = %err, "cannot start a password hashing thread");
            }
        }
        Self {
            cost,
            jobs,
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
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Box::new(move || {
                let _ = reply.send(work());
            }))
            .map_err(|_| AppError::internal("password hashing stopped"))?;
        answer
            .await
            .map_err(|_| AppError::internal("password hashing stopped"))?
    }
}

fn hashing_thread(queue: &Mutex<mpsc::Receiver<Job>>) {
    // Lowering one's own policy needs no privilege; if it fails anyway, hashing still works at
    // normal priority.
    let idle = ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle);
    if let Err(err) = set_thread_priority_and_policy(thread_native_id(), ThreadPriority::Min, idle)
    {
        tracing::warn!(error = ?err, "cannot lower the priority of a password hashing thread");
    }
    loop {
        let job = match queue.lock() {
            Ok(queue) => queue.recv(),
            Err(_) => return,
        };
        match job {
            Ok(job) => job(),
            Err(_) => return,
        }
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
