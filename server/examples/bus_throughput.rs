//! Measures the Redis bus: frames published on one instance and delivered to the sockets' queues
//! of another, through a real Redis.
//!
//! `cargo run --release -p pychat --example bus_throughput -- [redis-url] [users] [frames]`

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use pychat::bus::delivery::LogChannel;
use pychat::bus::{Bus, RedisBus};
use pychat::ws::FrameText;
use pychat::ws::hub::{Hub, Outbound};
use tokio::sync::mpsc;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .unwrap_or_else(|| "redis://127.0.0.1:6379".into());
    let users: i64 = args.next().map_or(Ok(100), |a| a.parse())?;
    let frames: u64 = args.next().map_or(Ok(200_000), |a| a.parse())?;

    // Nothing here stores messages: the log channels only have to exist.
    let sender_hub = Hub::new(1);
    let receiver_hub = Hub::new(2);
    let sender_log = LogChannel::new(0, sender_hub.clone());
    let receiver_log = LogChannel::new(0, receiver_hub.clone());
    let sender = Bus::with_redis(
        sender_hub.clone(),
        RedisBus::connect(&url, 1, sender_hub, sender_log.inbox()).await?,
    );
    let receiver = RedisBus::connect(&url, 2, receiver_hub.clone(), receiver_log.inbox()).await?;

    let delivered = Arc::new(AtomicU64::new(0));
    for user in 0..users {
        let (tx, mut rx) = mpsc::channel(65_536);
        receiver_hub.register(user, 0, tx);
        receiver.subscribe_user(user).await;
        let delivered = delivered.clone();
        tokio::spawn(async move {
            while rx.recv().await.is_some() {
                delivered.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    // A typical relayed frame: an ICE candidate, ~200 bytes of JSON, serialised once.
    let frame = Outbound::Frame(FrameText::from(format!(
        r#"{{"type":"signal","from":"p1","from_user":"alice","kind":"candidate","payload":{{"candidate":"candidate:{} 1 udp 2122260223 192.168.1.20 54321 typ host","sdpMid":"0"}}}}"#,
        "8".repeat(40)
    )));

    let started = Instant::now();
    let mut published = 0u64;
    while published < frames {
        // Stay within the publish queue: the bus drops rather than blocks when Redis lags.
        while published - delivered.load(Ordering::Relaxed) > 30_000 {
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        for _ in 0..1_000 {
            let user = i64::try_from(published).unwrap_or(0) % users;
            sender.to_user(user, &frame, None);
            published += 1;
        }
    }
    while delivered.load(Ordering::Relaxed) < frames {
        if started.elapsed() > Duration::from_secs(120) {
            return Err(format!(
                "only {} of {frames} delivered",
                delivered.load(Ordering::Relaxed)
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let elapsed = started.elapsed();
    #[allow(clippy::cast_precision_loss)]
    let rate = frames as f64 / elapsed.as_secs_f64();
    #[allow(clippy::print_stdout)]
    {
        println!(
            "{frames} frames to {users} users across two instances in {elapsed:.2?}: {rate:.0} deliveries/s"
        );
    }
    Ok(())
}
