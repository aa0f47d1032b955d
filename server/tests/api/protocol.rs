//! The committed TypeScript protocol must match the Rust types. To refresh it:
//! `PYCHAT_BLESS=1 cargo test -p pychat protocol`.

const GENERATED: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../web/src/generated/protocol.ts"
);

#[test]
fn generated_typescript_is_current() {
    let generated = pychat::ws::protocol::typescript();
    if std::env::var("PYCHAT_BLESS").is_ok_and(|v| v == "1") {
        std::fs::write(GENERATED, &generated).expect("write generated protocol");
    }
    let committed = std::fs::read_to_string(GENERATED).unwrap_or_default();
    assert!(
        committed == generated,
        "web/src/generated/protocol.ts is stale: run `PYCHAT_BLESS=1 cargo test -p pychat protocol` and commit it"
    );
}
