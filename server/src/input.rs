//! Rules for text that comes from clients, shared by the REST bodies and the WebSocket frames.
//!
//! NUL (U+0000) is refused everywhere: PostgreSQL cannot store it in text (the query fails), and
//! the other backends would keep a string that compares and displays differently from what a user
//! sees. In JSON it can only arrive escaped (`\u0000`; a raw control character is not valid
//! JSON), so the raw text of a body or frame tells whether any string in it holds one.

/// What a client is told when its text holds a NUL.
pub const NUL_MESSAGE: &str = "text must not contain the NUL character (U+0000)";

/// Whether a JSON text holds an escaped NUL in any string (or key). Exact: `\\u0000` (an escaped
/// backslash followed by `u0000`) is not one.
pub fn json_has_nul(json: &str) -> bool {
    let bytes = json.as_bytes();
    let mut from = 0;
    while let Some(found) = json[from..].find("u0000") {
        let at = from + found;
        // The escape is real when an odd number of backslashes precedes the `u`.
        let backslashes = bytes[..at]
            .iter()
            .rev()
            .take_while(|&&b| b == b'\\')
            .count();
        if backslashes % 2 == 1 {
            return true;
        }
        from = at + 1;
    }
    false
}

/// Whether a percent-encoded URI part (a path or a query string) decodes to a NUL somewhere.
pub fn uri_has_nul(encoded: &str) -> bool {
    encoded
        .as_bytes()
        .windows(3)
        .any(|w| w[0] == b'%' && w[1] == b'0' && w[2] == b'0')
}

/// A serde error as a client may read it: serde names the Rust type it expected ("expected struct
/// RegisterRequest"), which says nothing to a client and something about the server's insides.
pub fn describe_json_error(err: &serde_json::Error) -> String {
    let text = err.to_string();
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(at) = rest.find("expected ") {
        let (before, after) = rest.split_at(at + "expected ".len());
        out.push_str(before);
        let kinds = [
            ("unit struct ", "null"),
            ("tuple struct ", "an array"),
            ("struct variant ", "an object"),
            ("tuple variant ", "an array"),
            ("struct ", "an object"),
            ("enum ", "one of the allowed values"),
        ];
        match kinds.iter().find(|(kind, _)| after.starts_with(kind)) {
            Some((kind, plain)) => {
                out.push_str(plain);
                let name = &after[kind.len()..];
                let end = name
                    .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                    .unwrap_or(name.len());
                rest = &name[end..];
            }
            None => rest = after,
        }
    }
    out.push_str(rest);
    out
}

/// Why a name shown to other users (a display name, a room name) was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameProblem {
    /// Nothing visible in it: empty, or only spaces and invisible characters.
    Blank,
    /// A control character, or a bidirectional override or isolate: these reorder the text
    /// around them, so a name could pose as another or garble the line it is shown on.
    Forbidden,
}

/// A name others will see, made comparable and safe to show: trimmed, in Unicode NFC (so "é"
/// typed as one or as two code points is one name), holding at least one visible character and no
/// control or bidirectional-formatting character. Invisible characters inside a name stay (the
/// zero-width joiner of a family emoji, the variation selector of "❤️").
pub fn shown_name(raw: &str) -> Result<String, NameProblem> {
    use unicode_normalization::UnicodeNormalization;
    let name: String = raw.trim().nfc().collect();
    if name.chars().any(|c| c.is_control() || is_bidi_control(c)) {
        return Err(NameProblem::Forbidden);
    }
    if !name.chars().any(|c| !c.is_whitespace() && !is_invisible(c)) {
        return Err(NameProblem::Blank);
    }
    Ok(name)
}

/// Embedding, override and isolate controls (and the marks that only set a direction).
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}')
}

/// Characters that draw nothing: Unicode's Default_Ignorable_Code_Point set, and the blank
/// letters (Hangul fillers, the braille blank) that pass for text while showing none.
fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}'
        | '\u{180B}'..='\u{180F}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{206F}' | '\u{2800}' | '\u{3164}' | '\u{FE00}'..='\u{FE0F}'
        | '\u{FEFF}' | '\u{FFA0}' | '\u{FFF0}'..='\u{FFF8}' | '\u{1BCA0}'..='\u{1BCA3}'
        | '\u{1D173}'..='\u{1D17A}' | '\u{E0000}'..='\u{E0FFF}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_only_real_nul_escapes() {
        assert!(json_has_nul(r#"{"a":"x\u0000y"}"#));
        assert!(json_has_nul(r#"{"a\u0000":1}"#));
        assert!(json_has_nul(r#"{"a":"\\\u0000"}"#));
        assert!(!json_has_nul(r#"{"a":"\\u0000"}"#));
        assert!(!json_has_nul(r#"{"a":"u0000"}"#));
        assert!(!json_has_nul(r#"{"a":"\u0001"}"#));
    }

    #[test]
    fn finds_encoded_nul_in_uris() {
        assert!(uri_has_nul("/api/users/a%00b"));
        assert!(uri_has_nul("q=%00"));
        assert!(!uri_has_nul("/api/users/a%2500"));
        assert!(!uri_has_nul("q=100%25"));
    }

    #[test]
    fn json_errors_name_no_rust_types() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct RegisterRequest {
            username: String,
        }
        let err = serde_json::from_str::<RegisterRequest>("\"x\"").expect_err("refused");
        let text = describe_json_error(&err);
        assert!(!text.contains("RegisterRequest"), "{text}");
        assert!(text.contains("expected an object"), "{text}");
        let err = serde_json::from_str::<RegisterRequest>("{}").expect_err("refused");
        assert!(describe_json_error(&err).contains("missing field `username`"));
    }

    #[test]
    fn shown_names() {
        assert_eq!(shown_name("  Ann 🎉 "), Ok("Ann 🎉".into()));
        assert_eq!(shown_name("Cafe\u{301}"), Ok("Caf\u{e9}".into()));
        assert_eq!(
            shown_name("👨\u{200D}👩\u{200D}👧"),
            Ok("👨\u{200D}👩\u{200D}👧".into())
        );
        assert_eq!(
            shown_name("I \u{2764}\u{FE0F}"),
            Ok("I \u{2764}\u{FE0F}".into())
        );
        assert_eq!(shown_name("\u{200B}\u{200B}"), Err(NameProblem::Blank));
        assert_eq!(shown_name("\u{3164}"), Err(NameProblem::Blank));
        assert_eq!(shown_name(" \u{2800} "), Err(NameProblem::Blank));
        assert_eq!(
            shown_name("admin\u{202E}nimda"),
            Err(NameProblem::Forbidden)
        );
        assert_eq!(shown_name("a\u{2066}b"), Err(NameProblem::Forbidden));
        assert_eq!(shown_name("a\u{7}b"), Err(NameProblem::Forbidden));
    }
}
