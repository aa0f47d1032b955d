//! Fan-out through Redis for several instances behind one address.
//!
//! Stored messages travel on one channel, `pychat:log`, as the log batches of `bus::log`: every
//! instance gets every batch, once, and puts them in order itself (`bus::sequencer`); whatever
//! Redis loses is read from the database. Everything else (receipts, typing, presence, call
//! signaling) is addressed to a user, on `pychat:u:{user_id}`, or to one connection. An instance
//! subscribes to the log and to the channels of the users connected to it, all on ONE subscriber
//! connection (Redis's cost grows with subscriber connections, not channels), and fans out to its
//! local sockets itself. Publishes go through a queue to one task that pipelines them.
//!
//! Health is a round trip: every second each instance publishes a probe on its own channel and
//! waits for it to come back on its subscriber. A probe that does not come back marks the bus
//! degraded and re-subscribes every channel (a Redis that restarted has none of them); the first
//! one that does again restores this instance's presence entries and has the log checked against
//! the database. While Redis is away each instance keeps serving its own users (local delivery
//! never touches Redis) and reads other instances' messages from the database.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use std::sync::atomic::AtomicU64;

use redis::AsyncCommands;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::io::tcp::TcpSettings;
use redis::{IntoConnectionInfo, Msg, PushInfo, PushKind};
use tokio::sync::mpsc;

use super::delivery::LogInbox;
use super::log::{self, LogBatch};
use crate::ws::FrameText;
use crate::ws::hub::{ConnId, Hub, Outbound};

/// Publishes waiting for Redis before new ones are dropped (clients then recover by resume).
const PUBLISH_QUEUE: usize = 65_536;
/// Most publishes in one pipeline.
const PIPELINE: usize = 512;
const HEADER: usize = 1 + 8 + 8 + 8 + 4;

/// How often the bus's health is probed, and how long a probe may take to come back.
const PROBE_EVERY: Duration = Duration::from_secs(1);

pub fn user_channel(user_id: i64) -> String {
    format!("pychat:u:{user_id}")
}

/// Every instance's log batches.
pub const LOG_CHANNEL: &str = "pychat:log";

fn probe_channel(instance: u32) -> String {
    format!("pychat:probe:{instance}")
}

/// What travels on a user's channel: who it is for, and the serialised frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub origin: u32,
    /// 0: every connection of the user (but `except`); otherwise that one connection.
    pub conn: ConnId,
    pub except: ConnId,
    pub out: Outbound,
}

impl Envelope {
    pub fn encode(&self) -> Vec<u8> {
        let (kind, message_id, text) = match &self.out {
            Outbound::Frame(text) => (0u8, 0i64, text.as_str()),
            Outbound::Message { id, text } => (1u8, *id, text.as_str()),
            Outbound::SessionEnded => (2u8, 0i64, ""),
        };
        let mut bytes = Vec::with_capacity(HEADER + text.len());
        bytes.push(kind);
        bytes.extend_from_slice(&self.conn.to_be_bytes());
        bytes.extend_from_slice(&self.except.to_be_bytes());
        bytes.extend_from_slice(&message_id.to_be_bytes());
        bytes.extend_from_slice(&self.origin.to_be_bytes());
        bytes.extend_from_slice(text.as_bytes());
        bytes
    }

    pub fn decode(bytes: &[u8]) -> Option<Self> {
        if bytes.len() < HEADER {
            return None;
        }
        let u64_at = |at: usize| {
            bytes
                .get(at..at + 8)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_be_bytes)
        };
        let conn = u64_at(1)?;
        let except = u64_at(9)?;
        let message_id = i64::from_be_bytes(bytes.get(17..25)?.try_into().ok()?);
        let origin = u32::from_be_bytes(bytes.get(25..29)?.try_into().ok()?);
        let text = FrameText::from(std::str::from_utf8(&bytes[HEADER..]).ok()?.to_owned());
        let out = match bytes[0] {
            0 => Outbound::Frame(text),
            1 => Outbound::Message {
                id: message_id,
                text,
            },
            2 => Outbound::SessionEnded,
            _ => return None,
        };
        Some(Self {
            origin,
            conn,
            except,
            out,
        })
    }
}

struct Publish {
    channel: String,
    payload: Vec<u8>,
}

#[derive(Clone)]
pub struct RedisBus {
    instance: u32,
    publish: mpsc::Sender<Publish>,
    commands: ConnectionManager,
    subscriber: ConnectionManager,
    subscribed: Arc<Mutex<HashSet<i64>>>,
    /// The last probe round trip worked.
    healthy: Arc<AtomicBool>,
    /// The number of the last probe that came back.
    probe_seen: Arc<AtomicU64>,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot reach Redis at {url}: {source}")]
pub struct RedisStartError {
    url: String,
    source: redis::RedisError,
}

impl RedisBus {
    /// Connects (both connections) and starts the publisher on the caller's runtime, which must
    /// live as long as the server.
    pub async fn connect(
        url: &str,
        instance: u32,
        hub: Hub,
        log: LogInbox,
    ) -> Result<Self, RedisStartError> {
        let redacted = crate::config::redact_url(url);
        let start_error = |source| RedisStartError {
            url: redacted.clone(),
            source,
        };
        let resp3 = if url.contains("protocol=") {
            url.to_string()
        } else if url.contains('?') {
            format!("{url}&protocol=resp3")
        } else {
            format!("{url}?protocol=resp3")
        };
        // redis-rs leaves Nagle's algorithm on: a command written while the previous one's
        // reply is in flight would wait for a delayed ACK.
        let info = resp3
            .into_connection_info()
            .map_err(start_error)?
            .set_tcp_settings(TcpSettings::default().set_nodelay(true));
        let client = redis::Client::open(info).map_err(start_error)?;
        let healthy = Arc::new(AtomicBool::new(true));
        let manager_config = || {
            ConnectionManagerConfig::new()
                .set_min_delay(Duration::from_millis(100))
                .set_max_delay(Duration::from_secs(2))
                .set_connection_timeout(Some(Duration::from_secs(2)))
                .set_response_timeout(Some(Duration::from_secs(2)))
        };
        let commands = client
            .get_connection_manager_with_config(manager_config())
            .await
            .map_err(start_error)?;
        let push_health = healthy.clone();
        let probe_seen = Arc::new(AtomicU64::new(0));
        let push_probe = probe_seen.clone();
        let probes = probe_channel(instance);
        let push_hub = hub.clone();
        let on_push = move |push: PushInfo| -> Result<(), std::convert::Infallible> {
            if push.kind == PushKind::Disconnection {
                push_health.store(false, Ordering::Relaxed);
                return Ok(());
            }
            let Some(msg) = Msg::from_push_info(push) else {
                return Ok(());
            };
            let channel = msg.get_channel_name();
            if channel == LOG_CHANNEL {
                match log::decode(msg.get_payload_bytes()) {
                    // This instance's own batches were delivered here at their commit.
                    Some((origin, batch)) if origin != instance => log.remote(batch),
                    Some(_) => {}
                    None => tracing::warn!("unreadable log batch on redis"),
                }
            } else if channel == probes {
                if let Ok(bytes) = msg.get_payload_bytes().try_into() {
                    push_probe.store(u64::from_be_bytes(bytes), Ordering::Relaxed);
                }
            } else if let Some(envelope) = Envelope::decode(msg.get_payload_bytes()) {
                deliver(&push_hub, instance, (msg, envelope));
            }
            Ok(())
        };
        let subscriber = client
            .get_connection_manager_with_config(
                manager_config()
                    .set_push_sender(on_push)
                    .set_automatic_resubscription(),
            )
            .await
            .map_err(start_error)?;
        let (publish, queue) = mpsc::channel(PUBLISH_QUEUE);
        tokio::spawn(publisher(commands.clone(), queue));
        let bus = Self {
            instance,
            publish,
            commands,
            subscriber,
            subscribed: Arc::default(),
            healthy,
            probe_seen,
        };
        bus.subscribe_all().await.map_err(start_error)?;
        Ok(bus)
    }

    /// Subscribes to the log, the probe channel and every user channel this instance needs, in
    /// one command (again after a Redis restart: subscribing twice is harmless).
    async fn subscribe_all(&self) -> redis::RedisResult<()> {
        let mut channels = vec![LOG_CHANNEL.to_string(), probe_channel(self.instance)];
        if let Ok(users) = self.subscribed.lock() {
            channels.extend(users.iter().map(|u| user_channel(*u)));
        }
        self.subscriber.clone().subscribe(channels).await
    }

    /// Keeps the bus healthy, forever (spawn it): probes the round trip every second; when it
    /// fails, re-subscribes; when it works again, restores what a restarted Redis lost (this
    /// instance's presence entries) and has the log checked for what was published meanwhile.
    pub async fn supervise(self, hub: Hub, log: LogInbox) {
        let mut number = 0u64;
        let mut every = tokio::time::interval(PROBE_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            number += 1;
            // The last probe's result, or false if the subscriber saw its connection drop since.
            let was_healthy = self.is_healthy();
            let mut healthy = self.probe(number).await;
            if healthy && !was_healthy {
                // Restored before the bus says ok again: `/readyz` ok means all of it is back.
                if let Err(err) = self.restore_presence(&hub.users()).await {
                    tracing::warn!(error = %err, "restoring presence in redis failed");
                    healthy = false;
                } else {
                    tracing::info!("redis round trip works again");
                }
                log.check();
            }
            self.healthy.store(healthy, Ordering::Relaxed);
            if !healthy {
                if was_healthy {
                    tracing::warn!("redis round trip failed; cross-instance delivery degraded");
                }
                if let Err(err) = self.subscribe_all().await {
                    tracing::debug!(error = %err, "redis resubscription failed");
                }
            }
        }
    }

    /// Publishes probe `number` and waits for it to come back through the subscriber.
    async fn probe(&self, number: u64) -> bool {
        let sent: redis::RedisResult<()> = self
            .commands
            .clone()
            .publish(probe_channel(self.instance), number.to_be_bytes().to_vec())
            .await;
        if sent.is_err() {
            return false;
        }
        let deadline = tokio::time::Instant::now() + PROBE_EVERY;
        while tokio::time::Instant::now() < deadline {
            if self.probe_seen.load(Ordering::Relaxed) >= number {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        false
    }

    /// Publishes a log batch to the other instances (queued, like every publish).
    pub fn publish_log(&self, batch: &LogBatch) {
        self.enqueue(LOG_CHANNEL.to_string(), log::encode(self.instance, batch));
    }

    pub fn instance(&self) -> u32 {
        self.instance
    }

    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// A connection for other cluster state (tickets, presence).
    pub fn commands(&self) -> ConnectionManager {
        self.commands.clone()
    }

    /// Queues a publish; never waits. A full queue (Redis far behind) drops it: the recipients
    /// on other instances recover stored messages through resume.
    pub fn publish(&self, user_id: i64, conn: ConnId, except: ConnId, out: &Outbound) {
        let payload = Envelope {
            origin: self.instance,
            conn,
            except,
            out: out.clone(),
        }
        .encode();
        self.enqueue(user_channel(user_id), payload);
    }

    fn enqueue(&self, channel: String, payload: Vec<u8>) {
        if self.publish.try_send(Publish { channel, payload }).is_err() {
            self.healthy.store(false, Ordering::Relaxed);
            tracing::warn!("redis publish queue full; dropping a cross-instance delivery");
        }
    }

    /// Subscribes to a user's channel (idempotent). Awaited before a connection is served, so
    /// nothing published after its registration can miss it.
    pub async fn subscribe_user(&self, user_id: i64) {
        let is_new = self
            .subscribed
            .lock()
            .map(|mut s| s.insert(user_id))
            .unwrap_or(true);
        // While Redis is away the supervisor subscribes it with the rest when Redis is back;
        // the connection need not wait for that.
        if !is_new || !self.is_healthy() {
            return;
        }
        let mut subscriber = self.subscriber.clone();
        if let Err(err) = subscriber.subscribe(user_channel(user_id)).await {
            self.healthy.store(false, Ordering::Relaxed);
            tracing::warn!(user_id, error = %err, "redis subscribe failed; local delivery only");
        }
    }

    /// Unsubscribes from the channels of users no longer connected here.
    pub async fn unsubscribe_idle(&self, hub: &Hub) {
        let idle: Vec<i64> = match self.subscribed.lock() {
            Ok(mut subscribed) => {
                let idle: Vec<i64> = subscribed
                    .iter()
                    .copied()
                    .filter(|u| !hub.is_online(*u))
                    .collect();
                for user in &idle {
                    subscribed.remove(user);
                }
                idle
            }
            Err(_) => return,
        };
        if idle.is_empty() {
            return;
        }
        let channels: Vec<String> = idle.iter().map(|u| user_channel(*u)).collect();
        let mut subscriber = self.subscriber.clone();
        if let Err(err) = subscriber.unsubscribe(channels).await {
            tracing::debug!(error = %err, "redis unsubscribe failed");
        }
    }
}

const CONNECT_SCRIPT: &str = r"
redis.call('HSET', KEYS[1], ARGV[1], 1)
redis.call('SADD', KEYS[2], ARGV[2])
return redis.call('HLEN', KEYS[1])
";

const DISCONNECT_SCRIPT: &str = r"
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('SREM', KEYS[2], ARGV[2])
return redis.call('HLEN', KEYS[1])
";

fn presence_key(user_id: i64) -> String {
    format!("pychat:presence:{user_id}")
}

fn instance_users_key(instance: u32) -> String {
    format!("pychat:instance-users:{instance}")
}

fn instance_key(instance: u32) -> String {
    format!("pychat:instance:{instance}")
}

const INSTANCES: &str = "pychat:instances";

/// Cluster-wide presence: a hash per user of the instances holding a connection of theirs, and a
/// heartbeat key per instance, so the survivors can clear what a killed instance left behind.
impl RedisBus {
    /// Records that this instance now has the user; true if no instance had them before.
    pub async fn presence_connect(&self, user_id: i64) -> redis::RedisResult<bool> {
        Ok(self.presence_script(CONNECT_SCRIPT, user_id).await? == 1)
    }

    /// Records that this instance no longer has the user; true if no instance has them now.
    pub async fn presence_disconnect(&self, user_id: i64) -> redis::RedisResult<bool> {
        Ok(self.presence_script(DISCONNECT_SCRIPT, user_id).await? == 0)
    }

    /// Runs a presence script for this instance and the user; returns the user's instance count.
    async fn presence_script(&self, script: &str, user_id: i64) -> redis::RedisResult<i64> {
        redis::Script::new(script)
            .key(presence_key(user_id))
            .key(instance_users_key(self.instance))
            .arg(self.instance)
            .arg(user_id)
            .invoke_async(&mut self.commands.clone())
            .await
    }

    /// Writes this instance's presence entries again for `users` (those connected here), after a
    /// Redis restart emptied them.
    pub async fn restore_presence(&self, users: &[i64]) -> redis::RedisResult<()> {
        let mut pipe = redis::pipe();
        for user in users {
            pipe.cmd("HSET")
                .arg(presence_key(*user))
                .arg(self.instance)
                .arg(1)
                .ignore()
                .cmd("SADD")
                .arg(instance_users_key(self.instance))
                .arg(*user)
                .ignore();
        }
        if users.is_empty() {
            return Ok(());
        }
        pipe.query_async(&mut self.commands.clone()).await
    }

    /// Which of `users` are connected to any instance.
    pub async fn online(&self, users: &[i64]) -> redis::RedisResult<HashSet<i64>> {
        let mut pipe = redis::pipe();
        for user in users {
            pipe.cmd("HLEN").arg(presence_key(*user));
        }
        let counts: Vec<i64> = pipe.query_async(&mut self.commands.clone()).await?;
        Ok(users
            .iter()
            .zip(counts)
            .filter(|(_, count)| *count > 0)
            .map(|(user, _)| *user)
            .collect())
    }

    /// Says this instance is alive for `ttl`.
    pub async fn heartbeat(&self, ttl: Duration) -> redis::RedisResult<()> {
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        redis::pipe()
            .cmd("SET")
            .arg(instance_key(self.instance))
            .arg(1)
            .arg("PX")
            .arg(ttl_ms)
            .ignore()
            .cmd("SADD")
            .arg(INSTANCES)
            .arg(self.instance)
            .ignore()
            .query_async(&mut self.commands.clone())
            .await
    }

    /// Clears the presence of instances whose heartbeat stopped; returns each dead instance with
    /// the users who are now offline everywhere. One survivor does each (a short lock).
    pub async fn reap_dead_instances(
        &self,
        ttl: Duration,
    ) -> redis::RedisResult<Vec<(u32, Vec<i64>)>> {
        let mut conn = self.commands.clone();
        let instances: Vec<u32> = conn.smembers(INSTANCES).await?;
        let mut dead = Vec::new();
        for instance in instances.into_iter().filter(|i| *i != self.instance) {
            let alive: bool = conn.exists(instance_key(instance)).await?;
            if alive {
                continue;
            }
            let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
            let locked: Option<String> = redis::cmd("SET")
                .arg(format!("pychat:reap:{instance}"))
                .arg(self.instance)
                .arg("NX")
                .arg("PX")
                .arg(ttl_ms)
                .query_async(&mut conn)
                .await?;
            if locked.is_none() {
                continue;
            }
            let users: Vec<i64> = conn.smembers(instance_users_key(instance)).await?;
            let mut offline = Vec::new();
            tracing::warn!(
                instance,
                users = users.len(),
                "instance stopped heartbeating; clearing its presence"
            );
            for user in users {
                let _: () = conn.hdel(presence_key(user), instance).await?;
                let left: i64 = conn.hlen(presence_key(user)).await?;
                if left == 0 {
                    offline.push(user);
                }
            }
            let _: () = conn.del(instance_users_key(instance)).await?;
            let _: () = conn.srem(INSTANCES, instance).await?;
            dead.push((instance, offline));
        }
        Ok(dead)
    }
}

const UNLOCK_SCRIPT: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
";

/// Shared documents changed under a lock: small state every instance must see the same way.
impl RedisBus {
    /// Reads the JSON document at `key` (the default when absent).
    pub async fn read_json<S: serde::de::DeserializeOwned + Default>(
        &self,
        key: &str,
    ) -> redis::RedisResult<S> {
        let raw: Option<Vec<u8>> = self.commands.clone().get(key).await?;
        Ok(match raw {
            Some(raw) => serde_json::from_slice(&raw).unwrap_or_else(|err| {
                tracing::error!(key, error = %err, "unreadable shared state; starting afresh");
                S::default()
            }),
            None => S::default(),
        })
    }

    /// Loads the JSON document at `key`, lets `change` modify it, and stores it back, all under
    /// a lock held by this instance only (released even if `change` fails; expires by itself if
    /// this instance dies holding it).
    pub async fn update_json<S, T>(
        &self,
        key: &str,
        change: impl FnOnce(&mut S) -> T,
    ) -> redis::RedisResult<T>
    where
        S: serde::Serialize + serde::de::DeserializeOwned + Default,
    {
        let lock_key = format!("{key}:lock");
        let token = crate::auth::tokens::random_token(12);
        let mut conn = self.commands.clone();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let acquired: Option<String> = redis::cmd("SET")
                .arg(&lock_key)
                .arg(&token)
                .arg("NX")
                .arg("PX")
                .arg(5_000)
                .query_async(&mut conn)
                .await?;
            if acquired.is_some() {
                break;
            }
            if std::time::Instant::now() > deadline {
                return Err(redis::RedisError::from((
                    redis::ErrorKind::Io,
                    "shared state lock not acquired in 5 s",
                )));
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let result = async {
            let mut state: S = self.read_json(key).await?;
            let outcome = change(&mut state);
            let bytes = serde_json::to_vec(&state).map_err(|err| {
                redis::RedisError::from((
                    redis::ErrorKind::Io,
                    "serialising shared state",
                    err.to_string(),
                ))
            })?;
            let _: () = conn.clone().set(key, bytes).await?;
            Ok(outcome)
        }
        .await;
        let _: redis::RedisResult<i64> = redis::Script::new(UNLOCK_SCRIPT)
            .key(&lock_key)
            .arg(&token)
            .invoke_async(&mut conn)
            .await;
        result
    }
}

/// Delivers what another instance published to this instance's sockets.
fn deliver(hub: &Hub, instance: u32, (msg, envelope): (Msg, Envelope)) {
    // This instance delivered its own publishes locally already.
    if envelope.origin == instance {
        return;
    }
    let Some(user_id) = msg
        .get_channel_name()
        .strip_prefix("pychat:u:")
        .and_then(|id| id.parse::<i64>().ok())
    else {
        return;
    };
    if envelope.conn != 0 {
        hub.send_to_conn(user_id, envelope.conn, &envelope.out);
    } else {
        let except = (envelope.except != 0).then_some(envelope.except);
        hub.send_to_user(user_id, &envelope.out, except);
    }
}

/// Sends the queued publishes, pipelined. A failed pipeline is dropped: stored messages are
/// read from the database by the other instances, the rest is ephemeral. Health is the probe's
/// to judge.
async fn publisher(mut conn: ConnectionManager, mut queue: mpsc::Receiver<Publish>) {
    let mut batch = Vec::with_capacity(PIPELINE);
    while queue.recv_many(&mut batch, PIPELINE).await > 0 {
        let mut pipe = redis::pipe();
        for item in &batch {
            pipe.cmd("PUBLISH")
                .arg(&item.channel)
                .arg(&item.payload)
                .ignore();
        }
        if let Err(err) = pipe.query_async::<()>(&mut conn).await {
            tracing::warn!(error = %err, dropped = batch.len(), "redis publish failed");
        }
        batch.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_round_trip() {
        for out in [
            Outbound::Frame(FrameText::from_static(r#"{"type":"typing","from":"a"}"#)),
            Outbound::Message {
                id: 42,
                text: FrameText::from_static(r#"{"type":"message"}"#),
            },
            Outbound::SessionEnded,
        ] {
            let envelope = Envelope {
                origin: 7,
                conn: 1 << 40,
                except: 3,
                out,
            };
            assert_eq!(Envelope::decode(&envelope.encode()), Some(envelope));
        }
        assert_eq!(Envelope::decode(b"short"), None);
    }
}
