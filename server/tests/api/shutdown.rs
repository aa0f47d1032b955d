//! Closing: a client's close is answered.

use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::helpers::{Backend, spawn_app};

#[actix_web::test]
async fn a_client_close_is_answered_with_its_code() {
    let app = spawn_app(Backend::Sqlite).await.expect("sqlite");
    let alice = app.register("alice").await;
    for code in [1000, 4321] {
        let mut a = app.connect(&alice, None).await;
        a.send_raw(Message::Close(Some(CloseFrame {
            code: CloseCode::from(code),
            reason: "bye".into(),
        })))
        .await;
        assert_eq!(a.closed().await, Some(code), "the answering close");
    }
}
