//! Several message writers commit concurrently; a client that keeps resuming must still see every
//! acked message exactly once and in increasing id order (its cursor is the highest id it has
//! seen, so a lower id shown after a higher one would be skipped for good).

use std::cell::{Cell, RefCell};
use std::collections::BTreeSet;
use std::time::Duration;

use diesel::connection::SimpleConnection;
use futures_util::future::join_all;
use serde_json::json;

use crate::helpers::TestApp;
use crate::on_every_backend;

on_every_backend!(@with |s: &mut pychat::config::Settings| {
        s.database_pool_size = 12;
        s.message_writers = Some(6);
        s.replay_max = 1_000_000;
    };
    resuming_client_misses_nothing_while_writers_race,
);

const SENDERS: usize = 8;
const PER_SENDER: usize = 240;
/// Sends in flight per sender before it waits for their acks.
const WINDOW: usize = 40;

/// PostgreSQL: every so often a COMMIT takes 50 ms longer (a deferred trigger runs at commit
/// time, after the writer let go of the intake lock), so later batches regularly commit before
/// earlier ones: the case the released watermark is for. Without the watermark this test loses
/// messages within a run or two.
fn slow_some_commits(app: &TestApp) {
    if !app.db.url.starts_with("postgres") {
        return;
    }
    app.db
        .connect()
        .with_connection(|conn| {
            conn.batch_execute(
                "CREATE FUNCTION slow_commit() RETURNS trigger LANGUAGE plpgsql AS $$ \
                 BEGIN IF NEW.seq % 31 = 0 THEN PERFORM pg_sleep(0.05); END IF; RETURN NULL; END $$; \
                 CREATE CONSTRAINT TRIGGER slow_commit AFTER INSERT ON events \
                 DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION slow_commit();",
            )?;
            Ok(())
        })
        .expect("install the slow-commit trigger");
}

async fn resuming_client_misses_nothing_while_writers_race(app: TestApp) {
    slow_some_commits(&app);
    let rcpt = app.register("rcpt").await;
    let mut senders = Vec::new();
    for i in 0..SENDERS {
        let session = app.register(&format!("sender{i}")).await;
        senders.push(app.connect(&session, None).await);
    }
    let acked: RefCell<BTreeSet<i64>> = RefCell::new(BTreeSet::new());
    let senders_done = Cell::new(0usize);

    let send_all = senders.into_iter().enumerate().map(|(i, mut ws)| {
        let acked = &acked;
        let senders_done = &senders_done;
        async move {
            for window in 0..PER_SENDER / WINDOW {
                for j in 0..WINDOW {
                    let n = window * WINDOW + j;
                    ws.send(json!({"type": "send", "to": "rcpt", "body": format!("s{i} m{n}"), "client_msg_id": format!("s{i}-{n}")}))
                        .await;
                }
                for _ in 0..WINDOW {
                    let ack = ws.recv_type("ack").await;
                    let id = ack["message"]["id"].as_i64().expect("acked id");
                    assert!(acked.borrow_mut().insert(id), "id {id} acked twice");
                }
            }
            senders_done.set(senders_done.get() + 1);
            ws.close().await;
        }
    });

    let total = SENDERS * PER_SENDER;
    let receive = async {
        let mut cursor = 0i64;
        let mut seen = Vec::new();
        let mut reconnects = 0u32;
        loop {
            let all_acked = senders_done.get() == SENDERS;
            if all_acked && seen.len() == total {
                break;
            }
            assert!(
                reconnects < 1_000,
                "gave up after {reconnects} reconnects with {} of {total} seen",
                seen.len()
            );
            reconnects += 1;
            // Always a resume, the first time too (`after=0`): messages may be stored already.
            let mut ws = app.connect(&rcpt, Some(cursor)).await;
            // Read a few frames (replay and live), then drop the connection mid-stream.
            let budget = 1 + (reconnects as usize * 7) % 60;
            let mut taken = 0;
            let before = seen.len();
            while taken < budget {
                let wait = if all_acked {
                    Duration::from_millis(500)
                } else {
                    Duration::from_millis(30)
                };
                let Some(frame) = ws.recv_within(wait).await else {
                    break;
                };
                match frame["type"].as_str() {
                    Some("message") => {
                        let id = frame["message"]["id"].as_i64().expect("id");
                        assert!(
                            id > cursor,
                            "message {id} arrived after {cursor}: out of order or twice"
                        );
                        cursor = id;
                        seen.push(id);
                        taken += 1;
                    }
                    Some("replay_end") => {
                        cursor = cursor.max(frame["last_id"].as_i64().expect("last_id"));
                    }
                    Some("resync_required") => panic!("replay_max is raised for this test"),
                    _ => {}
                }
            }
            ws.close().await;
            if all_acked && seen.len() == before {
                // Everything is acked and a whole connection (replay, then 500 ms) brought
                // nothing new: whatever is still missing is lost.
                break;
            }
        }
        (seen, reconnects)
    };

    let (_, (seen, reconnects)) = tokio::join!(join_all(send_all), receive);
    let acked = acked.into_inner();
    assert_eq!(acked.len(), total, "every send acked");
    let seen_set: BTreeSet<i64> = seen.iter().copied().collect();
    let missing: Vec<&i64> = acked.difference(&seen_set).take(10).collect();
    assert!(
        missing.is_empty(),
        "acked but never seen by the resuming client ({reconnects} reconnects): {missing:?}…"
    );
    assert_eq!(seen_set, acked, "seen exactly the acked messages");
    assert!(seen.windows(2).all(|w| w[0] < w[1]));
}
