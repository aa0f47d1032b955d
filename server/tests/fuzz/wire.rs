//! Bytes and strings that cross between instances (through Redis) or come from the operator and
//! the network: bus envelopes, log batches, ticket holders, database URLs, access tokens.

use std::time::Duration;

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;
use pychat::auth::TokenIssuer;
use pychat::bus::log::{self, LogBatch, LogEntry};
use pychat::bus::redis::Envelope;
use pychat::chat::Identity;
use pychat::config::{Secret, redact_url};
use pychat::db::DatabaseUrl;
use pychat::error::ErrorCode;
use pychat::ws::FrameText;
use pychat::ws::hub::Outbound;
use pychat::ws::ticket::Holder;

use crate::{config, text, text_or_huge};

fn frame_text() -> impl Strategy<Value = FrameText> {
    prop_oneof![text(), text_or_huge(), any::<String>()].prop_map(FrameText::from)
}

fn envelope() -> impl Strategy<Value = Envelope> {
    let out = prop_oneof![
        frame_text().prop_map(Outbound::Frame),
        (any::<i64>(), frame_text()).prop_map(|(id, text)| Outbound::Message { id, text }),
        Just(Outbound::SessionEnded),
    ];
    (any::<u32>(), any::<u64>(), any::<u64>(), out).prop_map(|(origin, conn, except, out)| {
        Envelope {
            origin,
            conn,
            except,
            out,
        }
    })
}

fn log_batch() -> impl Strategy<Value = LogBatch> {
    let entry = (
        any::<i64>(),
        any::<i64>(),
        vec(any::<i64>(), 0..4),
        any::<u64>(),
        frame_text(),
    )
        .prop_map(|(id, sender_id, recipients, except, frame)| LogEntry {
            id,
            sender_id,
            recipients: recipients.into(),
            except,
            frame,
        });
    (any::<i64>(), any::<i64>(), vec(entry, 0..6)).prop_map(|(prev, last, entries)| LogBatch {
        prev,
        last,
        entries,
    })
}

/// Byte-level damage: bytes overwritten, inserted, removed, or the tail cut off.
fn damage(mut bytes: Vec<u8>, edits: Vec<(usize, u8, u8)>) -> Vec<u8> {
    for (at, byte, how) in edits {
        let at = at % (bytes.len() + 1);
        match how % 4 {
            0 if at < bytes.len() => bytes[at] = byte,
            1 => bytes.insert(at, byte),
            2 if at < bytes.len() => {
                bytes.remove(at);
            }
            _ => bytes.truncate(at),
        }
    }
    bytes
}

fn edits() -> impl Strategy<Value = Vec<(usize, u8, u8)>> {
    vec((any::<usize>(), any::<u8>(), any::<u8>()), 1..4)
}

/// A URL with a password that must never be shown: `S3CR3T…` cannot come out of the other parts.
fn url_with_password() -> impl Strategy<Value = (String, String)> {
    (
        select(
            &[
                "postgres",
                "postgresql",
                "mysql",
                "mariadb",
                "redis",
                "http",
                "x-db",
            ][..],
        ),
        "[a-z%]{0,8}",
        "S3CR3T[A-Z0-9]{4,12}",
        "[a-z0-9./:?=&@\\[\\]%#-]{0,24}",
    )
        .prop_map(|(scheme, user, password, rest)| {
            (format!("{scheme}://{user}:{password}@{rest}"), password)
        })
}

fn issuer(secret: &str) -> TokenIssuer {
    TokenIssuer::new(&Secret::new(secret), Duration::from_secs(900))
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn envelopes_decode_any_bytes(bytes in vec(any::<u8>(), 0..80)) {
        if let Some(envelope) = Envelope::decode(&bytes) {
            prop_assert_eq!(Envelope::decode(&envelope.encode()), Some(envelope));
        }
    }

    #[test]
    fn envelopes_round_trip(envelope in envelope(), edits in edits()) {
        let bytes = envelope.encode();
        prop_assert_eq!(Envelope::decode(&bytes), Some(envelope));
        if let Some(decoded) = Envelope::decode(&damage(bytes, edits)) {
            prop_assert_eq!(Envelope::decode(&decoded.encode()), Some(decoded));
        }
    }

    #[test]
    fn log_batches_decode_any_bytes(bytes in vec(any::<u8>(), 0..120)) {
        if let Some((origin, batch)) = log::decode(&bytes) {
            prop_assert_eq!(log::encode(origin, &batch), bytes, "one encoding per batch");
        }
    }

    #[test]
    fn log_batches_round_trip(origin in any::<u32>(), batch in log_batch(), edits in edits()) {
        let bytes = log::encode(origin, &batch);
        prop_assert_eq!(log::decode(&bytes), Some((origin, batch)));
        let damaged = damage(bytes, edits);
        if let Some((origin, batch)) = log::decode(&damaged) {
            prop_assert_eq!(log::encode(origin, &batch), damaged, "one encoding per batch");
        }
    }

    #[test]
    fn ticket_holders(
        user_id in any::<i64>(),
        session_id in any::<i64>(),
        username in prop_oneof![text(), any::<String>()],
        garbage in prop_oneof![text(), any::<String>(), "-?[0-9]{0,20}:[+-]?[0-9]{0,20}:.{0,8}"],
    ) {
        let holder = Holder { identity: Identity { user_id, username }, session_id };
        prop_assert_eq!(Holder::decode(&holder.encode()), Some(holder));
        if let Some(decoded) = Holder::decode(&garbage) {
            prop_assert_eq!(Holder::decode(&decoded.encode()), Some(decoded));
        }
    }

    #[test]
    fn database_urls_of_any_text(raw in prop_oneof![
        text(),
        any::<String>(),
        (select(&["postgres://", "postgresql://", "mysql://", "mariadb://", "sqlite://", "sqlite:", "redis://", "://", ""][..]), text())
            .prop_map(|(scheme, rest)| format!("{scheme}{rest}")),
    ]) {
        if let Ok(url) = DatabaseUrl::parse(&raw) {
            let _ = (url.backend(), url.redacted(), format!("{url:?}"), url.to_string());
        }
        let _ = redact_url(&raw);
    }

    #[test]
    fn database_url_passwords_are_never_shown((raw, password) in url_with_password()) {
        match DatabaseUrl::parse(&raw) {
            Ok(url) => {
                for shown in [url.redacted(), format!("{url:?}"), url.to_string()] {
                    prop_assert!(!shown.contains(&password), "{} shows {}", shown, raw);
                }
            }
            Err(message) => prop_assert!(!message.contains(&password), "{}", message),
        }
        prop_assert!(!redact_url(&raw).contains(&password), "{}", redact_url(&raw));
    }

    #[test]
    fn access_tokens_of_any_text(token in prop_oneof![
        text(),
        any::<String>(),
        "[A-Za-z0-9_-]{0,40}\\.[A-Za-z0-9_-]{0,60}\\.[A-Za-z0-9_-]{0,43}",
    ]) {
        let verified = issuer("a-test-secret-of-at-least-32-bytes!!").verify(&token);
        prop_assert_eq!(verified.map(|_| ()).map_err(|e| e.code()), Err(ErrorCode::InvalidToken));
    }

    /// An issued token verifies as itself; changed anywhere it is refused or (a change that
    /// decodes to the same bytes) still itself, never someone else.
    #[test]
    fn access_tokens_cannot_be_forged(
        user_id in any::<i64>(),
        session_id in any::<i64>(),
        edits in vec((any::<usize>(), select(&['A', 'b', '0', '-', '_', '.', '='][..])), 1..3),
    ) {
        let issuer = issuer("a-test-secret-of-at-least-32-bytes!!");
        let token = issuer.issue(user_id, session_id).expect("issued");
        let claims = issuer.verify(&token).expect("verifies");
        prop_assert_eq!(claims.user_id(), Some(user_id));
        prop_assert_eq!(claims.sid, session_id);
        let other = issuer_for_another_secret().verify(&token);
        prop_assert_eq!(other.map(|_| ()).map_err(|e| e.code()), Err(ErrorCode::InvalidToken));
        let mut chars: Vec<char> = token.chars().collect();
        for (at, c) in edits {
            let at = at % chars.len();
            chars[at] = c;
        }
        let forged: String = chars.into_iter().collect();
        match issuer.verify(&forged) {
            Ok(forged_claims) => prop_assert_eq!(forged_claims, claims),
            Err(err) => prop_assert_eq!(err.code(), ErrorCode::InvalidToken),
        }
    }
}

fn issuer_for_another_secret() -> TokenIssuer {
    issuer("another-secret-of-at-least-32-bytes!!")
}
