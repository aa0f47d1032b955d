//! The traffic every scenario runs, and the counts that prove nothing acknowledged was lost:
//! pairs of users writing to each other through the instances, then a settle phase (every
//! outbox drained, every client reconnecting and resuming until the counts stop changing) and
//! one line `sent / acked / stored / delivered / duplicates / lost` checked against the rows in
//! the database.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::client::{Client, Close, Config};
use crate::procs::{PASSWORD, PrivateDb};

pub struct Traffic {
    pub clients: Vec<Client>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// One simulated user: who it writes to, where it connects first, how fast it writes.
#[derive(Clone)]
pub struct Spec {
    pub user: String,
    pub peer: String,
    pub first_instance: usize,
    pub rate: f64,
    /// A tiny socket receive buffer (the slow consumer), so the server's queue fills soon.
    pub small_rcvbuf: bool,
    /// Characters added to every body.
    pub padding: usize,
    /// Writes to a group of these users (`peer` is its title) instead of to `peer`.
    pub group: Option<Vec<String>>,
}

impl Spec {
    pub fn new(user: &str, peer: &str, first_instance: usize, rate: f64) -> Self {
        Self {
            user: user.to_string(),
            peer: peer.to_string(),
            first_instance,
            rate,
            small_rcvbuf: false,
            padding: 0,
            group: None,
        }
    }
}

/// [`pairs`], and a group of three (each member on another instance) in which everyone writes:
/// the traffic of every fault scenario, so that each covers direct and group conversations.
pub fn mixed(pairs: usize, rate: f64) -> Vec<Spec> {
    let mut specs = self::pairs(pairs, rate);
    let members: Vec<String> = (0..3).map(|m| format!("trio{m}")).collect();
    for (m, member) in members.iter().enumerate() {
        let mut spec = Spec::new(member, "trio", m, rate);
        spec.group = Some(members.clone());
        specs.push(spec);
    }
    specs
}

/// Makes a group titled `title` of `members` (the first owns it); its id.
async fn create_group(
    http: &reqwest::Client,
    addr: &str,
    owner_access: &str,
    title: &str,
    members: &[String],
) -> i64 {
    let reply = http
        .post(format!("http://{addr}/api/conversations"))
        .bearer_auth(owner_access)
        .json(&json!({"title": title, "members": members[1..]}))
        .send()
        .await
        .expect("create group");
    assert_eq!(reply.status().as_u16(), 201, "create group {title}");
    let body: Value = reply.json().await.expect("group body");
    body["id"].as_i64().expect("group id")
}

/// `pairs` pairs of users writing to each other at `rate` messages per second each, the two
/// members of a pair on different instances (so a message crosses the bus when there is one).
pub fn pairs(pairs: usize, rate: f64) -> Vec<Spec> {
    let mut specs = Vec::new();
    for pair in 0..pairs {
        let a = format!("u{pair}a");
        let b = format!("u{pair}b");
        specs.push(Spec::new(&a, &b, 2 * pair, rate));
        specs.push(Spec::new(&b, &a, 2 * pair + 1, rate));
    }
    specs
}

async fn register(http: &reqwest::Client, addr: &str, username: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let reply = http
            .post(format!("http://{addr}/api/auth/register"))
            .json(&json!({"username": username, "password": PASSWORD}))
            .send()
            .await;
        if let Ok(reply) = reply {
            let status = reply.status();
            let body: Value = reply.json().await.unwrap_or(Value::Null);
            if status.as_u16() == 201 {
                return body["access_token"]
                    .as_str()
                    .expect("access_token")
                    .to_string();
            }
            assert!(
                Instant::now() < deadline,
                "register {username}: {status} {body}"
            );
        }
        assert!(Instant::now() < deadline, "register {username}: no answer");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

impl Traffic {
    /// Registers the users and starts their clients.
    pub async fn start(addrs: &[String], specs: Vec<Spec>) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("http");
        let addrs = Arc::new(addrs.to_vec());
        let mut clients: Vec<Client> = Vec::new();
        for spec in &specs {
            let token = register(&http, &addrs[0], &spec.user).await;
            clients.push(Client::new(&spec.user, &spec.peer, &token));
        }
        // Each group, made by its first member once all are registered.
        let mut groups: HashMap<String, i64> = HashMap::new();
        for (i, spec) in specs.iter().enumerate() {
            let Some(members) = &spec.group else { continue };
            if !groups.contains_key(&spec.peer) {
                let owner = clients
                    .iter()
                    .find(|c| c.user == members[0])
                    .expect("the group's owner has a client");
                let id = create_group(&http, &addrs[0], &owner.access, &spec.peer, members).await;
                groups.insert(spec.peer.clone(), id);
            }
            clients[i].conversation = groups.get(&spec.peer).copied();
            clients[i].recipients = members
                .iter()
                .filter(|m| **m != spec.user)
                .cloned()
                .collect();
        }
        let mut tasks = Vec::new();
        for (client, spec) in clients.iter().zip(&specs) {
            client.state().sending = true;
            let config = Config {
                addrs: addrs.clone(),
                rate: spec.rate,
                small_rcvbuf: spec.small_rcvbuf,
                first_instance: spec.first_instance,
                padding: spec.padding,
            };
            tasks.push(tokio::spawn(client.clone().run(config)));
        }
        let traffic = Self { clients, tasks };
        // Every client connected once before any fault.
        let deadline = Instant::now() + Duration::from_secs(20);
        while traffic.clients.iter().any(|c| c.state().connects == 0) {
            assert!(
                Instant::now() < deadline,
                "clients never connected at the start"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        traffic
    }

    pub fn client(&self, user: &str) -> &Client {
        self.clients
            .iter()
            .find(|c| c.user == user)
            .unwrap_or_else(|| panic!("no client {user}"))
    }

    pub fn index(&self, user: &str) -> usize {
        self.clients
            .iter()
            .position(|c| c.user == user)
            .unwrap_or_else(|| panic!("no client {user}"))
    }

    pub fn stop_sending(&self) {
        for client in &self.clients {
            client.state().sending = false;
        }
    }

    /// Total `message` frames received so far.
    pub fn frames_received(&self) -> u64 {
        self.clients.iter().map(|c| c.state().live_deliveries).sum()
    }

    pub fn acked(&self) -> usize {
        self.clients.iter().map(|c| c.state().acked.len()).sum()
    }

    /// Makes the given clients reconnect and resume; waits (bounded) until each has had its
    /// `replay_end`. Returns whether all did.
    pub async fn resume(&self, which: &[usize], within: Duration) -> bool {
        let mut wanted = Vec::new();
        for &i in which {
            let mut s = self.clients[i].state();
            s.resume_requested += 1;
            wanted.push((i, s.resume_requested));
        }
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if wanted
                .iter()
                .all(|&(i, want)| self.clients[i].state().resumes_done >= want)
            {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    /// Ends the traffic and computes the counts: stop sending, wait until every outbox is empty,
    /// then resume every client until nothing new arrives (bounded).
    pub async fn settle(mut self, db: &PrivateDb, label: &str) -> Report {
        self.stop_sending();
        let deadline = Instant::now() + Duration::from_secs(45);
        while self.clients.iter().any(|c| c.state().unacked() > 0) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let all: Vec<usize> = (0..self.clients.len()).collect();
        let mut previous = None;
        let mut resumed_all = false;
        for _round in 0..5 {
            tokio::time::sleep(Duration::from_millis(500)).await;
            resumed_all = self.resume(&all, Duration::from_secs(20)).await;
            let now = (self.frames_received(), self.acked());
            if resumed_all && previous == Some(now) {
                break;
            }
            previous = Some(now);
        }
        for client in &self.clients {
            client.state().stop = true;
        }
        for task in self.tasks.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
        let mut report = Report::compute(label, &self.clients, db);
        report.resumed_all = resumed_all;
        eprintln!("{}", report.line());
        report
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

#[derive(Debug, Default)]
pub struct Report {
    pub label: String,
    pub sent: usize,
    pub acked: usize,
    pub stored: usize,
    /// Acked messages that reached a recipient, counted per recipient (a group message to two
    /// others counts twice): what `lost` is counted against.
    pub delivered: usize,
    pub duplicates: u64,
    /// Acked messages that never reached a recipient, per recipient.
    pub lost: usize,
    pub internal_errors: u64,
    pub db_unavailable: u64,
    pub reconnects: u64,
    pub out_of_order: usize,
    pub resyncs: u64,
    pub acked_not_stored: usize,
    pub stored_not_acked: usize,
    pub id_mismatch: usize,
    pub other_errors: Vec<String>,
    pub lost_examples: Vec<String>,
    pub unacked_examples: Vec<String>,
    pub out_of_order_examples: Vec<String>,
    pub closes: Vec<(String, Close)>,
    pub resumed_all: bool,
}

impl Report {
    fn compute(label: &str, clients: &[Client], db: &PrivateDb) -> Self {
        let mut r = Report {
            label: label.to_string(),
            ..Report::default()
        };
        // What the database holds: (sender, client_msg_id) -> id.
        let rows = db.query(
            "SELECT u.username, m.client_msg_id, m.seq FROM events m \
             JOIN users u ON u.id = m.sender_id WHERE m.kind = 'text'",
        );
        let stored: HashMap<(String, String), i64> = rows
            .into_iter()
            .filter(|row| row.len() == 3)
            .map(|row| {
                (
                    (row[0].clone(), row[1].clone()),
                    row[2].parse().expect("id"),
                )
            })
            .collect();
        r.stored = stored.len();
        let by_user: HashMap<&str, &Client> =
            clients.iter().map(|c| (c.user.as_str(), c)).collect();
        for client in clients {
            let s = client.state();
            r.sent += s.sent.len();
            r.acked += s.acked.len();
            r.duplicates += s.duplicates + s.ack_conflicts;
            r.internal_errors += s.internal_errors;
            r.db_unavailable += s.db_unavailable;
            r.reconnects += s.connects.saturating_sub(1 + s.requested_reconnects);
            r.resyncs += s.resyncs;
            r.out_of_order += s.out_of_order.len();
            for (before, id, replaying) in s.out_of_order.iter().take(3) {
                let when = if *replaying { "in the replay" } else { "live" };
                r.out_of_order_examples
                    .push(format!("{} got {id} after {before} ({when})", client.user));
            }
            r.other_errors
                .extend(s.other_errors.iter().take(3).cloned());
            if r.unacked_examples.len() < 5 {
                let on = s.last_instance.map_or("never connected".to_string(), |i| {
                    format!("last on instance {i}")
                });
                for (cmid, attempts) in s.unacked_examples(2) {
                    r.unacked_examples
                        .push(format!("{cmid} (sent {attempts} times, {on})"));
                }
            }
            r.closes
                .extend(s.closes.iter().map(|c| (client.user.clone(), c.clone())));
            for (cmid, &id) in &s.acked {
                match stored.get(&(client.user.clone(), cmid.clone())) {
                    None => r.acked_not_stored += 1,
                    Some(&row) if row != id => r.id_mismatch += 1,
                    Some(_) => {}
                }
            }
            // Delivered: each recipient (the peer, or the group's other members) has it (live,
            // replayed, or loaded after a resync).
            for recipient in &client.recipients {
                let peer = by_user[recipient.as_str()];
                if std::ptr::eq(peer, client) {
                    continue;
                }
                let ps = peer.state();
                for (cmid, &id) in &s.acked {
                    if peer.has(&ps, id) {
                        r.delivered += 1;
                    } else {
                        r.lost += 1;
                        if r.lost_examples.len() < 5 {
                            r.lost_examples.push(format!(
                                "{cmid} (id {id}) never reached {} (its cursor {})",
                                peer.user, ps.cursor
                            ));
                        }
                    }
                }
            }
        }
        for (user, cmid) in stored.keys() {
            let acked = by_user
                .get(user.as_str())
                .is_some_and(|c| c.state().acked.contains_key(cmid));
            if !acked {
                r.stored_not_acked += 1;
            }
        }
        r
    }

    pub fn line(&self) -> String {
        format!(
            "[faults] {}: sent {} / acked {} / stored {} / delivered {} / duplicates {} / lost {} \
             | internal_errors {} database_unavailable {} reconnects {} out_of_order {} resyncs {} \
             acked_not_stored {} stored_not_acked {} id_mismatch {}{}{}{}{}{}",
            self.label,
            self.sent,
            self.acked,
            self.stored,
            self.delivered,
            self.duplicates,
            self.lost,
            self.internal_errors,
            self.db_unavailable,
            self.reconnects,
            self.out_of_order,
            self.resyncs,
            self.acked_not_stored,
            self.stored_not_acked,
            self.id_mismatch,
            if self.resumed_all {
                ""
            } else {
                " | NOT every client finished its final resume"
            },
            examples(" | lost e.g. ", &self.lost_examples),
            examples(" | never acked e.g. ", &self.unacked_examples),
            examples(" | out of order e.g. ", &self.out_of_order_examples),
            examples(" | errors e.g. ", &self.other_errors),
        )
    }

    /// The claims of issue #11: nothing acknowledged is lost, nothing is duplicated, every send
    /// is eventually acked and stored once, DB failures answer `database_unavailable`, and every
    /// connection delivers in id order.
    pub fn assert_clean(&self) {
        self.assert_clean_and(&[]);
    }

    /// [`Self::assert_clean`], also failing with the scenario's own `problems` (close codes,
    /// fail-fast answers, subscriptions), all reported together.
    pub fn assert_clean_and(&self, problems: &[String]) {
        let mut failures = Vec::new();
        if self.lost > 0 {
            failures.push(format!("{} acked messages never delivered", self.lost));
        }
        if self.duplicates > 0 {
            failures.push(format!("{} duplicates", self.duplicates));
        }
        if self.acked != self.sent {
            failures.push(format!(
                "{} of {} sent never acked",
                self.sent - self.acked,
                self.sent
            ));
        }
        if self.acked_not_stored > 0 || self.id_mismatch > 0 {
            failures.push(format!(
                "{} acked but not stored, {} stored under another id",
                self.acked_not_stored, self.id_mismatch
            ));
        }
        if self.stored_not_acked > 0 {
            failures.push(format!("{} stored but never acked", self.stored_not_acked));
        }
        if self.out_of_order > 0 {
            failures.push(format!(
                "{} messages arrived out of id order on a connection",
                self.out_of_order
            ));
        }
        if self.internal_errors > 0 {
            failures.push(format!(
                "{} sends answered internal_error (want database_unavailable)",
                self.internal_errors
            ));
        }
        if !self.resumed_all {
            failures.push("some client never completed its final resume".to_string());
        }
        if !self.other_errors.is_empty() {
            failures.push(format!("unexpected errors: {:?}", self.other_errors));
        }
        failures.extend(problems.iter().take(10).cloned());
        if problems.len() > 10 {
            failures.push(format!("and {} more", problems.len() - 10));
        }
        assert!(
            failures.is_empty(),
            "{}: {}\n{}",
            self.label,
            failures.join("; "),
            self.line()
        );
    }
}

fn examples(prefix: &str, items: &[String]) -> String {
    if items.is_empty() {
        String::new()
    } else {
        format!("{prefix}{}", items.join(", "))
    }
}
