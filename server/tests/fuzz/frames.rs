//! WebSocket frames from clients: `parse_client_frame` and `frame_id`.

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;
use pychat::error::ErrorCode;
use pychat::ws::protocol::{ClientFrame, MAX_FRAME_ID_LEN, frame_id, parse_client_frame};
use serde_json::{Map, Value};

use crate::{
    any_char, assert_names_no_rust_type, config, depth, has_nul, json_value, text, text_or_huge,
    to_json,
};

/// What a field of a client frame holds.
#[derive(Debug, Clone, Copy)]
enum Field {
    Text,
    Int,
    Bool,
    SignalKind,
    CallMedia,
    Payload,
}

/// Every client frame and its fields, as docs/protocol.md lists them.
const FRAMES: &[(&str, &[(&str, Field)])] = &[
    (
        "send",
        &[
            ("to", Field::Text),
            ("body", Field::Text),
            ("client_msg_id", Field::Text),
        ],
    ),
    ("read", &[("peer", Field::Text), ("up_to", Field::Int)]),
    ("typing", &[("to", Field::Text)]),
    ("ping", &[]),
    ("room_create", &[("name", Field::Text)]),
    ("room_join", &[("name", Field::Text)]),
    (
        "room_rejoin",
        &[("name", Field::Text), ("peer_id", Field::Text)],
    ),
    ("room_leave", &[]),
    ("room_end", &[]),
    ("session_start", &[]),
    (
        "signal",
        &[
            ("to", Field::Text),
            ("kind", Field::SignalKind),
            ("payload", Field::Payload),
        ],
    ),
    (
        "peer_state",
        &[
            ("muted", Field::Bool),
            ("camera", Field::Bool),
            ("screen", Field::Bool),
        ],
    ),
    ("call", &[("to", Field::Text), ("media", Field::CallMedia)]),
    ("call_accept", &[("call_id", Field::Text)]),
    ("call_decline", &[("call_id", Field::Text)]),
    ("call_cancel", &[("call_id", Field::Text)]),
];

/// Stands in for NUL where a property compares a frame with its NUL-free twin: one byte, like
/// NUL, so no length limit tells the two apart.
const NOT_NUL: char = '\u{1}';

fn without_nul(text: &str) -> String {
    text.replace('\0', &NOT_NUL.to_string())
}

/// `value` with every NUL in its strings and keys replaced by [`NOT_NUL`].
fn replace_nul(value: &Value) -> Value {
    match value {
        Value::String(s) => Value::String(without_nul(s)),
        Value::Array(items) => Value::Array(items.iter().map(replace_nul).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (without_nul(k), replace_nul(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// A valid value for a field; strings hold no NUL.
fn field_value(field: Field) -> BoxedStrategy<Value> {
    match field {
        Field::Text => text_or_huge()
            .prop_map(|s| Value::String(s.replace('\0', "")))
            .boxed(),
        Field::Int => any::<i64>().prop_map(Value::from).boxed(),
        Field::Bool => any::<bool>().prop_map(Value::Bool).boxed(),
        Field::SignalKind => select(&["offer", "answer", "candidate", "end_of_candidates"][..])
            .prop_map(Value::from)
            .boxed(),
        Field::CallMedia => select(&["audio", "video"][..])
            .prop_map(Value::from)
            .boxed(),
        Field::Payload => json_value().prop_map(|v| replace_nul(&v)).boxed(),
    }
}

/// A frame id a client may choose: at most 64 bytes, no NUL.
fn frame_id_text() -> impl Strategy<Value = String> {
    text().prop_map(|s| {
        let mut s = s.replace('\0', "");
        while s.len() > MAX_FRAME_ID_LEN {
            s.pop();
        }
        s
    })
}

/// A valid frame of any type: its fields of the right types, maybe an id, maybe fields the
/// server does not know (which it ignores).
fn valid_frame() -> impl Strategy<Value = Map<String, Value>> {
    let frame = (0..FRAMES.len()).prop_flat_map(|i| {
        let (kind, fields) = FRAMES[i];
        let values: Vec<_> = fields
            .iter()
            .map(|&(name, field)| field_value(field).prop_map(move |v| (name, v)))
            .collect();
        (Just(kind), values)
    });
    let extra = vec(
        (text(), json_value())
            .prop_map(|(k, v)| (format!("x_{}", without_nul(&k)), replace_nul(&v))),
        0..3,
    );
    (frame, proptest::option::of(frame_id_text()), extra).prop_map(|((kind, fields), id, extra)| {
        let mut map = Map::new();
        map.insert("type".into(), Value::from(kind));
        if let Some(id) = id {
            map.insert("id".into(), Value::from(id));
        }
        for (name, value) in fields {
            map.insert(name.into(), value);
        }
        for (name, value) in extra {
            map.entry(name).or_insert(value);
        }
        map
    })
}

/// One way to spoil a frame.
#[derive(Debug, Clone)]
enum Mutation {
    /// The n-th field (of the current ones) gets a value of a random JSON type.
    Replace(usize, Value),
    Remove(usize),
    Add(String, Value),
    /// A NUL at a position of the n-th string field (or key).
    Nul(usize, usize),
    /// The n-th field's value, wrapped in this many arrays.
    Nest(usize, usize),
    /// The n-th field's value, a huge string.
    Huge(usize, String),
    Type(Value),
    Id(Value),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let index = any::<usize>();
    prop_oneof![
        4 => (index, json_value()).prop_map(|(i, v)| Mutation::Replace(i, v)),
        2 => index.prop_map(Mutation::Remove),
        2 => (text(), json_value()).prop_map(|(k, v)| Mutation::Add(k, v)),
        3 => (index, any::<usize>()).prop_map(|(i, at)| Mutation::Nul(i, at)),
        1 => (index, 0..300usize).prop_map(|(i, n)| Mutation::Nest(i, n)),
        1 => (index, text_or_huge()).prop_map(|(i, s)| Mutation::Huge(i, s)),
        2 => prop_oneof![
            select(ClientFrame::TYPES).prop_map(Value::from),
            text().prop_map(Value::String),
            json_value(),
        ]
        .prop_map(Mutation::Type),
        2 => prop_oneof![
            text().prop_map(Value::String),
            (any_char(), 60..70usize).prop_map(|(c, n)| Value::String(c.to_string().repeat(n))),
            json_value(),
        ]
        .prop_map(Mutation::Id),
    ]
}

fn insert_nul(text: &str, at: usize) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    let at = at % (chars.len() + 1);
    chars.insert(at, '\0');
    chars.into_iter().collect()
}

fn apply(map: &mut Map<String, Value>, mutation: Mutation) {
    let keys: Vec<String> = map.keys().cloned().collect();
    let key = |i: usize| keys.get(i % keys.len().max(1)).cloned();
    match mutation {
        Mutation::Replace(i, value) => {
            if let Some(k) = key(i) {
                map.insert(k, value);
            }
        }
        Mutation::Remove(i) => {
            if let Some(k) = key(i) {
                map.remove(&k);
            }
        }
        Mutation::Add(k, value) => {
            map.insert(k, value);
        }
        Mutation::Nul(i, at) => {
            let Some(k) = key(i) else { return };
            match map.get(&k) {
                Some(Value::String(s)) => {
                    let s = insert_nul(s, at);
                    map.insert(k, Value::String(s));
                }
                _ => {
                    // No string there: the key takes the NUL.
                    if let Some(value) = map.remove(&k) {
                        map.insert(insert_nul(&k, at), value);
                    }
                }
            }
        }
        Mutation::Nest(i, n) => {
            if let Some(k) = key(i)
                && let Some(value) = map.get_mut(&k)
            {
                for _ in 0..n {
                    *value = Value::Array(vec![value.take()]);
                }
            }
        }
        Mutation::Huge(i, s) => {
            if let Some(k) = key(i) {
                map.insert(k, Value::String(s));
            }
        }
        Mutation::Type(value) => {
            map.insert("type".into(), value);
        }
        Mutation::Id(value) => {
            map.insert("id".into(), value);
        }
    }
}

fn almost_valid_frame() -> impl Strategy<Value = Value> {
    (valid_frame(), vec(mutation(), 1..4)).prop_map(|(mut map, mutations)| {
        for m in mutations {
            apply(&mut map, m);
        }
        Value::Object(map)
    })
}

/// The codes a frame that cannot be handled may get.
const FRAME_CODES: &[ErrorCode] = &[
    ErrorCode::InvalidJson,
    ErrorCode::InvalidFrame,
    ErrorCode::UnknownFrameType,
    ErrorCode::ValidationFailed,
];

/// No panic, and a refusal is one of the frame codes, names no Rust type, and echoes a usable id.
fn check_text(text: &str) -> Result<(), TestCaseError> {
    match parse_client_frame(text) {
        Ok(envelope) => {
            prop_assert!(!pychat::input::json_has_nul(text), "NUL accepted: {text:?}");
            prop_assert!(
                envelope
                    .id
                    .as_ref()
                    .is_none_or(|id| id.len() <= MAX_FRAME_ID_LEN)
            );
        }
        Err(err) => {
            prop_assert!(FRAME_CODES.contains(&err.code), "{err:?} for {text:?}");
            prop_assert!(
                err.id
                    .as_ref()
                    .is_none_or(|id| id.len() <= MAX_FRAME_ID_LEN)
            );
            assert_names_no_rust_type(&err.message, text)?;
        }
    }
    let id = frame_id(text);
    prop_assert!(id.as_ref().is_none_or(|id| id.len() <= MAX_FRAME_ID_LEN));
    Ok(())
}

/// [`check_text`] for a JSON value, and what its structure tells: a NUL anywhere is refused (with
/// `validation_failed` when the frame is otherwise fine), and a string id of at most 64 bytes is
/// echoed in every refusal.
fn check_value(value: &Value) -> Result<(), TestCaseError> {
    let text = to_json(value);
    check_text(&text)?;
    let result = parse_client_frame(&text);
    let id = value
        .get("id")
        .and_then(Value::as_str)
        .filter(|id| id.len() <= MAX_FRAME_ID_LEN);
    // serde_json refuses nesting 128 deep (its recursion limit): such a frame is malformed JSON to
    // the server, `invalid_json`, whose id may be lost.
    let readable = depth(value) < 128;
    if readable {
        let found = frame_id(&text);
        prop_assert_eq!(found.as_deref(), id, "frame_id of {}", text);
        if let Err(err) = &result {
            prop_assert_eq!(err.id.as_deref(), id, "id of {:?} for {}", err, text);
        }
    }
    if has_nul(value) {
        prop_assert!(result.is_err(), "NUL accepted: {text}");
        let twin = to_json(&replace_nul(value));
        if let Ok(twin) = parse_client_frame(&twin) {
            let err = result.expect_err("checked above");
            prop_assert_eq!(
                err.code,
                ErrorCode::ValidationFailed,
                "{:?} for {}",
                err,
                text
            );
            prop_assert_eq!(err.id.as_deref().map(without_nul), twin.id);
        }
    }
    Ok(())
}

#[test]
fn frame_table_is_complete() {
    let listed: Vec<&str> = FRAMES.iter().map(|(kind, _)| *kind).collect();
    assert_eq!(
        listed,
        ClientFrame::TYPES,
        "FRAMES must list every client frame"
    );
}

/// Regressions and edges found worth keeping.
#[test]
fn edge_frames() {
    let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
    let deep_payload = format!(
        r#"{{"id":"d","type":"signal","to":"p1","kind":"offer","payload":{}1{}}}"#,
        "[".repeat(200),
        "]".repeat(200)
    );
    for text in [
        "",
        "\0",
        "null",
        r#"{"type":"ping","id":"a\u0000"}"#,
        r#"{"type":"ping","x\u0000":1}"#,
        r#"{"type":"ping","id":"\\u0000"}"#,
        deep.as_str(),
        deep_payload.as_str(),
    ] {
        check_text(text).expect(text);
    }
    let err = parse_client_frame(r#"{"type":"ping","id":"a\u0000"}"#).expect_err("NUL");
    assert_eq!(err.code, ErrorCode::ValidationFailed);
    assert_eq!(err.id.as_deref(), Some("a\0"));
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_text(text in prop_oneof![any::<String>(), crate::text(), text_or_huge()]) {
        check_text(&text)?;
    }

    #[test]
    fn arbitrary_json(value in json_value()) {
        check_value(&value)?;
    }

    #[test]
    fn arbitrary_objects(map in vec((text(), json_value()), 0..6)) {
        check_value(&Value::Object(map.into_iter().collect()))?;
    }

    #[test]
    fn valid_frames_parse(map in valid_frame()) {
        let text = to_json(&Value::Object(map.clone()));
        let envelope = parse_client_frame(&text);
        prop_assert!(envelope.is_ok(), "{:?} for {}", envelope.err(), text);
        let envelope = envelope.expect("checked above");
        prop_assert_eq!(envelope.id.as_deref(), map.get("id").and_then(Value::as_str));
    }

    #[test]
    fn almost_valid_frames(value in almost_valid_frame()) {
        check_value(&value)?;
    }

    /// Character-level damage to a valid frame's text: truncated, a character inserted or one
    /// taken out (broken JSON, broken escapes).
    #[test]
    fn damaged_frame_text(
        map in valid_frame(),
        cuts in vec((any::<usize>(), proptest::option::of(any_char())), 1..4),
    ) {
        let mut chars: Vec<char> = to_json(&Value::Object(map)).chars().collect();
        for (at, insert) in cuts {
            let at = at % (chars.len() + 1);
            match insert {
                Some(c) => chars.insert(at, c),
                None if at < chars.len() => {
                    chars.remove(at);
                }
                None => chars.truncate(at / 2),
            }
        }
        check_text(&chars.into_iter().collect::<String>())?;
    }
}
