//! Property tests (issue #12, "fuzzing"): everything that reads input from outside gets generated
//! input, a bounded number of cases per property, and must never panic; every refusal must be the
//! typed error a caller switches on.
//!
//! What is fuzzed:
//! - `frames`: `ws::protocol::parse_client_frame` and `frame_id` on arbitrary text, arbitrary
//!   JSON, and "almost valid" frames of every type in `ClientFrame::TYPES` (fields of the wrong
//!   JSON type, missing or extra fields, huge strings, odd Unicode, NUL, deep nesting).
//! - `input`: `json_has_nul` and `uri_has_nul` against reference implementations,
//!   `describe_json_error` (through `api::body::parse` of every public request type) naming no
//!   Rust type, `shown_name`.
//! - `names`: `accounts::validate::{username, password, display_name}`,
//!   `calls::rooms::room_name`.
//! - `wire`: what instances exchange through Redis (`bus::redis::Envelope`, `bus::log`'s batches,
//!   `ws::ticket::Holder`), `db::DatabaseUrl::parse`, `config::redact_url`, and access tokens
//!   (`auth::TokenIssuer::verify`).
//!
//! Run: `cargo test -p pychat --test fuzz` (512 cases per property, a fixed seed, so a run is
//! reproducible). More cases: `PROPTEST_CASES=100000 cargo test --release -p pychat --test fuzz`;
//! another seed: `PROPTEST_RNG_SEED=7`. A failure prints its shrunk input; nothing is written to
//! disk (no proptest-regressions files): a case worth keeping becomes a regression test here.

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::{Config, RngSeed};
use serde_json::Value;

mod frames;
mod input;
mod names;
mod wire;

/// Cases per property when `PROPTEST_CASES` is not set.
const DEFAULT_CASES: u32 = 512;

/// The configuration of every property: `PROPTEST_CASES` or 512 cases, `PROPTEST_RNG_SEED` or a
/// fixed seed, and no failure files.
pub fn config() -> Config {
    let mut config = Config {
        cases: DEFAULT_CASES,
        failure_persistence: None,
        ..Config::default()
    };
    if let Some(cases) = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        config.cases = cases;
    }
    if std::env::var_os("PROPTEST_RNG_SEED").is_none() {
        config.rng_seed = RngSeed::Fixed(0x00C0_FFEE_0012);
    }
    config
}

/// Characters that have broken text handling somewhere: NUL and other controls, bidirectional
/// overrides and isolates, invisible and blank characters, combining marks and what they compose
/// with, characters whose case mapping or normalisation changes their length or leaves ASCII, a
/// non-BMP emoji, JSON's and URLs' special characters.
const TRICKY: &[char] = &[
    '\0',
    '\u{7}',
    '\t',
    '\n',
    '\r',
    '\u{1B}',
    '\u{7F}',
    '\u{85}',
    '\u{9F}',
    '\u{202A}',
    '\u{202E}',
    '\u{2066}',
    '\u{2069}',
    '\u{200E}',
    '\u{061C}',
    '\u{200B}',
    '\u{200D}',
    '\u{FEFF}',
    '\u{00AD}',
    '\u{3164}',
    '\u{115F}',
    '\u{FFA0}',
    '\u{2800}',
    '\u{FE0F}',
    '\u{E0041}',
    '\u{0301}',
    '\u{0344}',
    '\u{0345}',
    '\u{0307}',
    '\u{1100}',
    '\u{1161}',
    '\u{11A8}',
    '\u{2126}',
    '\u{212A}',
    '\u{0130}',
    '\u{0131}',
    'ß',
    'ẞ',
    'Σ',
    'ς',
    '\u{FB03}',
    'Å',
    'é',
    '\u{2000}',
    '\u{00A0}',
    '\u{3000}',
    ' ',
    '_',
    '.',
    '-',
    ':',
    '/',
    '@',
    '%',
    '\\',
    '"',
    '{',
    '[',
    'a',
    'Z',
    '0',
    '😀',
    '\u{10FFFF}',
    '\u{FFFD}',
];

/// A character: any at all, or one of [`TRICKY`].
pub fn any_char() -> impl Strategy<Value = char> {
    prop_oneof![any::<char>(), select(TRICKY)]
}

/// Short text of any characters, biased towards the tricky ones.
pub fn text() -> impl Strategy<Value = String> {
    vec(any_char(), 0..24).prop_map(String::from_iter)
}

/// Text, or now and then a huge run of one character (past the frame and field limits).
pub fn text_or_huge() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => text(),
        1 => (any_char(), 1_000..70_000usize).prop_map(|(c, n)| c.to_string().repeat(n)),
    ]
}

/// Any JSON value: numbers of every range, strings of [`text`], arrays and objects a few levels
/// deep.
pub fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(5, 48, 6, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(Value::Array),
            vec((text(), inner), 0..6).prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// Whether any string or key in `value` holds U+0000: the reference for `json_has_nul`.
pub fn has_nul(value: &Value) -> bool {
    match value {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(has_nul),
        Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
        _ => false,
    }
}

/// How deeply arrays and objects nest in `value` (a scalar: 0).
pub fn depth(value: &Value) -> usize {
    match value {
        Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        Value::Object(map) => 1 + map.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// A JSON text; serde_json writes every `Value` it can hold.
pub fn to_json(value: &Value) -> String {
    serde_json::to_string(value).expect("a Value always serialises")
}

/// A message a client may read must not name a Rust type: no "struct X" or "enum X" (as serde
/// words its expectations) and none of the server's type names, unless the client wrote them.
pub fn assert_names_no_rust_type(message: &str, input: &str) -> Result<(), TestCaseError> {
    const WORDS: &[&str] = &[
        "struct ",
        "enum ",
        "::",
        "RegisterRequest",
        "LoginRequest",
        "RefreshRequest",
        "UpdateMeRequest",
        "ChangePasswordRequest",
        "ReadRequest",
        "ClientEnvelope",
        "ClientFrame",
        "SignalKind",
        "CallMedia",
        "Head",
        "IdOnly",
    ];
    for word in WORDS {
        prop_assert!(
            !message.contains(word) || input.contains(word),
            "{word:?} in {message:?} (input {input:?})"
        );
    }
    Ok(())
}
