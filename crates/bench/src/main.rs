//! End-to-end benchmark of pushgate against the limit of this machine.
//!
//!     cargo run --release -p pushgate-bench -- [--devices 100000] [--deliveries 20000] [--out bench.json]
//!         [--store postgres://postgres@127.0.0.1:5432/test]   # pushgate on PostgreSQL, a fresh schema
//!         [--nodes 2]                                         # that many pushgate processes on it
//!         [--only push2clients|v2-50|room]                    # one scenario alone, for a profile of it
//!
//! One run, one machine: the fake APNs and fake FCM run on their own Tokio
//! runtime in this process; pushgate runs in a child process (this binary
//! again, serving pushgate's own `Application` on its embedded SQLite store),
//! so its memory is measured alone. With `--nodes N` (PostgreSQL only), N
//! pushgate processes share the store and the load goes to each in turn; CPU
//! is their sum, memory the largest node's. The run:
//!
//! 1. measures the raw limit: what the fake APNs takes from a bare HTTP/2
//!    client sending pre-built requests (`pushgate_testkit::load`);
//! 2. registers the devices through `/me/subscribe` (half iOS, half Android);
//! 3. push2clients: deliveries/s reaching the fakes, accept latency;
//! 4. v2 callbacks with 1, 50 and 500 recipients: callbacks/s accepted,
//!    deliveries/s, end-to-end latency (callback sent → fake received);
//! 5. v2 callbacks with 50 recipients paced at half the peak rate: latency;
//! 6. storm control (`storm.rs`): a busy room with coalescing on, and a
//!    steady stream to one room with coalescing on and off;
//! 7. private payloads (`private.rs`): the same stream sealed to each device;
//! 8. the largest room (`room.rs`): callbacks to 10,000 recipients one at a
//!    time: accept latency, and when the last device was reached;
//! 9. memory of the pushgate process: peak RSS, RSS per 100,000 devices.
//!
//! Every throughput is also given as a ratio of the raw limit. It prints a
//! table and writes the figures as JSON.

mod ceiling;
mod private;
mod process;
mod room;
mod storm;

use anyhow::Context as _;
use bytes::Bytes;
use ceiling::{fresh_postgres_schema, store_ceiling};
use clap::Parser;
use process::Nodes;
use pushgate_providers::SystemClock;
use pushgate_providers::apns::{Notification, PushType, TokenSigner, apns_id, build_request};
use pushgate_testkit::load::{drive, h2_connections, send};
use pushgate_testkit::{Es256Key, FakeApns, FakeApnsConfig, FakeFcm, FakeFcmConfig, TestCa};
use serde_json::{Value, json};
use std::io::BufRead as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

const API_KEY: &str = "bench-api-key-0123456789";
const SECRET: &str = "bench-callback-secret-0123";
const KEY_ID: &str = "ABC123DEFG";
const TEAM_ID: &str = "DEF123GHIJ";
const TOPIC: &str = "io.imkit.app";
/// The allocator of the `pushgate` binary, so the child serves as it does.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The child-process mode: serve pushgate with the configuration file given.
const SERVE: &str = "__serve-pushgate";

#[derive(Debug, Parser)]
#[command(name = "pushgate-bench")]
struct Args {
    /// Devices registered (one per client; even clients iOS, odd Android).
    #[arg(long, default_value_t = 100_000)]
    devices: usize,
    /// Deliveries per scenario (bounded by the devices).
    #[arg(long, default_value_t = 20_000)]
    deliveries: usize,
    /// Requests of the raw-limit measurement.
    #[arg(long, default_value_t = 20_000)]
    raw_requests: usize,
    /// pushgate's `[delivery] concurrency` (sends in flight; it claims twice as many at a time);
    /// pushgate's default is 512.
    #[arg(long, default_value_t = 512)]
    concurrency: usize,
    /// v2 callbacks of 50 in the burst whose accept rate is measured on its own
    /// (the last scenario: its backlog is left to the store's fan-out figure).
    #[arg(long, default_value_t = 5_000)]
    burst: usize,
    /// Where the JSON figures go.
    #[arg(long, default_value = "bench.json")]
    out: PathBuf,
    /// A PostgreSQL server (`postgres://…`) to run pushgate on, in a fresh
    /// schema; by default pushgate runs on a SQLite file in a temporary
    /// directory.
    #[arg(long)]
    store: Option<String>,
    /// pushgate processes sharing the store (above 1 needs `--store`).
    #[arg(long, default_value_t = 1)]
    nodes: usize,
    /// The storm app's coalescing window, seconds: its 50 messages are
    /// spread over it.
    #[arg(long, default_value_t = 10)]
    storm_seconds: u32,
    /// Callbacks of the steady streams (coalescing on and off).
    #[arg(long, default_value_t = 2_000)]
    stream: usize,
    /// Callbacks to the largest room (10,000 recipients), one at a time.
    #[arg(long, default_value_t = 20)]
    rooms: usize,
    /// Run one scenario alone after the registrations (for a profile of
    /// pushgate in its steady state: `perf record -p` the child) and print its figures.
    #[arg(long, value_enum)]
    only: Option<Only>,
}

/// The scenarios `--only` runs alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Only {
    /// push2clients to 100 clients a request.
    Push2clients,
    /// v2 callbacks of 50 recipients, 32 in flight.
    #[value(name = "v2-50")]
    V250,
    /// The largest room, one callback at a time.
    Room,
}

fn main() -> anyhow::Result<()> {
    let mut arguments = std::env::args();
    if arguments.nth(1).as_deref() == Some(SERVE) {
        let config = arguments.next().context("the configuration path")?;
        return serve_pushgate(&config);
    }
    let args = Args::parse();
    // The fakes get a runtime (and a thread) of their own; the load generator another.
    let fakes_runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    let load_runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    let fakes = fakes_runtime.block_on(Fakes::start());
    let report = load_runtime.block_on(run(&args, &fakes))?;
    if args.only.is_some() {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report);
    }
    std::fs::write(&args.out, serde_json::to_string_pretty(&report)?)
        .with_context(|| format!("writing {}", args.out.display()))?;
    println!("\nfigures written to {}", args.out.display());
    drop(fakes);
    fakes_runtime.shutdown_timeout(Duration::from_secs(1));
    Ok(())
}

/// The child: pushgate's own wiring, as `pushgate serve` runs it.
fn serve_pushgate(config_path: &str) -> anyhow::Result<()> {
    let config = pushgate::config::Config::load(Some(std::path::Path::new(config_path)), std::env::vars())
        .map_err(|error| anyhow::anyhow!("{error}"))?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let _telemetry = pushgate::startup::init_logging(&config);
        let application = pushgate::startup::Application::build(&config).await?;
        let stop = pushgate::startup::shutdown_signal();
        println!("listening {}", application.base_url());
        application.run_until_stopped(stop).await
    })
}

struct Fakes {
    ca: TestCa,
    key: Es256Key,
    apns: FakeApns,
    fcm: FakeFcm,
}

impl Fakes {
    async fn start() -> Self {
        let ca = TestCa::generate();
        let key = Es256Key::generate();
        let apns = FakeApns::start(
            &ca,
            FakeApnsConfig {
                topic: TOPIC.into(),
                token_auth: Some((KEY_ID.into(), TEAM_ID.into(), key.public_pem.clone())),
                max_concurrent_streams: 1000,
            },
        )
        .await;
        let fcm = FakeFcm::start(&ca, "bench", FakeFcmConfig::default()).await;
        Self { ca, key, apns, fcm }
    }

    fn delivered(&self) -> usize {
        self.apns.delivered_count() + self.fcm.delivered_count()
    }

    fn forget(&self) {
        self.apns.clear_requests();
        self.fcm.clear_messages();
    }
}

/// The node request `n` goes to.
fn base(bases: &[String], n: usize) -> &str {
    &bases[n % bases.len()]
}

fn client_id(n: usize) -> String {
    format!("c{n}")
}

fn is_ios(n: usize) -> bool {
    n.is_multiple_of(2)
}

/// The v2 callback the benchmark sends: the seed's shape, a marker as the text.
fn callback(id: &str, marker: usize, recipients: &[String]) -> Value {
    json!({
        "_id": id, "message": format!("m{marker}"), "room": "bench-room", "roomName": "Bench",
        "sender": { "_id": "sss", "nickname": "SSS" }, "messageType": "text", "appID": "SampleApp",
        "pushToClients": recipients
    })
}

async fn run(args: &Args, fakes: &Fakes) -> anyhow::Result<Value> {
    let http = reqwest::Client::builder().pool_max_idle_per_host(256).build()?;
    let raw = raw_limit(fakes, args.raw_requests).await;
    fakes.forget();
    let store_url = match &args.store {
        Some(server) => Some(fresh_postgres_schema(server).await?),
        None => None,
    };
    let mut pushgate = Nodes::start(fakes, args.nodes, args.concurrency, args.storm_seconds, store_url.as_deref())?;
    let bases = Arc::clone(&pushgate.bases);
    for base in bases.iter() {
        wait_ready(&http, base).await?;
    }
    let (rss_empty, _) = pushgate.rss();

    let started = Instant::now();
    let registered = drive(args.devices, 32, {
        let (http, bases) = (http.clone(), Arc::clone(&bases));
        move |n| {
            let (http, base) = (http.clone(), base(&bases, n).to_owned());
            async move {
                let (kind, token) =
                    if is_ios(n) { ("ios", format!("{n:064x}")) } else { ("android", format!("fcm-{n}")) };
                let body =
                    json!({ "type": kind, "token": token, "deviceId": format!("d{n}"), "clientId": client_id(n) });
                post(&http, &format!("{base}/me/subscribe"), &body).await.is_ok()
            }
        }
    })
    .await;
    let registration_seconds = started.elapsed().as_secs_f64();
    let (rss_registered, _) = pushgate.rss();

    let deliveries = args.deliveries.min(args.devices).max(1);
    if let Some(only) = args.only {
        let cpu = pushgate.cpu_seconds();
        let mut figures = match only {
            Only::Push2clients => push2clients(&http, &bases, fakes, args.devices, deliveries).await?,
            Only::V250 => {
                let group = 50.min(args.devices);
                callbacks_run(&http, &bases, fakes, args.devices, group, (deliveries / group).max(1), None).await?
            }
            Only::Room => room::run(&http, &bases, fakes, args.devices, args.rooms).await?,
        };
        if only != Only::Room {
            cpu_per_delivery(&mut figures, pushgate.cpu_seconds() - cpu);
        }
        pushgate.stop();
        return Ok(
            json!({ "raw_apns_requests_per_second": raw.round(), "scenario": format!("{only:?}"), "figures": figures }),
        );
    }
    let cpu = pushgate.cpu_seconds();
    let mut push2clients = push2clients(&http, &bases, fakes, args.devices, deliveries).await?;
    cpu_per_delivery(&mut push2clients, pushgate.cpu_seconds() - cpu);
    let mut callbacks = Vec::new();
    let mut peak_50 = 0.0;
    for group in [1usize, 50, 500] {
        let group = group.min(args.devices);
        let count = (deliveries / group).max(1);
        let cpu = pushgate.cpu_seconds();
        let mut figures = callbacks_run(&http, &bases, fakes, args.devices, group, count, None).await?;
        cpu_per_delivery(&mut figures, pushgate.cpu_seconds() - cpu);
        if group == 50.min(args.devices) {
            // The steady-state peak: callbacks accepted and delivered per
            // second, whichever is lower (accepts may outrun delivery now).
            let accepted = figures["callbacks_per_second"].as_f64().unwrap_or(0.0);
            let delivered = figures["deliveries_per_second"].as_f64().unwrap_or(0.0) / group as f64;
            peak_50 = accepted.min(delivered);
        }
        callbacks.push(figures);
    }
    let group = 50.min(args.devices);
    let half_rate = (peak_50 / 2.0).max(1.0);
    let count = ((deliveries / group).max(1)).min((half_rate * 10.0) as usize).max(1);
    let cpu = pushgate.cpu_seconds();
    let mut paced = callbacks_run(&http, &bases, fakes, args.devices, group, count, Some(half_rate)).await?;
    cpu_per_delivery(&mut paced, pushgate.cpu_seconds() - cpu);
    let storm = storm::run(&http, &bases, fakes, &pushgate, args.storm_seconds, args.stream).await?;
    let private = private::run(&http, &bases, fakes, &pushgate, args.stream).await?;
    let largest_room = room::run(&http, &bases, fakes, args.devices, args.rooms).await?;
    let burst = burst_accept(&http, &bases, args.devices, group, args.burst).await;
    let (rss_end, rss_peak) = pushgate.rss();
    let database = pushgate.stop();
    let ceiling = store_ceiling(database, args.devices, group, (deliveries / group).max(1))?;

    let ratio = |rate: f64| (rate / raw * 100.0).round() / 100.0;
    let with_ratio = |mut figures: Value| {
        let rate = figures["deliveries_per_second"].as_f64().unwrap_or(0.0);
        figures["ratio_to_raw"] = ratio(rate).into();
        figures
    };
    let mib = |bytes: u64| (bytes as f64 / 1_048_576.0 * 10.0).round() / 10.0;
    Ok(json!({
        "benchmark": "pushgate end to end",
        "machine": { "cpus": std::thread::available_parallelism().map_or(0, |n| n.get()) },
        "devices": args.devices,
        "nodes": bases.len(),
        "store": if args.store.is_some() { "postgres" } else { "sqlite" },
        "delivery_concurrency": args.concurrency,
        "raw_apns_requests_per_second": raw.round(),
        "registrations_per_second": (registered).round(),
        "registration_seconds": (registration_seconds * 10.0).round() / 10.0,
        "push2clients": with_ratio(push2clients),
        "callbacks": callbacks.into_iter().map(with_ratio).collect::<Vec<_>>(),
        "callbacks_50_at_half_peak": with_ratio(paced),
        "storm_control": storm,
        "private_payloads": private,
        "largest_room": largest_room,
        "burst_accept": burst,
        "store_accept_ceiling": ceiling,
        "memory": {
            "rss_empty_mib": mib(rss_empty),
            "rss_registered_mib": mib(rss_registered),
            "rss_end_mib": mib(rss_end),
            "peak_rss_mib": mib(rss_peak),
            "rss_per_100k_devices_mib": mib(((rss_registered.saturating_sub(rss_empty)) as f64 * 100_000.0 / args.devices as f64) as u64),
        },
    }))
}

/// A burst of `count` v2 callbacks of `group` recipients, 64 in flight, with
/// only the accepts measured (rate and latency of each answer): what IMKIT
/// sees while the backlog it makes is fanned out and delivered behind it.
async fn burst_accept(
    http: &reqwest::Client,
    bases: &Arc<[String]>,
    devices: usize,
    group: usize,
    count: usize,
) -> Value {
    let latencies = Arc::new(std::sync::Mutex::new(Vec::with_capacity(count)));
    let rate = drive(count, 64, {
        let (http, latencies, bases) = (http.clone(), Arc::clone(&latencies), Arc::clone(bases));
        move |n| {
            let url = format!("{}/imkit/push/v2?secret={SECRET}", base(&bases, n));
            let (http, latencies) = (http.clone(), Arc::clone(&latencies));
            async move {
                let recipients: Vec<String> = (0..group).map(|k| client_id((n * group + k) % devices)).collect();
                let body = callback(&format!("burst-{n}"), n, &recipients);
                let started = Instant::now();
                let accepted = post(&http, &url, &body).await.is_ok();
                latencies.lock().expect("latencies").push(started.elapsed().as_secs_f64() * 1000.0);
                accepted
            }
        }
    })
    .await;
    let mut latencies = latencies.lock().expect("latencies").clone();
    latencies.sort_by(f64::total_cmp);
    json!({
        "group": group,
        "callbacks": count,
        "callbacks_per_second": rate.round(),
        "recipients_per_second": (rate * group as f64).round(),
        "accept_ms": { "p50": percentile(&latencies, 0.5), "p99": percentile(&latencies, 0.99),
                       "max": percentile(&latencies, 1.0) },
    })
}

/// Adds the pushgate process's CPU time per delivery of a scenario, µs.
fn cpu_per_delivery(figures: &mut Value, cpu_seconds: f64) {
    let deliveries = figures["deliveries"].as_f64().unwrap_or_default().max(1.0);
    figures["pushgate_cpu_us_per_delivery"] = (cpu_seconds * 1e6 / deliveries).round().into();
}

async fn post(http: &reqwest::Client, url: &str, body: &Value) -> anyhow::Result<Value> {
    post_as(http, url, API_KEY, body).await
}

async fn post_as(http: &reqwest::Client, url: &str, key: &str, body: &Value) -> anyhow::Result<Value> {
    let response = http.post(url).header("IM-API-KEY", key).json(body).send().await?;
    let status = response.status();
    let answer: Value = response.json().await?;
    anyhow::ensure!(status == 200 && answer["RC"] == 0, "{url} answered {status}: {answer}");
    Ok(answer)
}

async fn wait_ready(http: &reqwest::Client, base: &str) -> anyhow::Result<()> {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(30) {
        if http.get(format!("{base}/readyz")).send().await.is_ok_and(|r| r.status() == 200) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    anyhow::bail!("pushgate did not become ready")
}

/// The raw limit: a bare HTTP/2 client sending pre-built chat-sized requests
/// with one pre-signed token over 4 connections, 256 in flight.
async fn raw_limit(fakes: &Fakes, requests: usize) -> f64 {
    let signer =
        TokenSigner::new(fakes.key.private_pem.as_bytes(), KEY_ID, TEAM_ID, Arc::new(SystemClock)).expect("a signer");
    let jwt = signer.token().expect("a token");
    let endpoint = fakes.apns.endpoint();
    let authority = endpoint.trim_start_matches("https://").to_owned();
    let payload = br#"{"aps":{"alert":{"loc-key":"im_loc_text","loc-args":["SSS","m1"],"title":"Bench","body":"SSS: m1"},"badge":1,"sound":"default","thread-id":"bench-room"}}"#;
    let prebuilt: Arc<Vec<http::Request<Bytes>>> = Arc::new(
        (0..requests)
            .map(|n| {
                let token = format!("{n:064x}");
                let notification = Notification {
                    device_token: &token,
                    push_type: PushType::Alert,
                    topic: TOPIC,
                    apns_id: apns_id("raw", &token),
                    expiration: None,
                    priority: None,
                    collapse_id: None,
                    payload,
                };
                build_request(&notification, &authority, Some(&jwt)).expect("a request")
            })
            .collect(),
    );
    let senders = Arc::new(h2_connections(&endpoint, &fakes.ca, 4).await);
    drive(requests, 256, move |n| {
        let (senders, request) = (Arc::clone(&senders), prebuilt[n].clone());
        async move { send(&senders[n % senders.len()], request).await == Some(200) }
    })
    .await
}

/// Waits until the fakes have `expected` more deliveries than `before`.
async fn wait_delivered(fakes: &Fakes, before: usize, expected: usize) -> anyhow::Result<()> {
    let started = Instant::now();
    while fakes.delivered() < before + expected {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(600),
            "only {} of {expected} deliveries arrived",
            fakes.delivered() - before
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(())
}

fn percentile(sorted: &[f64], fraction: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() as f64 - 1.0) * fraction).round() as usize;
    (sorted[index.min(sorted.len() - 1)] * 100.0).round() / 100.0
}

/// push2clients: requests of 100 clients (or fewer) until `deliveries`, 8 in flight.
async fn push2clients(
    http: &reqwest::Client,
    bases: &Arc<[String]>,
    fakes: &Fakes,
    devices: usize,
    deliveries: usize,
) -> anyhow::Result<Value> {
    let per_request = 100.min(devices);
    let requests = (deliveries / per_request).max(1);
    let before = fakes.delivered();
    let latencies = Arc::new(std::sync::Mutex::new(Vec::with_capacity(requests)));
    let started = Instant::now();
    let accepted = drive(requests, 8, {
        let (http, bases, latencies) = (http.clone(), Arc::clone(bases), Arc::clone(&latencies));
        move |n| {
            let (http, base, latencies) = (http.clone(), base(&bases, n).to_owned(), Arc::clone(&latencies));
            async move {
                let clients: Vec<String> = (0..per_request).map(|k| client_id((n * per_request + k) % devices)).collect();
                let body = json!({ "clients": clients, "payload": { "alert": "bench", "title": "Bench", "body": "bench", "badge": 1 } });
                let sent = Instant::now();
                let ok = post(&http, &format!("{base}/push/push2clients"), &body).await.is_ok();
                latencies.lock().expect("latencies").push(sent.elapsed().as_secs_f64() * 1000.0);
                ok
            }
        }
    })
    .await;
    wait_delivered(fakes, before, requests * per_request).await?;
    let seconds = started.elapsed().as_secs_f64();
    fakes.forget();
    let mut latencies = latencies.lock().expect("latencies").clone();
    latencies.sort_by(f64::total_cmp);
    Ok(json!({
        "requests": requests,
        "deliveries": requests * per_request,
        "requests_per_second": accepted.round(),
        "deliveries_per_second": ((requests * per_request) as f64 / seconds).round(),
        "accept_ms": { "p50": percentile(&latencies, 0.5), "p99": percentile(&latencies, 0.99) },
    }))
}

/// v2 callbacks of `group` recipients, `count` of them, 32 in flight or
/// paced at `rate` per second; latency from each callback's send to each of
/// its deliveries reaching a fake.
async fn callbacks_run(
    http: &reqwest::Client,
    bases: &Arc<[String]>,
    fakes: &Fakes,
    devices: usize,
    group: usize,
    count: usize,
    rate: Option<f64>,
) -> anyhow::Result<Value> {
    let before = fakes.delivered();
    let sent_at = Arc::new(std::sync::Mutex::new(vec![None::<Instant>; count]));
    let tag = format!("g{group}-{}", rate.map_or("max".to_owned(), |rate| format!("{rate:.0}")));
    let started = Instant::now();
    let in_flight = if rate.is_some() { 256 } else { 32 };
    let accepted = drive(count, in_flight, {
        let (http, sent_at, tag, bases) = (http.clone(), Arc::clone(&sent_at), tag.clone(), Arc::clone(bases));
        move |n| {
            let url = format!("{}/imkit/push/v2?secret={SECRET}", base(&bases, n));
            let (http, sent_at, tag) = (http.clone(), Arc::clone(&sent_at), tag.clone());
            async move {
                if let Some(rate) = rate {
                    let due = started + Duration::from_secs_f64(n as f64 / rate);
                    tokio::time::sleep_until(due.into()).await;
                }
                let recipients: Vec<String> = (0..group).map(|k| client_id((n * group + k) % devices)).collect();
                let body = callback(&format!("{tag}-{n}"), n, &recipients);
                sent_at.lock().expect("sent")[n] = Some(Instant::now());
                post(&http, &url, &body).await.is_ok()
            }
        }
    })
    .await;
    let accept_seconds = started.elapsed().as_secs_f64();
    let expected = count * group;
    wait_delivered(fakes, before, expected).await?;
    let seconds = started.elapsed().as_secs_f64();
    let sent_at = sent_at.lock().expect("sent").clone();
    let marker = |body: &str| body.strip_prefix("SSS: m").and_then(|n| n.parse::<usize>().ok());
    let mut latencies: Vec<f64> = fakes
        .apns
        .delivered()
        .iter()
        .filter_map(|r| Some((marker(r.payload["aps"]["alert"]["body"].as_str()?)?, r.received_at)))
        .chain(
            fakes
                .fcm
                .messages()
                .iter()
                .filter(|m| m.status == 200)
                .filter_map(|m| Some((marker(m.message["notification"]["body"].as_str()?)?, m.received_at))),
        )
        .filter_map(|(n, received)| Some(received.duration_since(sent_at.get(n).copied()??).as_secs_f64() * 1000.0))
        .collect();
    fakes.forget();
    latencies.sort_by(f64::total_cmp);
    Ok(json!({
        "group": group,
        "callbacks": count,
        "paced_per_second": rate.map(f64::round),
        "callbacks_per_second": if rate.is_some() { (count as f64 / accept_seconds).round() } else { (count as f64 / accept_seconds).round().max(accepted.round()) },
        "deliveries": expected,
        "deliveries_per_second": (expected as f64 / seconds).round(),
        "end_to_end_ms": {
            "p50": percentile(&latencies, 0.5),
            "p99": percentile(&latencies, 0.99),
            "max": latencies.last().map_or(0.0, |max| (max * 100.0).round() / 100.0),
            "samples": latencies.len(),
        },
    }))
}

fn print_table(report: &Value) {
    let raw = report["raw_apns_requests_per_second"].as_f64().unwrap_or(0.0);
    println!();
    println!(
        "pushgate end to end, {} devices, {} node(s) on {}; raw limit of the fake APNs: {raw:.0} req/s",
        report["devices"], report["nodes"], report["store"]
    );
    println!("registrations: {} /s", report["registrations_per_second"]);
    println!();
    println!(
        "{:<28} {:>10} {:>12} {:>8} {:>10} {:>10} {:>10} {:>10}",
        "scenario", "accepted/s", "deliveries/s", "ratio", "p50 ms", "p99 ms", "max ms", "cpu us/del"
    );
    let p2c = &report["push2clients"];
    println!(
        "{:<28} {:>10} {:>12} {:>8} {:>10} {:>10} {:>10} {:>10}",
        "push2clients (100 clients)",
        p2c["requests_per_second"],
        p2c["deliveries_per_second"],
        p2c["ratio_to_raw"],
        format!("{} acc", p2c["accept_ms"]["p50"]),
        format!("{} acc", p2c["accept_ms"]["p99"]),
        "-",
        p2c["pushgate_cpu_us_per_delivery"]
    );
    let rows = report["callbacks"].as_array().cloned().unwrap_or_default();
    for row in rows.iter().chain(std::iter::once(&report["callbacks_50_at_half_peak"])) {
        let name = match row["paced_per_second"].as_f64() {
            Some(rate) => format!("v2 x{} paced {rate:.0}/s", row["group"]),
            None => format!("v2 x{}", row["group"]),
        };
        println!(
            "{:<28} {:>10} {:>12} {:>8} {:>10} {:>10} {:>10} {:>10}",
            name,
            row["callbacks_per_second"],
            row["deliveries_per_second"],
            row["ratio_to_raw"],
            row["end_to_end_ms"]["p50"],
            row["end_to_end_ms"]["p99"],
            row["end_to_end_ms"]["max"],
            row["pushgate_cpu_us_per_delivery"]
        );
    }
    let burst = &report["burst_accept"];
    println!(
        "{:<28} {:>10} {:>12} {:>8} {:>10} {:>10} {:>10}   (accepts alone, the backlog drains behind)",
        format!("v2 x{} burst of {}", burst["group"], burst["callbacks"]),
        burst["callbacks_per_second"],
        "-",
        "-",
        format!("{} acc", burst["accept_ms"]["p50"]),
        format!("{} acc", burst["accept_ms"]["p99"]),
        format!("{} acc", burst["accept_ms"]["max"]),
    );
    let ceiling = &report["store_accept_ceiling"];
    println!(
        "{:<28} {:>10} {:>12}   (Store::accept_push alone: no HTTP, no worker; it journals)",
        format!("store alone, v2 x{}", ceiling["group"]),
        ceiling["callbacks_per_second"],
        format!("{} rcp", ceiling["recipients_per_second"]),
    );
    println!(
        "{:<28} {:>10} {:>12}   (the store's fan_out_journal of those: counters, routing, deliveries)",
        format!("store fan-out, v2 x{}", ceiling["group"]),
        ceiling["fan_out_callbacks_per_second"],
        format!("{} rcp", ceiling["fan_out_recipients_per_second"]),
    );
    let storm = &report["storm_control"];
    let busy = &storm["storm"];
    println!();
    println!(
        "storm control, window {} s: {} messages to {} members over the window: alerts per member max {} (mean {}), \
         last alert {} with badge {} on {} of {}; first message p50 {} ms, p99 {} ms",
        storm["window_seconds"],
        busy["messages"],
        busy["members"],
        busy["alerts_per_member_max"],
        busy["alerts_per_member_mean"],
        busy["last_alert"],
        busy["last_alert_badge"],
        busy["last_alert_with_that_badge"],
        busy["members"],
        busy["first_message_ms"]["p50"],
        busy["first_message_ms"]["p99"],
    );
    for (name, run) in [("coalescing on", &storm["stream_on"]), ("coalescing off", &storm["stream_off"])] {
        println!(
            "steady stream of {} callbacks x50 to one room, {name}: {} messages/s ({} accepted/s), {} deliveries, \
             {} cpu us/message",
            run["callbacks"],
            run["messages_per_second"],
            run["callbacks_accepted_per_second"],
            run["deliveries"],
            run["pushgate_cpu_us_per_message"],
        );
    }
    let private = &report["private_payloads"];
    println!(
        "private payloads: the stream sealed to each device: {} deliveries/s, {} cpu us/delivery ({} of {} sealed); \
         the same stream in clear (coalescing off, above): {} deliveries/s, {} cpu us/delivery",
        private["deliveries_per_second"],
        private["pushgate_cpu_us_per_delivery"],
        private["sealed"],
        private["deliveries"],
        storm["stream_off"]["deliveries_per_second"],
        storm["stream_off"]["pushgate_cpu_us_per_delivery"],
    );
    let room = &report["largest_room"];
    println!(
        "largest room: {} callbacks to {} recipients, one at a time: accept p50 {} ms, p99 {} ms, max {} ms; first \
         device reached p50 {} ms, p99 {} ms; last device p50 {} ms, p99 {} ms, max {} ms after the callback",
        room["callbacks"],
        room["recipients"],
        room["accept_ms"]["p50"],
        room["accept_ms"]["p99"],
        room["accept_ms"]["max"],
        room["first_device_ms"]["p50"],
        room["first_device_ms"]["p99"],
        room["last_device_ms"]["p50"],
        room["last_device_ms"]["p99"],
        room["last_device_ms"]["max"],
    );
    let memory = &report["memory"];
    println!();
    println!(
        "memory (largest pushgate process): empty {} MiB, registered {} MiB, peak {} MiB, per 100k devices {} MiB",
        memory["rss_empty_mib"],
        memory["rss_registered_mib"],
        memory["peak_rss_mib"],
        memory["rss_per_100k_devices_mib"]
    );
}
