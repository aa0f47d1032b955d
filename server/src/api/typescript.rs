//! The TypeScript declarations of the REST API's bodies, as committed in
//! `web/src/generated/api.ts`, generated from the same Rust types the handlers return (as the
//! WebSocket protocol is, in `ws::protocol::typescript`); a test fails when that file is stale.

use ts_rs::TS;

use crate::accounts::UserView;
use crate::calls::ice::{IceServer, IceServers};
use crate::chat::{
    ActiveCall, ConversationMember, ConversationPage, ConversationType, ConversationView,
    HistoryPage, MemberList, Presence, ReadState,
};
use crate::error::{ErrorBody, ErrorDetail, FieldError};

use super::auth::AuthResponse;
use super::users::{Profile, UserList};

pub fn typescript() -> String {
    let cfg = ts_rs::Config::new().with_large_int("number");
    let declarations = [
        UserView::decl(&cfg),
        Profile::decl(&cfg),
        Presence::decl(&cfg),
        AuthResponse::decl(&cfg),
        UserList::decl(&cfg),
        ConversationType::decl(&cfg),
        ConversationView::decl(&cfg),
        ActiveCall::decl(&cfg),
        ConversationPage::decl(&cfg),
        HistoryPage::decl(&cfg),
        ReadState::decl(&cfg),
        ConversationMember::decl(&cfg),
        MemberList::decl(&cfg),
        IceServer::decl(&cfg),
        IceServers::decl(&cfg),
        ErrorBody::decl(&cfg),
        ErrorDetail::decl(&cfg),
        FieldError::decl(&cfg),
    ];
    let mut out = String::from(
        "// Generated from the REST API's Rust types (server/src/api/typescript.rs) by `cargo test -p pychat rest_types`.\n\
         // Do not edit: change the Rust types and run `PYCHAT_BLESS=1 cargo test -p pychat rest_types`.\n\n\
         import type { CallMedia, ErrorCode, MessageView, PresenceStatus, Role } from './protocol';\n\n",
    );
    for declaration in declarations {
        out.push_str("export ");
        out.push_str(&declaration);
        out.push_str("\n\n");
    }
    out.truncate(out.trim_end().len());
    out.push('\n');
    out
}
