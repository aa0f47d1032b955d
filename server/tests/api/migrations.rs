//! Upgrades keep what users have: data written through an older schema, then the migrations
//! run by the application's start, then checked through the API as a user sees it.

use std::sync::Arc;

use diesel::connection::SimpleConnection;
use diesel_migrations::MigrationHarness;
use pychat::db::DbConnection;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Backend, PASSWORD, Session, TestApp, TestDb, session_from, spawn_instance};

/// Applies the backend's migrations that come before `first_not_run` (a migration's name).
fn migrate_before(conn: &mut DbConnection, backend: Backend, first_not_run: &str) {
    let backend = match backend {
        Backend::Sqlite => pychat::db::Backend::Sqlite,
        Backend::Postgres => pychat::db::Backend::Postgres,
        Backend::Mysql => pychat::db::Backend::Mysql,
    };
    macro_rules! run_before {
        ($conn:expr) => {{
            let pending = $conn
                .pending_migrations(pychat::db::migrations(backend))
                .expect("list migrations");
            let older: Vec<_> = pending
                .iter()
                .take_while(|m| !m.name().to_string().contains(first_not_run))
                .collect();
            assert!(
                older.len() < pending.len(),
                "{first_not_run} is not a migration"
            );
            for migration in older {
                $conn
                    .run_migration(migration.as_ref())
                    .expect("run an older migration");
            }
        }};
    }
    match conn {
        DbConnection::Sqlite(c) => run_before!(c),
        DbConnection::Postgres(c) => run_before!(c),
        DbConnection::Mysql(c) => run_before!(c),
    }
}

async fn login(app: &TestApp, username: &str) -> Session {
    let reply = app.login(username, PASSWORD).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    session_from(&reply)
}

fn summary(conversation: &Value) -> Value {
    json!({
        "peer": conversation["peer"]["username"],
        "last": conversation["last_message"]["id"],
        "kind": conversation["last_message"]["kind"],
        "unread": conversation["unread_count"],
        "read": conversation["last_read_id"],
        "peer_read": conversation["peer_last_read_id"],
    })
}

/// Pairs of users with messages (the schema before conversations) become direct conversations
/// with their messages under the same ids, their read positions and missed calls; new messages
/// get ids above every id handed out before, even those of rows deleted since.
async fn pair_messages_become_direct_conversations(backend: Backend) {
    let Some(db) = TestDb::create(backend) else {
        return;
    };
    let hash = pychat::auth::password::PasswordHasher::new(4)
        .hash(PASSWORD.to_string())
        .await
        .expect("hash");
    db.connect()
        .with_connection(|conn| {
            migrate_before(conn, backend, "_conversations");
            conn.batch_execute(&format!(
                "INSERT INTO users (username, display_name, password_hash, created_at, updated_at) \
                 VALUES ('alice', 'Alice', '{hash}', '2026-01-01 00:00:00', '2026-01-01 00:00:00'), \
                        ('bob', 'Bob', '{hash}', '2026-01-01 00:00:00', '2026-01-01 00:00:00'), \
                        ('carol', 'Carol', '{hash}', '2026-01-01 00:00:00', '2026-01-01 00:00:00'), \
                        ('dave', 'Dave', '{hash}', '2026-01-01 00:00:00', '2026-01-01 00:00:00'); \
                 INSERT INTO messages \
                   (sender_id, recipient_id, user_low, user_high, kind, body, client_msg_id, created_at) \
                 VALUES (1, 2, 1, 2, 'text', 'hi bob', 'a-1', '2026-01-02 10:00:00'), \
                        (2, 1, 1, 2, 'text', 'hi alice', 'b-1', '2026-01-02 10:01:00'), \
                        (3, 1, 1, 3, 'missed_call', '', 'call-1', '2026-01-02 10:02:00'), \
                        (1, 4, 1, 4, 'text', 'to dave', 'a-2', '2026-01-02 10:03:00'), \
                        (1, 2, 1, 2, 'text', 'still there?', 'a-3', '2026-01-02 10:04:00'); \
                 INSERT INTO conversation_reads (user_id, peer_id, last_read_id) \
                 VALUES (1, 2, 2), (2, 1, 1); \
                 DELETE FROM messages WHERE id = 5; \
                 DELETE FROM users WHERE id = 4;"
            ))?;
            Ok(())
        })
        .expect("write through the old schema");

    let app = spawn_instance(Arc::new(db), |_| {}).await;
    let alice = login(&app, "alice").await;
    let reply = app.get("/api/conversations", &alice.access).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    let listed: Vec<Value> = reply.body["conversations"]
        .as_array()
        .expect("conversations")
        .iter()
        .map(summary)
        .collect();
    assert_eq!(
        listed,
        [
            json!({"peer": "carol", "last": 3, "kind": "missed_call", "unread": 1, "read": 0, "peer_read": 0}),
            json!({"peer": "bob", "last": 2, "kind": "text", "unread": 0, "read": 2, "peer_read": 1}),
        ]
    );
    let path = app.direct_path(&alice, "bob", "/messages").await;
    let history = app.get(&path, &alice.access).await;
    let messages: Vec<(i64, String, String, String)> = history.body["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| {
            (
                m["id"].as_i64().expect("id"),
                m["from"].as_str().expect("from").to_string(),
                m["to"].as_str().expect("to").to_string(),
                m["body"].as_str().expect("body").to_string(),
            )
        })
        .collect();
    assert_eq!(
        messages,
        [
            (1, "alice".into(), "bob".into(), "hi bob".into()),
            (2, "bob".into(), "alice".into(), "hi alice".into()),
        ]
    );

    // Bob resumes from his old cursor and gets what came after it, then a new message with an
    // id above the deleted ones (4: Dave's, 5: deleted), and a retry of an old key is refused
    // as a duplicate of the migrated original.
    let bob = login(&app, "bob").await;
    let mut bob_ws = app.connect(&bob, Some(1)).await;
    let replayed = bob_ws.next_of("message").await;
    assert_eq!(replayed["message"]["id"], 2);
    assert_eq!(replayed["message"]["body"], "hi alice");
    let mut alice_ws = app.connect(&alice, None).await;
    let ack = alice_ws
        .send_message("bob", "after the upgrade", "a-4")
        .await;
    let new_id = ack["message"]["id"].as_i64().expect("new id");
    assert!(
        new_id > 5,
        "a new message got id {new_id}, at or below an old one"
    );
    let live = bob_ws.next_of("message").await;
    assert_eq!(live["message"]["id"], new_id);
    assert_eq!(
        live["message"]["conversation_id"],
        replayed["message"]["conversation_id"]
    );
    let retry = alice_ws.send_message("bob", "hi bob", "a-1").await;
    assert_eq!(retry["message"]["id"], 1, "{retry}");
}

mod pair_messages_become_direct_conversations {
    use crate::helpers::Backend;

    #[actix_web::test]
    async fn sqlite() {
        super::pair_messages_become_direct_conversations(Backend::Sqlite).await;
    }

    #[actix_web::test]
    async fn postgres() {
        super::pair_messages_become_direct_conversations(Backend::Postgres).await;
    }

    #[actix_web::test]
    async fn mysql() {
        super::pair_messages_become_direct_conversations(Backend::Mysql).await;
    }
}
