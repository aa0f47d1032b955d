//! `pychat::input` (NUL detection, serde messages, shown names) and the JSON bodies of requests.

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;
use pychat::api::auth::{LoginRequest, RefreshRequest, RegisterRequest};
use pychat::api::body;
use pychat::api::conversations::ReadRequest;
use pychat::api::me::{ChangePasswordRequest, UpdateMeRequest};
use pychat::error::ErrorCode;
use pychat::input::{NameProblem, json_has_nul, shown_name, uri_has_nul};
use serde_json::Value;
use unicode_normalization::is_nfc;

use crate::{
    any_char, assert_names_no_rust_type, config, has_nul, json_value, text, text_or_huge, to_json,
};

/// A piece of a JSON string literal as a client may write it: every kind of escape, and text
/// that looks like a NUL escape without being one.
fn string_piece() -> impl Strategy<Value = String> {
    prop_oneof![
        any_char()
            .prop_filter("needs escaping", |c| !matches!(
                c,
                '"' | '\\' | '\0'..='\u{1F}'
            ))
            .prop_map(String::from),
        (0..4usize).prop_map(|n| "\\\\".repeat(n)),
        Just("\\u0000".to_string()),
        Just("u0000".to_string()),
        Just("\\\"".to_string()),
        Just("\\/".to_string()),
        select(&["\\n", "\\t", "\\b", "\\f", "\\r"][..]).prop_map(String::from),
        any::<u16>()
            .prop_filter("no lone surrogate", |u| !(0xD800..0xE000).contains(u))
            .prop_map(|u| format!("\\u{u:04x}")),
        any::<u16>()
            .prop_filter("no lone surrogate", |u| !(0xD800..0xE000).contains(u))
            .prop_map(|u| format!("\\u{u:04X}")),
        Just("\\uD83D\\uDE00".to_string()),
        Just("\\u00000".to_string()),
    ]
}

fn string_literal() -> impl Strategy<Value = String> {
    vec(string_piece(), 0..8).prop_map(|pieces| format!("\"{}\"", pieces.concat()))
}

/// A JSON text made of hand-written string literals: an array of strings and objects whose keys
/// and values are such strings. Keys start with their position: with a duplicate key the parsed
/// value would keep one of the strings only, while the text holds both.
fn escaped_json() -> impl Strategy<Value = String> {
    let item = prop_oneof![
        string_literal(),
        vec((string_literal(), string_literal()), 0..3).prop_map(|pairs| {
            let members: Vec<String> = pairs
                .iter()
                .enumerate()
                .map(|(i, (k, v))| format!("\"{i}{}:{v}", &k[1..]))
                .collect();
            format!("{{{}}}", members.join(","))
        }),
    ];
    vec(item, 0..4).prop_map(|items| format!("[{}]", items.join(",")))
}

/// A URI part built from percent signs, zeros and hex digits, where `%00` may hide anywhere.
fn uri_part() -> impl Strategy<Value = String> {
    vec(
        prop_oneof![
            select(
                &[
                    "%", "%00", "%0", "00", "0", "%25", "%2", "5", "%%", "a", "/", "?", "=", "&"
                ][..]
            )
            .prop_map(String::from),
            any::<u8>().prop_map(|b| format!("%{b:02X}")),
            any::<u8>().prop_map(|b| format!("%{b:02x}")),
            any_char().prop_map(String::from),
        ],
        0..12,
    )
    .prop_map(|parts| parts.concat())
}

/// Percent-decoding as a URL parser does it: `%` and two hex digits is a byte; anything else is
/// itself.
fn percent_decode(encoded: &str) -> Vec<u8> {
    let bytes = encoded.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push((hi * 16 + lo) as u8);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

/// JSON close to a request body: objects with the request types' field names, values of any type.
fn body_like() -> impl Strategy<Value = Value> {
    let name = prop_oneof![
        select(
            &[
                "username",
                "password",
                "display_name",
                "refresh_token",
                "current_password",
                "new_password",
                "up_to",
            ][..]
        )
        .prop_map(String::from),
        text(),
    ];
    prop_oneof![
        vec((name, json_value()), 0..5).prop_map(|kv| Value::Object(kv.into_iter().collect())),
        json_value(),
    ]
}

/// `body::parse` of one request type: a typed refusal whose message names no Rust type.
fn check_body<T: serde::de::DeserializeOwned>(text: &str) -> Result<(), TestCaseError> {
    if let Err(err) = body::parse::<T>(text.as_bytes()) {
        prop_assert!(
            matches!(
                err.code(),
                ErrorCode::InvalidJson | ErrorCode::InvalidBody | ErrorCode::ValidationFailed
            ),
            "{:?} for {}",
            err.code(),
            text
        );
        assert_names_no_rust_type(err.message(), text)?;
        if json_has_nul(text) && serde_json::from_str::<T>(text).is_ok() {
            prop_assert_eq!(err.code(), ErrorCode::ValidationFailed);
        }
    } else {
        prop_assert!(!json_has_nul(text), "NUL accepted: {}", text);
    }
    Ok(())
}

fn check_bodies(text: &str) -> Result<(), TestCaseError> {
    check_body::<RegisterRequest>(text)?;
    check_body::<LoginRequest>(text)?;
    check_body::<RefreshRequest>(text)?;
    check_body::<UpdateMeRequest>(text)?;
    check_body::<ChangePasswordRequest>(text)?;
    check_body::<ReadRequest>(text)
}

fn is_bidi_override(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn json_has_nul_matches_the_parsed_value(value in json_value()) {
        let expected = has_nul(&value);
        prop_assert_eq!(json_has_nul(&to_json(&value)), expected);
        let pretty = serde_json::to_string_pretty(&value).expect("serialises");
        prop_assert_eq!(json_has_nul(&pretty), expected);
    }

    #[test]
    fn json_has_nul_reads_escapes_exactly(text in escaped_json()) {
        let value: Value = serde_json::from_str(&text).expect("hand-written JSON is valid");
        prop_assert_eq!(json_has_nul(&text), has_nul(&value), "{}", text);
    }

    #[test]
    fn json_has_nul_never_panics(text in prop_oneof![any::<String>(), text_or_huge()]) {
        json_has_nul(&text);
    }

    /// A raw NUL never reaches it: `http::Uri` refuses control characters.
    #[test]
    fn uri_has_nul_matches_percent_decoding(part in prop_oneof![uri_part(), any::<String>()]) {
        let part = part.replace('\0', "");
        prop_assert_eq!(uri_has_nul(&part), percent_decode(&part).contains(&0), "{}", part);
    }

    #[test]
    fn request_bodies_are_refused_with_typed_errors(value in body_like()) {
        check_bodies(&to_json(&value))?;
    }

    #[test]
    fn request_bodies_of_any_text(text in prop_oneof![any::<String>(), crate::text(), escaped_json()]) {
        check_bodies(&text)?;
    }

    #[test]
    fn request_bodies_of_any_bytes(bytes in vec(any::<u8>(), 0..64)) {
        if let Err(err) = body::parse::<RegisterRequest>(&bytes) {
            prop_assert!(matches!(
                err.code(),
                ErrorCode::InvalidJson | ErrorCode::InvalidBody | ErrorCode::ValidationFailed
            ));
        }
    }

    #[test]
    fn shown_names_are_normalised_visible_and_stable(raw in prop_oneof![text(), text_or_huge(), any::<String>()]) {
        match shown_name(&raw) {
            Ok(name) => {
                prop_assert!(is_nfc(&name), "{:?} from {:?}", name, raw);
                prop_assert_eq!(name.trim(), name.as_str(), "untrimmed");
                prop_assert!(
                    !name.chars().any(|c| c.is_control() || is_bidi_override(c)),
                    "{:?} from {:?}", name, raw
                );
                prop_assert!(name.chars().any(|c| !c.is_whitespace()), "blank {:?}", name);
                prop_assert_eq!(shown_name(&name), Ok(name.clone()), "not idempotent");
            }
            Err(NameProblem::Forbidden) => prop_assert!(
                raw.chars().any(|c| c.is_control() || is_bidi_override(c)
                    || matches!(c, '\u{200E}' | '\u{200F}' | '\u{061C}')),
                "nothing forbidden in {:?}", raw
            ),
            Err(NameProblem::Blank) => {}
        }
    }
}
