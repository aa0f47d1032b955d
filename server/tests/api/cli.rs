//! The binary itself: help, migrate, and one clear line for a bad setting.

use std::process::Command;

fn pychat(dir: &std::path::Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_pychat"));
    command.current_dir(dir);
    for (key, _) in std::env::vars() {
        if key.starts_with("PYCHAT_") {
            command.env_remove(key);
        }
    }
    command
}

#[test]
fn help_lists_the_commands() {
    let dir = tempfile::tempdir().expect("tempdir");
    let output = pychat(dir.path()).arg("--help").output().expect("run");
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for command in ["serve", "migrate", "--config"] {
        assert!(
            help.contains(command),
            "{command} missing from --help:\n{help}"
        );
    }
}

#[test]
fn migrate_creates_the_default_sqlite_database_and_secret() {
    let dir = tempfile::tempdir().expect("tempdir");
    let output = pychat(dir.path()).arg("migrate").output().expect("run");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(dir.path().join("data/pychat.sqlite3").is_file());
    assert!(dir.path().join("data/jwt_secret").is_file());
    // Migrating again is a no-op, not an error.
    let again = pychat(dir.path()).arg("migrate").output().expect("run");
    assert!(again.status.success());
}

fn assert_refused(dir: &std::path::Path, env: &[(&str, &str)], args: &[&str], setting: &str) {
    let output = pychat(dir)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{env:?} was accepted");
    let error_lines: Vec<&str> = stderr.lines().filter(|l| l.contains("error")).collect();
    assert_eq!(error_lines.len(), 1, "one error line expected:\n{stderr}");
    assert!(
        error_lines[0].contains(setting),
        "{setting} not named:\n{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn bad_settings_stop_with_one_line_naming_the_setting() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    assert_refused(
        d,
        &[("PYCHAT_JWT_SECRET", "too-short")],
        &["migrate"],
        "PYCHAT_JWT_SECRET",
    );
    assert_refused(
        d,
        &[("PYCHAT_BCRYPT_COST", "forty")],
        &["migrate"],
        "PYCHAT_BCRYPT_COST",
    );
    assert_refused(
        d,
        &[("PYCHAT_BCRYPT_COST", "2")],
        &["migrate"],
        "PYCHAT_BCRYPT_COST",
    );
    assert_refused(d, &[("PYCHAT_BIND", "nowhere")], &["serve"], "PYCHAT_BIND");
    assert_refused(
        d,
        &[("PYCHAT_DATABASE_URL", "oracle://db/x")],
        &["migrate"],
        "PYCHAT_DATABASE_URL",
    );
    assert_refused(
        d,
        &[("PYCHAT_REDIS_URL", "http://x")],
        &["migrate"],
        "PYCHAT_REDIS_URL",
    );
    assert_refused(d, &[("PYCHAT_LOG", "=[[")], &["migrate"], "PYCHAT_LOG");
    assert_refused(d, &[], &["--config", "missing.toml", "migrate"], "--config");
    std::fs::write(d.join("bad.toml"), "bcrypt_cost = 12\nunknown_key = 1\n").expect("write");
    assert_refused(d, &[], &["--config", "bad.toml", "migrate"], "unknown_key");
}

#[test]
fn config_file_is_read_and_environment_overrides_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    std::fs::write(
        d.join("pychat.toml"),
        "data_dir = \"from-file\"\nbcrypt_cost = 2\n",
    )
    .expect("write");
    // The file's cost is invalid, the environment's valid one wins.
    let output = pychat(d)
        .args(["--config", "pychat.toml", "migrate"])
        .env("PYCHAT_BCRYPT_COST", "10")
        .output()
        .expect("run");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(d.join("from-file/pychat.sqlite3").is_file());
}
