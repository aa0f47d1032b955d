//! Field rules for accounts. Each check returns every problem at once, per field.

use crate::error::FieldError;
use crate::input::{self, NameProblem};

pub const USERNAME_MIN: usize = 3;
pub const USERNAME_MAX: usize = 32;
pub const PASSWORD_MIN: usize = 8;
pub const PASSWORD_MAX: usize = 128;
pub const DISPLAY_NAME_MAX: usize = 64;

fn field_error(field: &'static str, code: &'static str, message: impl Into<String>) -> FieldError {
    FieldError {
        field,
        code,
        message: message.into(),
    }
}

/// Lower-cases and checks a user name: 3–32 of `a-z 0-9 _ . -`, starting with a letter or digit.
pub fn username(raw: &str) -> Result<String, FieldError> {
    let name = raw.to_lowercase();
    let length = name.chars().count();
    if length < USERNAME_MIN {
        return Err(field_error(
            "username",
            "too_short",
            format!("must be at least {USERNAME_MIN} characters"),
        ));
    }
    if length > USERNAME_MAX {
        return Err(field_error(
            "username",
            "too_long",
            format!("must be at most {USERNAME_MAX} characters"),
        ));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '.' | '-'))
    {
        return Err(field_error(
            "username",
            "invalid_characters",
            "may contain only letters a-z, digits, '_', '.' and '-'",
        ));
    }
    if name.starts_with('_') {
        return Err(field_error(
            "username",
            "reserved",
            "names starting with '_' are reserved",
        ));
    }
    // Names appear in paths (URLs, and the original PyChat's files): none may look like `..` or
    // a hidden file.
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(field_error(
            "username",
            "invalid_characters",
            "must start with a letter or a digit",
        ));
    }
    Ok(name)
}

/// Checks a password's length in characters (8–128).
pub fn password(field: &'static str, raw: &str) -> Result<(), FieldError> {
    let length = raw.chars().count();
    if length < PASSWORD_MIN {
        return Err(field_error(
            field,
            "too_short",
            format!("must be at least {PASSWORD_MIN} characters"),
        ));
    }
    if length > PASSWORD_MAX {
        return Err(field_error(
            field,
            "too_long",
            format!("must be at most {PASSWORD_MAX} characters"),
        ));
    }
    Ok(())
}

/// Checks a display name: 1–64 characters once trimmed and normalised, something visible in it,
/// no control or bidirectional-formatting characters (`input::shown_name`).
pub fn display_name(raw: &str) -> Result<String, FieldError> {
    let name = input::shown_name(raw).map_err(|problem| match problem {
        NameProblem::Blank => {
            field_error("display_name", "required", "must hold something visible")
        }
        NameProblem::Forbidden => field_error(
            "display_name",
            "invalid_characters",
            "must not contain control characters or bidirectional overrides",
        ),
    })?;
    if name.chars().count() > DISPLAY_NAME_MAX {
        return Err(field_error(
            "display_name",
            "too_long",
            format!("must be at most {DISPLAY_NAME_MAX} characters"),
        ));
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames() {
        assert_eq!(username("Alice.B-1").expect("valid"), "alice.b-1");
        assert_eq!(username("ab").expect_err("short").code, "too_short");
        assert_eq!(
            username(&"a".repeat(33)).expect_err("long").code,
            "too_long"
        );
        assert_eq!(
            username("al ice").expect_err("space").code,
            "invalid_characters"
        );
        assert_eq!(
            username("ünï").expect_err("non-ascii").code,
            "invalid_characters"
        );
        assert_eq!(username("_user1").expect_err("reserved").code, "reserved");
        for dotted in ["...", ".hidden", "-dash"] {
            assert_eq!(
                username(dotted).expect_err(dotted).code,
                "invalid_characters"
            );
        }
        assert!(username(&"a".repeat(32)).is_ok());
    }

    #[test]
    fn passwords_count_characters() {
        assert!(password("password", "12345678").is_ok());
        assert_eq!(
            password("password", "1234567").expect_err("short").code,
            "too_short"
        );
        assert!(password("password", &"é".repeat(128)).is_ok());
        assert_eq!(
            password("password", &"é".repeat(129))
                .expect_err("long")
                .code,
            "too_long"
        );
    }

    #[test]
    fn display_names() {
        assert_eq!(display_name("  Ann 🎉 ").expect("valid"), "Ann 🎉");
        assert_eq!(display_name("   ").expect_err("blank").code, "required");
        assert_eq!(
            display_name("\u{200B}\u{3164}")
                .expect_err("invisible")
                .code,
            "required"
        );
        assert_eq!(
            display_name("evil\u{202E}gpj.exe").expect_err("bidi").code,
            "invalid_characters"
        );
        assert_eq!(
            display_name("a\u{7}b").expect_err("control").code,
            "invalid_characters"
        );
    }
}
