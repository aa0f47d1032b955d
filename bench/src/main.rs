//! pychat-bench: a load generator that speaks pychat's protocol (REST accounts, tickets,
//! `/ws` frames). Each scenario prints one JSON object on stdout.
//!
//! ```text
//! pychat-bench idle   --server http://127.0.0.1:8080 --connections 5000 --sources 127.0.0.2,127.0.0.3 --server-pid 1234
//! pychat-bench dm     --server http://127.0.0.1:8080 --pairs 50 --rate 0 --duration 10
//! pychat-bench signal --server http://127.0.0.1:8080 --rooms 1 --rate 200 --duration 5
//! pychat-bench fanout --server http://127.0.0.1:8080 --listeners 100 --rate 1000 --duration 5
//! pychat-bench store  --database-url postgres://postgres@127.0.0.1/bench --writers 8 --batch 100 --duration 10
//! ```
//! `--tiny` shrinks any scenario to a run of a second or two, for the smoke test.

mod client;
mod dm;
mod fanout;
mod idle;
mod signal;
mod store;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "pychat-bench", about = "Load generator for pychat")]
struct Cli {
    /// The server's base URL (loopback only).
    #[arg(long, global = true, default_value = "http://127.0.0.1:8080")]
    server: String,
    /// Source addresses to bind client sockets to, comma-separated (127.0.0.x); round-robin.
    #[arg(long, global = true, default_value = "")]
    sources: String,
    /// A tiny run (a second or two) that only checks the scenario works end to end.
    #[arg(long, global = true)]
    tiny: bool,
    /// Worker threads for the generator (default: one per core).
    #[arg(long, global = true)]
    threads: Option<usize>,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand)]
enum Scenario {
    /// N authenticated idle connections; with --server-pid, the server's RSS per connection.
    Idle {
        #[arg(long, default_value_t = 1000)]
        connections: usize,
        /// Accounts to spread the connections over (several connections per user).
        #[arg(long, default_value_t = 50)]
        users: usize,
        /// Seconds to hold the connections open after they are all up.
        #[arg(long, default_value_t = 10.0)]
        hold: f64,
        /// Connection attempts in flight at once.
        #[arg(long, default_value_t = 128)]
        connect_concurrency: usize,
        /// The server's process id, to sample VmRSS from /proc before and after.
        #[arg(long)]
        server_pid: Option<String>,
        /// Authenticate each connection with a ticket (POST /api/ws/ticket) instead of a
        /// bearer token on the upgrade request.
        #[arg(long)]
        ticket: bool,
    },
    /// Pairs of users exchanging direct messages: acked msgs/s and latency.
    Dm {
        #[arg(long, default_value_t = 10)]
        pairs: usize,
        /// Offered messages per second in total; 0 = as fast as the window allows.
        #[arg(long, default_value_t = 0.0)]
        rate: f64,
        /// Seconds of sending.
        #[arg(long, default_value_t = 10.0)]
        duration: f64,
        /// Unacked sends allowed per connection.
        #[arg(long, default_value_t = 64)]
        window: usize,
        /// Every sender uses the client message ids c0, c1, … (unique per sender only), instead
        /// of ids unique across senders.
        #[arg(long)]
        shared_client_ids: bool,
    },
    /// One sender, k listener connections (typing frames, or --stored direct messages).
    Fanout {
        /// Listener connections per listener user.
        #[arg(long, default_value_t = 100)]
        listeners: usize,
        /// Sends per second.
        #[arg(long, default_value_t = 100.0)]
        rate: f64,
        /// Seconds of sending.
        #[arg(long, default_value_t = 10.0)]
        duration: f64,
        /// Fan out stored direct messages instead of typing frames.
        #[arg(long)]
        stored: bool,
    },
    /// Peers in rooms relaying signal frames: relay latency.
    Signal {
        #[arg(long, default_value_t = 1)]
        rooms: usize,
        /// Signals per second sent by each peer.
        #[arg(long, default_value_t = 200.0)]
        rate: f64,
        /// Seconds of sending.
        #[arg(long, default_value_t = 10.0)]
        duration: f64,
    },
    /// No server: the same rows as dm inserted straight into a database (the storage ceiling).
    Store {
        /// sqlite://PATH, postgres://… or mysql://… (migrations are applied first).
        #[arg(long)]
        database_url: String,
        /// Writer threads, one connection and one transaction at a time each.
        #[arg(long, default_value_t = 1)]
        writers: usize,
        /// Rows per transaction (one multi-row INSERT).
        #[arg(long, default_value_t = 100)]
        batch: usize,
        /// Seconds of inserting.
        #[arg(long, default_value_t = 10.0)]
        duration: f64,
        /// Pairs of users the rows are spread over, as dm's --pairs.
        #[arg(long, default_value_t = 10)]
        pairs: usize,
    },
}

fn main() {
    let cli = Cli::parse();
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all();
    if let Some(threads) = cli.threads {
        runtime.worker_threads(threads.max(1));
    }
    let result = runtime
        .build()
        .map_err(client::Error::from)
        .and_then(|rt| rt.block_on(run(cli)));
    match result {
        Ok(report) => print_report(&report),
        Err(e) => {
            eprintln!("pychat-bench: {e}");
            std::process::exit(1);
        }
    }
}

#[allow(clippy::print_stdout)]
fn print_report(report: &serde_json::Value) {
    println!("{report}");
}

async fn run(cli: Cli) -> client::Result<serde_json::Value> {
    if let Scenario::Store {
        database_url,
        writers,
        batch,
        duration,
        pairs,
    } = cli.scenario
    {
        let args = store::Args {
            database_url,
            writers,
            batch,
            duration_secs: if cli.tiny {
                duration.min(1.0)
            } else {
                duration
            },
            pairs,
        };
        return tokio::task::spawn_blocking(move || store::run(args)).await?;
    }
    let server = client::Server::new(&cli.server).await?;
    let tiny = cli.tiny;
    match cli.scenario {
        Scenario::Idle {
            connections,
            users,
            hold,
            connect_concurrency,
            server_pid,
            ticket,
        } => {
            let args = idle::Args {
                connections: if tiny {
                    connections.min(20)
                } else {
                    connections
                },
                users: if tiny { users.min(4) } else { users },
                sources: cli.sources,
                hold_secs: if tiny { hold.min(0.5) } else { hold },
                connect_concurrency,
                server_pid,
                ticket,
                settle_secs: if tiny { 0.2 } else { 2.0 },
            };
            idle::run(server, args).await
        }
        Scenario::Dm {
            pairs,
            rate,
            duration,
            window,
            shared_client_ids,
        } => {
            let args = dm::Args {
                pairs: if tiny { pairs.min(2) } else { pairs },
                rate,
                duration_secs: if tiny { duration.min(1.0) } else { duration },
                window,
                sources: cli.sources,
                shared_client_ids,
            };
            dm::run(server, args).await
        }
        Scenario::Fanout {
            listeners,
            rate,
            duration,
            stored,
        } => {
            let args = fanout::Args {
                listeners: if tiny { listeners.min(10) } else { listeners },
                rate: if tiny { rate.min(50.0) } else { rate },
                duration_secs: if tiny { duration.min(1.0) } else { duration },
                stored,
                sources: cli.sources,
            };
            fanout::run(server, args).await
        }
        Scenario::Signal {
            rooms,
            rate,
            duration,
        } => {
            let args = signal::Args {
                rooms: if tiny { rooms.min(1) } else { rooms },
                rate: if tiny { rate.min(100.0) } else { rate },
                duration_secs: if tiny { duration.min(1.0) } else { duration },
                sources: cli.sources,
            };
            signal::run(server, args).await
        }
        Scenario::Store { .. } => unreachable!("handled above"),
    }
}
