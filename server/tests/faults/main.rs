//! Delivery under faults (issue #11): real pychat processes, real databases and a real Redis of
//! the test's own, broken on purpose while simulated clients chat through them the way
//! docs/protocol.md tells a client to. Every scenario ends with one line of counts
//! (`sent / acked / stored / delivered / duplicates / lost`) and asserts that nothing
//! acknowledged was lost or duplicated.
//!
//! Run: `cargo test -p pychat --test faults -- --nocapture` (after `cargo build -p pychat`: the
//! instances are the built binary). `PYCHAT_FAULT_SEED` replays a generated fault sequence,
//! `PYCHAT_SOAK_SECS` lengthens it (`make soak`).

mod client;
mod procs;
mod rig;
mod traffic;
mod under_faults;

/// Runs each listed `async fn(Backend)` on a private PostgreSQL and a private MariaDB, as
/// `<name>::postgres` and `<name>::mysql`.
#[macro_export]
macro_rules! on_db_backends {
    ($($name:ident),+ $(,)?) => {
        $(
            mod $name {
                use $crate::procs::Backend;

                #[tokio::test(flavor = "current_thread")]
                async fn postgres() {
                    super::$name(Backend::Postgres).await;
                }

                #[tokio::test(flavor = "current_thread")]
                async fn mysql() {
                    super::$name(Backend::Mysql).await;
                }
            }
        )+
    };
}
