//! The account field validators and room names.

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;
use pychat::accounts::validate::{
    DISPLAY_NAME_MAX, PASSWORD_MAX, PASSWORD_MIN, display_name, password, username,
};
use pychat::calls::rooms::room_name;
use pychat::error::ErrorCode;
use pychat::input::shown_name;
use unicode_normalization::is_nfc;

use crate::{any_char, config, text, text_or_huge};

/// Something near a user name: its own characters in any case, and now and then another.
fn username_like() -> impl Strategy<Value = String> {
    vec(
        prop_oneof![
            6 => select(&['a', 'Z', 'q', '0', '9', '_', '.', '-'][..]),
            1 => any_char(),
        ],
        0..40,
    )
    .prop_map(String::from_iter)
}

/// Something near a room name: letters of several scripts, digits, spaces and `_ . -`, and now
/// and then another character.
fn room_name_like() -> impl Strategy<Value = String> {
    vec(
        prop_oneof![
            6 => select(&['a', 'Z', 'é', 'Σ', 'ß', '\u{0130}', 'ж', '字', '7', ' ', '_', '.', '-'][..]),
            1 => any_char(),
        ],
        0..70,
    )
    .prop_map(String::from_iter)
}

fn is_username(name: &str) -> bool {
    (3..=32).contains(&name.len())
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'.' | b'-')
        })
        && !name.starts_with('_')
}

/// Regressions: rooms whose whole name is a blank letter (Hangul fillers are letters to
/// `char::is_alphanumeric`) showed nothing where the room's name belongs.
#[test]
fn blank_letters_are_no_room_name() {
    for name in [
        "\u{3164}",
        "\u{115F}\u{1160}",
        " \u{FFA0} ",
        "\u{3164} \u{3164}",
    ] {
        let err = room_name(name).expect_err(name);
        assert_eq!(err.code(), ErrorCode::ValidationFailed, "{name:?}");
    }
    assert!(
        room_name("a\u{3164}b").is_ok(),
        "a blank letter inside a name stays"
    );
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn usernames(raw in prop_oneof![username_like(), text(), any::<String>()]) {
        if let Ok(name) = username(&raw) {
            prop_assert!(is_username(&name), "{:?} from {:?}", name, raw);
            prop_assert_eq!(username(&name).ok(), Some(name.clone()), "not idempotent");
        }
    }

    #[test]
    fn passwords(raw in prop_oneof![text(), text_or_huge(), any::<String>()]) {
        let length = raw.chars().count();
        prop_assert_eq!(
            password("password", &raw).is_ok(),
            (PASSWORD_MIN..=PASSWORD_MAX).contains(&length)
        );
    }

    #[test]
    fn display_names(raw in prop_oneof![text(), text_or_huge(), any::<String>()]) {
        if let Ok(name) = display_name(&raw) {
            prop_assert!(name.chars().count() <= DISPLAY_NAME_MAX, "{:?}", name);
            prop_assert_eq!(shown_name(&name), Ok(name.clone()));
            prop_assert_eq!(display_name(&name).ok(), Some(name.clone()), "not idempotent");
        }
    }

    #[test]
    fn room_names(raw in prop_oneof![room_name_like(), text(), any::<String>()]) {
        match room_name(&raw) {
            Ok((name, key)) => {
                prop_assert_eq!(&key, &name.to_lowercase());
                prop_assert!(is_nfc(&name), "{:?}", name);
                prop_assert!((1..=64).contains(&name.chars().count()), "{:?}", name);
                prop_assert!(!name.starts_with('_'));
                prop_assert!(shown_name(&name).is_ok(), "{:?} shows nothing", name);
                let again = room_name(&name).ok();
                prop_assert_eq!(again, Some((name.clone(), key)), "not idempotent");
            }
            Err(err) => prop_assert!(
                matches!(err.code(), ErrorCode::ValidationFailed | ErrorCode::RoomNameReserved),
                "{:?}", err.code()
            ),
        }
    }
}
