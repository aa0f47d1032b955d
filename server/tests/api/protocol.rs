//! The committed TypeScript protocol must match the Rust types.

#[test]
fn generated_typescript_is_current() {
    crate::helpers::assert_committed(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../web/src/generated/protocol.ts"
        ),
        &pychat::ws::protocol::typescript(),
        "PYCHAT_BLESS=1 cargo test -p pychat protocol",
    );
}

/// The REST bodies' TypeScript (web/src/generated/api.ts) must match the Rust types too.
#[test]
fn generated_rest_types_are_current() {
    crate::helpers::assert_committed(
        concat!(env!("CARGO_MANIFEST_DIR"), "/../web/src/generated/api.ts"),
        &pychat::api::typescript::typescript(),
        "PYCHAT_BLESS=1 cargo test -p pychat rest_types",
    );
}
