//! The messaging benchmark over NATS (`bench/services.py`): a load
//! generator that sends requests from outside and counts the replies, and
//! a native echo service, the ceiling a guest handler is measured against.
//!
//! ```text
//! native-nats load --url U --subject S --concurrency C --seconds T [--warmup W]
//! native-nats echo --url U --subject S --queue Q
//! ```
//!
//! `load`: C tasks each send a request to S (a fresh reply inbox per
//! request, as `request-reply` does) and wait for its reply, in a loop;
//! prints `{"replies_per_s": …, "replies": …, "timeouts": …}`.
//! `echo`: answers every message on S (a queue group Q) with
//! `echo: <payload>` until killed, as the messaging example's handler does.

use futures_util::StreamExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

struct Args {
    url: String,
    subject: String,
    queue: String,
    concurrency: usize,
    seconds: f64,
    warmup: f64,
}

#[tokio::main]
async fn main() {
    let mut argv = std::env::args().skip(1);
    let cmd = argv.next().unwrap_or_default();
    let result = match parse(argv) {
        Ok(args) => match cmd.as_str() {
            "load" => load(&args).await,
            "echo" => echo(&args).await,
            _ => Err(format!("unknown subcommand `{cmd}`")),
        },
        Err(e) => Err(e),
    };
    if let Err(e) = result {
        eprintln!(
            "error: {e}\n\nusage: native-nats load --url U --subject S --concurrency C --seconds T [--warmup W]\n       native-nats echo --url U --subject S --queue Q"
        );
        std::process::exit(2);
    }
}

fn parse(mut argv: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut args = Args {
        url: "nats://127.0.0.1:4222".into(),
        subject: "rpc.bench".into(),
        queue: "native-echo".into(),
        concurrency: 16,
        seconds: 8.0,
        warmup: 0.0,
    };
    while let Some(flag) = argv.next() {
        let value = argv.next().ok_or(format!("`{flag}` needs a value"))?;
        let bad = || format!("bad value `{value}` for `{flag}`");
        match flag.as_str() {
            "--url" => args.url = value,
            "--subject" => args.subject = value,
            "--queue" => args.queue = value,
            "--concurrency" => args.concurrency = value.parse().map_err(|_| bad())?,
            "--seconds" => args.seconds = value.parse().map_err(|_| bad())?,
            "--warmup" => args.warmup = value.parse().map_err(|_| bad())?,
            _ => return Err(format!("unknown flag `{flag}`")),
        }
    }
    Ok(args)
}

async fn connect(url: &str) -> Result<async_nats::Client, String> {
    async_nats::ConnectOptions::new()
        .request_timeout(Some(Duration::from_secs(5)))
        .connect(url)
        .await
        .map_err(|e| format!("cannot connect to NATS at {url}: {e}"))
}

async fn load(args: &Args) -> Result<(), String> {
    let client = connect(&args.url).await?;
    if args.warmup > 0.0 {
        run(&client, args, args.warmup).await;
    }
    let (replies, timeouts, elapsed) = run(&client, args, args.seconds).await;
    println!(
        "{{\"replies_per_s\": {}, \"replies\": {replies}, \"timeouts\": {timeouts}}}",
        replies as f64 / elapsed
    );
    Ok(())
}

/// (replies, failed requests, seconds until the last task finished).
async fn run(client: &async_nats::Client, args: &Args, seconds: f64) -> (u64, u64, f64) {
    let stop = Arc::new(AtomicBool::new(false));
    let (replies, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let began = Instant::now();
    let tasks: Vec<_> = (0..args.concurrency)
        .map(|_| {
            let (client, subject) = (client.clone(), args.subject.clone());
            let (stop, replies, failed) = (stop.clone(), replies.clone(), failed.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    match client.request(subject.clone(), "ping".into()).await {
                        Ok(_) => replies.fetch_add(1, Ordering::Relaxed),
                        Err(_) => failed.fetch_add(1, Ordering::Relaxed),
                    };
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    (
        replies.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
        began.elapsed().as_secs_f64(),
    )
}

async fn echo(args: &Args) -> Result<(), String> {
    let client = connect(&args.url).await?;
    let mut sub = client
        .queue_subscribe(args.subject.clone(), args.queue.clone())
        .await
        .map_err(|e| format!("cannot subscribe to {}: {e}", args.subject))?;
    while let Some(message) = sub.next().await {
        if let Some(reply) = message.reply {
            let mut data = b"echo: ".to_vec();
            data.extend_from_slice(&message.payload);
            let _ = client.publish(reply, data.into()).await;
        }
    }
    Ok(())
}
