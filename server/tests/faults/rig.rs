//! A scenario's set of processes: one database, optionally a Redis, N pychat instances.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::procs::{Backend, Instance, PrivateDb, PrivateRedis, ScratchDir, require_tool};

/// The grace period given to instances in these tests (`PYCHAT_SHUTDOWN_TIMEOUT_SECS`).
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

pub struct Rig {
    // Dropped in this order: instances before the services they use; the directory last.
    pub instances: Vec<Instance>,
    pub redis: Option<PrivateRedis>,
    pub db: PrivateDb,
    pub http: reqwest::Client,
    pub scratch: ScratchDir,
}

pub struct Reply {
    pub status: u16,
    pub body: Value,
    pub took: Duration,
}

impl Rig {
    /// `None` when a tool is missing outside CI (the test is skipped and says so).
    pub async fn start(backend: Backend, instances: usize, redis: bool) -> Option<Self> {
        Self::start_with(backend, instances, redis, &[]).await
    }

    /// [`Self::start`] with more `PYCHAT_*` settings for every instance.
    pub async fn start_with(
        backend: Backend,
        instances: usize,
        redis: bool,
        settings: &[(&str, &str)],
    ) -> Option<Self> {
        if redis && !(require_tool("redis-server") && require_tool("redis-cli")) {
            return None;
        }
        let scratch = ScratchDir::new();
        let db = PrivateDb::start(backend, &scratch).await?;
        let redis = if redis {
            Some(PrivateRedis::start(&scratch).await)
        } else {
            None
        };
        let mut rig = Self {
            instances: Vec::new(),
            redis,
            db,
            http: reqwest::Client::builder()
                // Probes during outages: an answer slower than this is a failure anyway.
                .timeout(Duration::from_secs(3))
                .build()
                .expect("http"),
            scratch,
        };
        for i in 0..instances {
            let name = format!("pychat{i}");
            let data = rig.scratch.path().join(format!("{name}-data"));
            std::fs::create_dir_all(&data).expect("data dir");
            let mut env = vec![
                ("PYCHAT_DATABASE_URL".to_string(), rig.db.url()),
                ("PYCHAT_DATA_DIR".to_string(), data.display().to_string()),
                (
                    "PYCHAT_SHUTDOWN_TIMEOUT_SECS".to_string(),
                    SHUTDOWN_TIMEOUT.as_secs().to_string(),
                ),
            ];
            env.extend(settings.iter().map(|(k, v)| (k.to_string(), v.to_string())));
            if let Some(redis) = &rig.redis {
                env.push(("PYCHAT_REDIS_URL".to_string(), redis.url()));
            }
            let mut instance = Instance::new(&name, &rig.scratch, env);
            instance.start().await;
            rig.instances.push(instance);
        }
        Some(rig)
    }

    pub fn addrs(&self) -> Vec<String> {
        self.instances.iter().map(Instance::addr).collect()
    }

    pub fn redis(&mut self) -> &mut PrivateRedis {
        self.redis.as_mut().expect("this rig has a redis")
    }

    /// A GET on instance `i`, timed.
    pub async fn get(&self, i: usize, path: &str, token: Option<&str>) -> Reply {
        let started = Instant::now();
        let mut request = self
            .http
            .get(format!("http://{}{path}", self.instances[i].addr()));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        match request.send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                let body = response.json().await.unwrap_or(Value::Null);
                Reply {
                    status,
                    body,
                    took: started.elapsed(),
                }
            }
            Err(err) => Reply {
                status: 0,
                body: Value::String(if err.is_timeout() {
                    "no answer".to_string()
                } else {
                    err.to_string()
                }),
                took: started.elapsed(),
            },
        }
    }

    /// Waits (bounded) until every running instance's `/readyz` says the bus is `ok`.
    pub async fn bus_ok_everywhere(&self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            let mut all = true;
            for i in 0..self.instances.len() {
                if self.instances[i].is_running() {
                    let ready = self.get(i, "/readyz", None).await;
                    all &= ready.status == 200 && ready.body["bus"] == "ok";
                }
            }
            if all {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        false
    }

    /// Waits (bounded) until the database answers queries again.
    pub async fn db_answers(&self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            let ok = (0..self.instances.len()).any(|i| self.instances[i].is_running());
            if ok {
                let mut ready = true;
                for i in 0..self.instances.len() {
                    if self.instances[i].is_running() {
                        ready &= self.get(i, "/readyz", None).await.status == 200;
                    }
                }
                if ready {
                    return true;
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        false
    }
}
