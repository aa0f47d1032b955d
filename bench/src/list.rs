//! `list`: the conversation list of a user in many conversations. `conversations` other users
//! each send the user `unread` messages (over their own WebSocket, acked: the data is written
//! by the server the way it always is), then one client asks for the first page of the user's
//! conversations `requests` times in a row and records each answer's time.

use std::sync::Arc;
use std::time::Instant;

use futures_util::SinkExt;
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use crate::client::{self, Result, Server};

pub struct Args {
    pub conversations: usize,
    /// Messages each other user sends (all unread by the listing user).
    pub unread: usize,
    /// Conversations per page (the server allows at most 100).
    pub page: usize,
    pub requests: usize,
    pub sources: String,
}

pub async fn run(server: Server, args: Args) -> Result<Value> {
    let sources = client::sources(&args.sources)?;
    let prefix = client::run_prefix();
    let me = format!("{prefix}-lister");
    let token = server.account(&me).await?;
    let gate = Arc::new(Semaphore::new(32));
    let mut writing = Vec::new();
    for c in 0..args.conversations.max(1) {
        let (server, gate, me) = (server.clone(), gate.clone(), me.clone());
        let source = sources[c % sources.len()];
        let (prefix, unread) = (prefix.clone(), args.unread.max(1));
        writing.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await;
            let token = server.account(&format!("{prefix}-lp{c}")).await?;
            let mut ws = server.connect(source, &token, false).await?;
            for m in 0..unread {
                let id = format!("c{m}");
                let frame = json!({"type": "send", "id": id, "to": me, "body": format!("message {m}"), "client_msg_id": id});
                ws.send(client::text(&frame)).await?;
                loop {
                    let reply = client::next_json(&mut ws).await?;
                    if reply["id"] == id.as_str() {
                        if reply["type"] != "ack" {
                            return Err(format!("send: {reply}").into());
                        }
                        break;
                    }
                }
            }
            let _ = ws.close(None).await;
            Ok::<_, client::Error>(())
        }));
    }
    for task in writing {
        task.await??;
    }

    let url = format!(
        "{}/api/conversations?limit={}",
        server.http,
        args.page.clamp(1, 100)
    );
    let mut latency = client::histogram();
    let mut listed = 0;
    for _ in 0..args.requests.max(1) {
        let asked = Instant::now();
        let response = server
            .http_client
            .get(&url)
            .bearer_auth(&token)
            .send()
            .await?;
        let status = response.status();
        let body: Value = response.json().await?;
        latency.saturating_record(u64::try_from(asked.elapsed().as_micros()).unwrap_or(u64::MAX));
        if !status.is_success() {
            return Err(format!("list: HTTP {status}: {body}").into());
        }
        listed = body["conversations"].as_array().map_or(0, Vec::len);
    }
    Ok(json!({
        "scenario": "list",
        "target": "pychat",
        "conversations": args.conversations,
        "unread_each": args.unread,
        "page": args.page,
        "listed": listed,
        "requests": args.requests,
        "latency": client::summary(&latency),
    }))
}
