//! The scenarios of issue #11. Each starts its own processes, runs the traffic, breaks
//! something, repairs it, settles and checks the counts; checks specific to a fault (close
//! codes, fail-fast answers, Redis subscriptions) are collected and asserted after the counts
//! are printed, so every run prints its line.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::time::sleep;
use tokio_tungstenite::tungstenite::Message;

use crate::on_db_backends;
use crate::procs::Backend;
use crate::rig::{Rig, SHUTDOWN_TIMEOUT};
use crate::traffic::{Spec, Traffic, mixed};

const PAIRS: usize = 8;
/// Messages per second per client: 16 clients, ~240 messages/s in all.
const RATE: f64 = 15.0;

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

fn label(scenario: &str, backend: Backend) -> String {
    format!("{scenario}/{}", backend.name())
}

on_db_backends!(
    baseline,
    instance_killed,
    redis_restarted_empty,
    redis_stall_during_resume,
    database_outage,
    database_crash_cycles,
    instance_sigterm,
    slow_consumer,
    random_faults,
);

/// Scenario 1: Two instances and a Redis, no fault: the harness itself must count everything clean.
async fn baseline(backend: Backend) {
    let Some(rig) = Rig::start(backend, 2, true).await else {
        return;
    };
    let traffic = Traffic::start(&rig.addrs(), mixed(PAIRS, RATE)).await;
    sleep(secs(12.0)).await;
    traffic
        .settle(&rig.db, &label("baseline", backend))
        .await
        .assert_clean();
}

/// Scenario 2: SIGKILL one of two instances mid-traffic; its clients move to the survivor; it comes
/// back later.
async fn instance_killed(backend: Backend) {
    let Some(mut rig) = Rig::start(backend, 2, true).await else {
        return;
    };
    let traffic = Traffic::start(&rig.addrs(), mixed(PAIRS, RATE)).await;
    sleep(secs(5.0)).await;
    rig.instances[1].kill();
    sleep(secs(8.0)).await;
    rig.instances[1].start().await;
    sleep(secs(5.0)).await;
    traffic
        .settle(&rig.db, &label("instance_killed", backend))
        .await
        .assert_clean();
}

/// Scenario 3: Redis killed for 10 s and restarted empty: subscriptions come back, `/readyz` returns to
/// bus `ok`, and cross-instance delivery works again without clients reconnecting.
async fn redis_restarted_empty(backend: Backend) {
    let Some(mut rig) = Rig::start(backend, 2, true).await else {
        return;
    };
    let traffic = Traffic::start(&rig.addrs(), mixed(PAIRS, RATE)).await;
    let mut problems = Vec::new();
    sleep(secs(4.0)).await;
    // The probe itself: before the fault, the user channels are there.
    let before = rig.redis().channels();
    assert!(
        before.iter().any(|c| c.starts_with("pychat:u:")),
        "PUBSUB CHANNELS shows no user channel before the fault: {before:?}"
    );
    rig.redis().kill();
    sleep(secs(10.0)).await;
    rig.redis().restart().await;
    if !rig.bus_ok_everywhere(secs(15.0)).await {
        problems.push("/readyz never reported bus ok on every instance".to_string());
    }
    let bus_ok = Instant::now();
    // Every connected user's channel is subscribed again, soon after /readyz says `ok`.
    let ids: std::collections::HashMap<String, String> = rig
        .db
        .query("SELECT username, id FROM users")
        .into_iter()
        .map(|row| (row[0].clone(), row[1].clone()))
        .collect();
    let missing = loop {
        let channels = rig.redis().channels();
        let missing: Vec<String> = traffic
            .clients
            .iter()
            .filter(|c| c.state().connected_to.is_some())
            .map(|c| format!("pychat:u:{}", ids[&c.user]))
            .filter(|channel| !channels.contains(channel))
            .collect();
        if missing.is_empty() || bus_ok.elapsed() > secs(20.0) {
            break missing;
        }
        sleep(secs(0.2)).await;
    };
    if !missing.is_empty() {
        problems.push(format!(
            "20 s after /readyz said bus ok, still not subscribed again: {missing:?} (PUBSUB \
             CHANNELS: {:?})",
            rig.redis().channels()
        ));
    } else if bus_ok.elapsed() > secs(5.0) {
        problems.push(format!(
            "the user channels were subscribed again only {:?} after /readyz said bus ok",
            bus_ok.elapsed()
        ));
    }
    // Cross-instance live delivery, on the connections that lived through the outage.
    let before: Vec<(u64, u64)> = traffic
        .clients
        .iter()
        .map(|c| {
            let s = c.state();
            (s.connects, s.live_deliveries)
        })
        .collect();
    sleep(secs(4.0)).await;
    for (client, (connects, frames)) in traffic.clients.iter().zip(before) {
        let s = client.state();
        if s.connects == connects && s.live_deliveries == frames {
            problems.push(format!(
                "{} received nothing live for 4 s after Redis came back (same connection)",
                client.user
            ));
        }
    }
    let l = label("redis_restarted_empty", backend);
    traffic
        .settle(&rig.db, &l)
        .await
        .assert_clean_and(&problems);
}

/// Scenario 4: Redis stalled 2 s (SIGSTOP) while a receiver reconnects: during the stall its newest id
/// moves ahead with messages from a sender on its own instance, while earlier messages from the
/// other instance wait in Redis. A resume from that newest id must still miss nothing.
async fn redis_stall_during_resume(backend: Backend) {
    let Some(mut rig) = Rig::start(backend, 2, true).await else {
        return;
    };
    let mut specs = mixed(4, RATE);
    // "rcv" lives on instance 0; "far" writes to it from instance 1, "near" from instance 0.
    specs.push(Spec::new("rcv", "far", 0, 2.0));
    specs.push(Spec::new("far", "rcv", 1, 40.0));
    specs.push(Spec::new("near", "rcv", 0, 40.0));
    let traffic = Traffic::start(&rig.addrs(), specs).await;
    let r = traffic.index("rcv");
    let mut problems = Vec::new();
    sleep(secs(3.0)).await;
    for cycle in 0..3 {
        rig.redis().stall();
        sleep(secs(1.0)).await;
        traffic.client("rcv").state().prefer = Some(0);
        let resumed = traffic.resume(&[r], secs(0.9)).await;
        sleep(secs(1.0)).await;
        rig.redis().resume();
        if !resumed && !traffic.resume(&[r], secs(10.0)).await {
            problems.push(format!("rcv never resumed after stall {cycle}"));
        }
        sleep(secs(3.0)).await;
    }
    let l = label("redis_stall_during_resume", backend);
    traffic
        .settle(&rig.db, &l)
        .await
        .assert_clean_and(&problems);
}

/// Scenario 5: The database stopped for 10 s and restarted, under a two-instance cluster: sends get
/// `database_unavailable` (never an ack, never `internal_error`) and are retried; REST and
/// `/readyz` answer 503 fast (within 1.5 s), not after a pool timeout.
async fn database_outage(backend: Backend) {
    let Some(mut rig) = Rig::start(backend, 2, true).await else {
        return;
    };
    let traffic = Traffic::start(&rig.addrs(), mixed(PAIRS, RATE)).await;
    let token = traffic.clients[0].access.clone();
    let mut problems = Vec::new();
    sleep(secs(4.0)).await;
    rig.db.crash();
    let down = Instant::now();
    let probes = async {
        let mut found = Vec::new();
        sleep(secs(1.0)).await;
        while down.elapsed() < secs(8.0) {
            for i in 0..rig.instances.len() {
                let me = rig.get(i, "/api/me", Some(&token)).await;
                if me.status != 503
                    || me.body["error"]["code"] != "database_unavailable"
                    || me.took > secs(1.5)
                {
                    found.push(format!(
                        "GET /api/me on instance {i} during the outage: {} {} after {:?} \
                         (want 503 database_unavailable within 1.5 s)",
                        me.status, me.body, me.took
                    ));
                }
                let ready = rig.get(i, "/readyz", None).await;
                if ready.status != 503 || ready.took > secs(1.5) {
                    found.push(format!(
                        "/readyz on instance {i} during the outage: {} {} after {:?} \
                         (want 503 within 1.5 s)",
                        ready.status, ready.body, ready.took
                    ));
                }
            }
            sleep(secs(1.0)).await;
        }
        found
    };
    let (found, ()) = tokio::join!(probes, sleep(secs(10.0)));
    problems.extend(found);
    rig.db.restart().await;
    if !rig.db_answers(secs(20.0)).await {
        problems.push("/readyz never answered 200 after the database came back".to_string());
    }
    sleep(secs(4.0)).await;
    let l = label("database_outage", backend);
    let report = traffic.settle(&rig.db, &l).await;
    if report.db_unavailable == 0 {
        problems.push("no send was answered database_unavailable during the outage".to_string());
    }
    report.assert_clean_and(&problems);
}

/// Scenario 6: The database crashed for 2 s, four times, while batches are being committed.
async fn database_crash_cycles(backend: Backend) {
    let Some(mut rig) = Rig::start(backend, 2, true).await else {
        return;
    };
    let traffic = Traffic::start(&rig.addrs(), mixed(PAIRS, 20.0)).await;
    sleep(secs(3.0)).await;
    for _ in 0..4 {
        rig.db.crash();
        sleep(secs(2.0)).await;
        rig.db.restart().await;
        sleep(secs(3.0)).await;
    }
    traffic
        .settle(&rig.db, &label("database_crash_cycles", backend))
        .await
        .assert_clean();
}

/// A client-initiated close gets the server's answering Close frame (RFC 6455 5.5.1).
async fn close_is_answered(rig: &Rig, token: &str) -> Result<(), String> {
    let ticket: serde_json::Value = rig
        .http
        .post(format!("http://{}/api/ws/ticket", rig.instances[0].addr()))
        .bearer_auth(token)
        .send()
        .await
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| e.to_string())?;
    let url = format!(
        "ws://{}/ws?ticket={}",
        rig.instances[0].addr(),
        ticket["ticket"].as_str().unwrap_or_default()
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(url)
        .await
        .map_err(|e| e.to_string())?;
    socket
        .send(Message::Close(None))
        .await
        .map_err(|e| e.to_string())?;
    let deadline = Instant::now() + secs(3.0);
    while Instant::now() < deadline {
        match tokio::time::timeout(secs(1.0), socket.next()).await {
            Ok(Some(Ok(Message::Close(_)))) => return Ok(()),
            Ok(Some(Ok(_))) => continue,
            Ok(Some(Err(e))) => return Err(format!("ended without an answering Close: {e}")),
            Ok(None) => return Err("ended without an answering Close".to_string()),
            Err(_) => continue,
        }
    }
    Err("no answering Close within 3 s".to_string())
}

/// Scenario 7: SIGTERM one instance under traffic: its clients get Close 1001 (not a dropped
/// connection), in-flight sends are answered or safely retried, the process exits within
/// `PYCHAT_SHUTDOWN_TIMEOUT_SECS`.
async fn instance_sigterm(backend: Backend) {
    let Some(mut rig) = Rig::start(backend, 2, true).await else {
        return;
    };
    let traffic = Traffic::start(&rig.addrs(), mixed(PAIRS, RATE)).await;
    let mut problems = Vec::new();
    sleep(secs(2.0)).await;
    if let Err(e) = close_is_answered(&rig, &traffic.clients[0].access).await {
        problems.push(format!("client-initiated close: {e}"));
    }
    sleep(secs(2.0)).await;
    let on_doomed: Vec<String> = traffic
        .clients
        .iter()
        .filter(|c| c.state().connected_to == Some(1))
        .map(|c| c.user.clone())
        .collect();
    let termed = Instant::now();
    match rig.instances[1]
        .terminate(SHUTDOWN_TIMEOUT + secs(5.0))
        .await
    {
        Some(took) if took <= SHUTDOWN_TIMEOUT + secs(1.0) => {}
        Some(took) => problems.push(format!(
            "SIGTERM: exited after {took:?}, over PYCHAT_SHUTDOWN_TIMEOUT_SECS={}",
            SHUTDOWN_TIMEOUT.as_secs()
        )),
        None => problems.push(format!(
            "SIGTERM: still running {:?} later (killed)",
            SHUTDOWN_TIMEOUT + secs(5.0)
        )),
    }
    sleep(secs(2.0)).await;
    for user in &on_doomed {
        let s = traffic.client(user).state();
        let close = s.closes.iter().find(|c| c.instance == 1 && c.at >= termed);
        match close {
            Some(c) if c.code == Some(1001) => {}
            Some(c) => problems.push(format!(
                "{user}: closed with {:?} on SIGTERM, want 1001",
                c.code
            )),
            None => problems.push(format!("{user}: no close seen after SIGTERM")),
        }
    }
    rig.instances[1].start().await;
    sleep(secs(4.0)).await;
    let l = label("instance_sigterm", backend);
    traffic
        .settle(&rig.db, &l)
        .await
        .assert_clean_and(&problems);
}

/// Scenario 8: A receiver that stops reading is closed with 1008, then reconnects and resumes with
/// nothing lost; everyone else goes on unaffected meanwhile.
async fn slow_consumer(backend: Backend) {
    // The smallest queue the server accepts, so that it fills within seconds.
    let queue = [("PYCHAT_WS_OUTBOUND_QUEUE", "512")];
    let Some(rig) = Rig::start_with(backend, 2, true, &queue).await else {
        return;
    };
    let mut specs = mixed(4, RATE);
    let mut slow = Spec::new("slow", "fan0", 0, 2.0);
    slow.small_rcvbuf = true;
    specs.push(slow);
    for f in 0..4 {
        // Big messages: loopback sockets buffer megabytes before the server's queue fills.
        let mut fan = Spec::new(&format!("fan{f}"), "slow", f, 50.0);
        fan.padding = 3500;
        specs.push(fan);
    }
    let traffic = Traffic::start(&rig.addrs(), specs).await;
    let mut problems = Vec::new();
    sleep(secs(2.0)).await;
    let others: Vec<usize> = (0..8).collect();
    let before: Vec<(u64, u64, usize)> = traffic
        .clients
        .iter()
        .map(|c| {
            let s = c.state();
            (s.connects, s.live_deliveries, s.acked.len())
        })
        .collect();
    traffic.client("slow").state().paused = true;
    let paused_at = Instant::now();
    // ~700 KB/s to the stalled reader (200 messages of 3.5 KB); the others checked every 2 s.
    let mut last: Vec<u64> = before.iter().map(|b| b.1).collect();
    while paused_at.elapsed() < secs(14.0) {
        sleep(secs(2.0)).await;
        for &i in &others {
            let s = traffic.clients[i].state();
            if s.live_deliveries == last[i] {
                problems.push(format!(
                    "{} got nothing for 2 s while another user was not reading",
                    traffic.clients[i].user
                ));
            }
            last[i] = s.live_deliveries;
        }
    }
    for (i, client) in traffic.clients.iter().enumerate() {
        let s = client.state();
        if client.user != "slow" && s.connects != before[i].0 {
            problems.push(format!("{} reconnected meanwhile", client.user));
        }
        if client.user.starts_with("fan") && s.acked.len() == before[i].2 {
            problems.push(format!(
                "{}'s sends to the slow reader were not acked",
                client.user
            ));
        }
    }
    traffic.client("slow").state().paused = false;
    sleep(secs(4.0)).await;
    {
        let s = traffic.client("slow").state();
        if !s.closes.iter().any(|c| c.code == Some(1008)) {
            problems.push(format!(
                "the slow reader was never closed with 1008 (closes: {:?})",
                s.closes.iter().map(|c| c.code).collect::<Vec<_>>()
            ));
        }
    }
    let l = label("slow_consumer", backend);
    traffic
        .settle(&rig.db, &l)
        .await
        .assert_clean_and(&problems);
}

/// Scenario 9: The single-instance default (SQLite, no Redis) SIGKILLed under traffic and restarted on
/// the same file.
#[tokio::test(flavor = "current_thread")]
async fn sqlite_instance_killed() {
    let Some(mut rig) = Rig::start(Backend::Sqlite, 1, false).await else {
        return;
    };
    let traffic = Traffic::start(&rig.addrs(), mixed(PAIRS, RATE)).await;
    sleep(secs(5.0)).await;
    rig.instances[0].kill();
    sleep(secs(2.0)).await;
    rig.instances[0].start().await;
    sleep(secs(3.0)).await;
    rig.instances[0].kill();
    rig.instances[0].start().await;
    sleep(secs(5.0)).await;
    traffic
        .settle(&rig.db, "sqlite_instance_killed/sqlite")
        .await
        .assert_clean();
}

/// Scenario 10: A generated sequence of faults over a bounded time (`PYCHAT_SOAK_SECS`, 40 s by
/// default), from a seed (`PYCHAT_FAULT_SEED` replays one; printed on failure).
async fn random_faults(backend: Backend) {
    let seed: u64 = std::env::var("PYCHAT_FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    let duration = secs(
        std::env::var("PYCHAT_SOAK_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(40.0),
    );
    let l = format!("random_faults/{} seed={seed}", backend.name());
    eprintln!("[faults] {l}: {duration:?} of faults; replay with PYCHAT_FAULT_SEED={seed}");
    let Some(mut rig) = Rig::start(backend, 2, true).await else {
        return;
    };
    let mut rng = StdRng::seed_from_u64(seed);
    let traffic = Traffic::start(&rig.addrs(), mixed(PAIRS, RATE)).await;
    let started = Instant::now();
    let mut log = Vec::new();
    while started.elapsed() < duration {
        sleep(secs(rng.random_range(1.0..4.0))).await;
        let running: Vec<usize> = (0..rig.instances.len())
            .filter(|&i| rig.instances[i].is_running())
            .collect();
        let down: Vec<usize> = (0..rig.instances.len())
            .filter(|&i| !rig.instances[i].is_running())
            .collect();
        let action = rng.random_range(0..6);
        let at = started.elapsed().as_secs_f64();
        match action {
            0 | 1 if running.len() > 1 => {
                let i = running[rng.random_range(0..running.len())];
                if action == 0 {
                    rig.instances[i].kill();
                    log.push(format!("{at:.1}s SIGKILL {i}"));
                } else {
                    let took = rig.instances[i]
                        .terminate(SHUTDOWN_TIMEOUT + secs(5.0))
                        .await;
                    log.push(format!("{at:.1}s SIGTERM {i} (exit after {took:?})"));
                }
            }
            0..=2 if !down.is_empty() => {
                let i = down[0];
                rig.instances[i].start().await;
                log.push(format!("{at:.1}s restart {i}"));
            }
            3 => {
                let d = rng.random_range(0.5..6.0);
                rig.redis().kill();
                sleep(secs(d)).await;
                rig.redis().restart().await;
                log.push(format!("{at:.1}s redis killed for {d:.1}s"));
            }
            4 => {
                let d = rng.random_range(0.5..3.0);
                rig.redis().stall();
                sleep(secs(d)).await;
                rig.redis().resume();
                log.push(format!("{at:.1}s redis stalled {d:.1}s"));
            }
            _ => {
                let d = rng.random_range(0.5..5.0);
                rig.db.crash();
                sleep(secs(d)).await;
                rig.db.restart().await;
                log.push(format!("{at:.1}s database crashed for {d:.1}s"));
            }
        }
    }
    for i in 0..rig.instances.len() {
        if !rig.instances[i].is_running() {
            rig.instances[i].start().await;
            log.push(format!("end: restart {i}"));
        }
    }
    eprintln!("[faults] {l}: {}", log.join(", "));
    sleep(secs(3.0)).await;
    traffic.settle(&rig.db, &l).await.assert_clean();
}
