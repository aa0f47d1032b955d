//! pychat-bench: a load generator that speaks pychat's protocol (REST accounts, tickets,
//! `/ws` frames), and the relays' of `bench/peers/` (`--target relay|socketio`) for the same
//! workloads. Each scenario prints one JSON object on stdout.
//!
//! ```text
//! pychat-bench idle   --server http://127.0.0.1:8080 --connections 5000 --sources 127.0.0.2,127.0.0.3 --server-pid 1234
//! pychat-bench dm     --server http://127.0.0.1:8080 --pairs 50 --rate 0 --duration 10
//! pychat-bench signal --server http://127.0.0.1:8080 --rooms 1 --rate 200 --duration 5
//! pychat-bench fanout --server http://127.0.0.1:8080 --listeners 100 --rate 1000 --duration 5
//! pychat-bench groups --server http://127.0.0.1:8080 --groups 10 --members 100 --rate 0
//! pychat-bench list   --server http://127.0.0.1:8080 --conversations 500 --unread 20
//! pychat-bench login  --server http://127.0.0.1:8080 --concurrency 8 --phase 5
//! pychat-bench --target socketio --server http://127.0.0.1:3001 --cluster http://127.0.0.1:3002 fanout --listeners 100 --rate 0
//! pychat-bench store  --database-url postgres://postgres@127.0.0.1/bench --writers 8 --batch 100 --duration 10
//! ```
//! `--tiny` shrinks any scenario to a run of a second or two, for the smoke test.

mod client;
mod dm;
mod fanout;
mod groups;
mod idle;
mod list;
mod login;
mod relay;
mod signal;
mod store;

use clap::{Parser, Subcommand, ValueEnum};

use relay::{Framing, Pace, Plan};

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
    /// What `--server` is: pychat, or a relay of `bench/peers/`.
    #[arg(long, global = true, value_enum, default_value_t = Target::Pychat)]
    target: Target,
    /// A second instance of the same cluster: dm pairs get one user on each, fan-out listeners
    /// all sit on this one.
    #[arg(long, global = true)]
    cluster: Option<String>,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Target {
    Pychat,
    /// A plain WebSocket relay (`limit`, `node-ws`).
    Relay,
    /// A Socket.IO relay (`node-socketio`, `flask-socketio`).
    Socketio,
}

impl Target {
    fn framing(self) -> Option<Framing> {
        match self {
            Self::Pychat => None,
            Self::Relay => Some(Framing::Plain),
            Self::Socketio => Some(Framing::SocketIo),
        }
    }
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
        /// Sends per second; 0 = as fast as --window allows.
        #[arg(long, default_value_t = 100.0)]
        rate: f64,
        /// Sends not yet delivered to every listener, at --rate 0.
        #[arg(long, default_value_t = 16)]
        window: usize,
        /// Seconds of sending.
        #[arg(long, default_value_t = 10.0)]
        duration: f64,
        /// Fan out stored direct messages instead of typing frames.
        #[arg(long)]
        stored: bool,
    },
    /// R groups of k members, one sender each: stored messages fanned out to the group.
    Groups {
        /// Members per group besides its sender.
        #[arg(long, default_value_t = 100)]
        members: usize,
        #[arg(long, default_value_t = 1)]
        groups: usize,
        /// Sends per second over all groups; 0 = as fast as --window allows.
        #[arg(long, default_value_t = 0.0)]
        rate: f64,
        /// Sends per group not yet delivered to all of it, at --rate 0.
        #[arg(long, default_value_t = 16)]
        window: usize,
        /// Seconds of sending.
        #[arg(long, default_value_t = 10.0)]
        duration: f64,
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
    /// Logins as fast as `--concurrency` clients go, while call peers relay signals: login rate
    /// and the signal latency before and during the storm.
    Login {
        #[arg(long, default_value_t = 4)]
        rooms: usize,
        /// Signals per second sent by each peer.
        #[arg(long, default_value_t = 100.0)]
        rate: f64,
        /// Seconds of each phase: calm, then storm.
        #[arg(long, default_value_t = 5.0)]
        phase: f64,
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
        /// Accounts the storm logs into.
        #[arg(long, default_value_t = 16)]
        accounts: usize,
    },
    /// The conversation list of a user in many conversations, each with unread messages.
    List {
        #[arg(long, default_value_t = 500)]
        conversations: usize,
        /// Messages from the other user in each.
        #[arg(long, default_value_t = 20)]
        unread: usize,
        /// Conversations per page.
        #[arg(long, default_value_t = 100)]
        page: usize,
        /// Page requests, one after the other.
        #[arg(long, default_value_t = 200)]
        requests: usize,
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
    let mut servers = vec![server.clone()];
    if let Some(second) = &cli.cluster {
        servers.push(client::Server::new(second).await?);
    }
    let tiny = cli.tiny;
    if let Some(framing) = cli.target.framing()
        && !matches!(cli.scenario, Scenario::Idle { .. })
    {
        let plan = relay_plan(&cli.scenario, tiny)
            .ok_or("this scenario needs pychat: relays have no accounts")?;
        return relay::run(&servers, framing, &cli.sources, plan).await;
    }
    if servers.len() > 1
        && !matches!(
            cli.scenario,
            Scenario::Dm { .. } | Scenario::Fanout { .. } | Scenario::Groups { .. }
        )
    {
        return Err("--cluster applies to dm, fanout and groups".into());
    }
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
                relay: cli.target.framing(),
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
            dm::run(&servers, args).await
        }
        Scenario::Fanout {
            listeners,
            rate,
            window,
            duration,
            stored,
        } => {
            let args = fanout::Args {
                listeners: if tiny { listeners.min(10) } else { listeners },
                rate: if tiny && rate > 0.0 {
                    rate.min(50.0)
                } else {
                    rate
                },
                window,
                duration_secs: if tiny { duration.min(1.0) } else { duration },
                stored,
                sources: cli.sources,
            };
            fanout::run(&servers, args).await
        }
        Scenario::Groups {
            members,
            groups,
            rate,
            window,
            duration,
        } => {
            let args = groups::Args {
                members: if tiny { members.min(5) } else { members },
                groups: if tiny { groups.min(2) } else { groups },
                rate,
                window,
                duration_secs: if tiny { duration.min(1.0) } else { duration },
                sources: cli.sources,
            };
            groups::run(&servers, args).await
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
        Scenario::Login {
            rooms,
            rate,
            phase,
            concurrency,
            accounts,
        } => {
            let args = login::Args {
                rooms: if tiny { rooms.min(1) } else { rooms },
                rate: if tiny { rate.min(50.0) } else { rate },
                phase_secs: if tiny { phase.min(0.5) } else { phase },
                concurrency: if tiny {
                    concurrency.min(2)
                } else {
                    concurrency
                },
                accounts: if tiny { accounts.min(2) } else { accounts },
                sources: cli.sources,
            };
            login::run(server, args).await
        }
        Scenario::List {
            conversations,
            unread,
            page,
            requests,
        } => {
            let args = list::Args {
                conversations: if tiny {
                    conversations.min(5)
                } else {
                    conversations
                },
                unread: if tiny { unread.min(2) } else { unread },
                page,
                requests: if tiny { requests.min(5) } else { requests },
                sources: cli.sources,
            };
            list::run(server, args).await
        }
        Scenario::Store { .. } => unreachable!("handled above"),
    }
}

/// The same workload for a relay: dm and signal are rooms of two who both send, fan-out one
/// room of a sender and k listeners. The padding makes the text about as long as pychat's.
fn relay_plan(scenario: &Scenario, tiny: bool) -> Option<Plan> {
    let secs = |d: f64| if tiny { d.min(1.0) } else { d };
    Some(match *scenario {
        Scenario::Dm {
            pairs,
            rate,
            duration,
            window,
            ..
        } => {
            let pairs = if tiny { pairs.min(2) } else { pairs };
            Plan {
                scenario: "dm",
                rooms: pairs,
                members: 2,
                senders: 2,
                pace: if rate > 0.0 {
                    Pace::Rate(rate / (2 * pairs.max(1)) as f64)
                } else {
                    Pace::Window(window)
                },
                pad: 40,
                duration_secs: secs(duration),
            }
        }
        Scenario::Fanout {
            listeners,
            rate,
            window,
            duration,
            ..
        } => Plan {
            scenario: "fanout",
            rooms: 1,
            members: 1 + if tiny { listeners.min(10) } else { listeners },
            senders: 1,
            pace: if rate > 0.0 {
                Pace::Rate(if tiny { rate.min(50.0) } else { rate })
            } else {
                Pace::Window(window)
            },
            pad: 0,
            duration_secs: secs(duration),
        },
        Scenario::Groups {
            members,
            groups,
            rate,
            window,
            duration,
        } => {
            let groups = if tiny { groups.min(2) } else { groups };
            Plan {
                scenario: "groups",
                rooms: groups,
                members: 1 + if tiny { members.min(5) } else { members },
                senders: 1,
                pace: if rate > 0.0 {
                    Pace::Rate(rate / groups.max(1) as f64)
                } else {
                    Pace::Window(window)
                },
                pad: 40,
                duration_secs: secs(duration),
            }
        }
        Scenario::Signal {
            rooms,
            rate,
            duration,
        } => Plan {
            scenario: "signal",
            rooms: if tiny { rooms.min(1) } else { rooms },
            members: 2,
            senders: 2,
            pace: Pace::Rate(if tiny { rate.min(100.0) } else { rate }),
            pad: 120,
            duration_secs: secs(duration),
        },
        Scenario::Idle { .. }
        | Scenario::Login { .. }
        | Scenario::List { .. }
        | Scenario::Store { .. } => return None,
    })
}
