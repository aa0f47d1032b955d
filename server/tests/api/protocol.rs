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
