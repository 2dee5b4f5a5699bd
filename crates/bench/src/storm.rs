//! Storm control: a busy room, with and without coalescing.
//!
//! The storm app (`STORM_APP`) coalesces with a window of `seconds`; its 50
//! clients (`s0`…`s49`, half iOS, half Android) are the room's members.
//!
//! 1. A storm: 50 messages to the 50 members, spread evenly over `seconds`
//!    (the window): the alerts each device got (pushgate without coalescing:
//!    50), the text and badge of the last one (it must say all 50 messages),
//!    and the latency of the first message, which coalescing must not delay.
//! 2. A steady stream: `stream` callbacks of 50 recipients as fast as they
//!    are taken, to one room, on the storm app (coalescing on) and on
//!    `SampleApp` (off): messages per second through accept and fan-out, and
//!    pushgate's CPU per message.

use super::*;

/// The app that coalesces.
pub(crate) const STORM_APP: &str = "StormApp";
/// Its API key.
pub(crate) const STORM_API_KEY: &str = "bench-storm-api-key-012345";
/// Members of the busy room.
const MEMBERS: usize = 50;

fn member(n: usize) -> String {
    format!("s{n}")
}

fn ios_token(n: usize) -> String {
    format!("{:064x}", 0x5700_0000 + n)
}

fn android_token(n: usize) -> String {
    format!("storm-fcm-{n}")
}

/// A v2 callback of the storm app to every member of `room`.
fn storm_callback(id: &str, room: &str, marker: usize) -> Value {
    let members: Vec<String> = (0..MEMBERS).map(member).collect();
    json!({
        "_id": id, "message": format!("m{marker}"), "room": room, "roomName": "Storm",
        "sender": { "_id": "sss", "nickname": "SSS" }, "messageType": "text", "appID": STORM_APP,
        "pushToClients": members
    })
}

/// Every alert a member's device got, in arrival order: (member, body, badge, received).
fn alerts(fakes: &Fakes) -> Vec<(usize, String, Option<u64>, Instant)> {
    let apns = fakes.apns.delivered().into_iter().filter_map(|request| {
        let n = (0..MEMBERS).step_by(2).find(|n| ios_token(*n) == request.device_token)?;
        let aps = &request.payload["aps"];
        Some((n, aps["alert"]["body"].as_str()?.to_owned(), aps["badge"].as_u64(), request.received_at))
    });
    let fcm = fakes.fcm.messages().into_iter().filter(|message| message.status == 200).filter_map(|message| {
        let n = (1..MEMBERS).step_by(2).find(|n| android_token(*n) == message.token)?;
        let body = message.message["notification"]["body"].as_str()?.to_owned();
        let badge = message.message["data"]["badge"].as_str().and_then(|badge| badge.parse().ok());
        Some((n, body, badge, message.received_at))
    });
    let mut all: Vec<_> = apns.chain(fcm).collect();
    all.sort_by_key(|alert| alert.3);
    all
}

pub(crate) async fn run(
    http: &reqwest::Client,
    bases: &Arc<[String]>,
    fakes: &Fakes,
    nodes: &Nodes,
    seconds: u32,
    stream: usize,
) -> anyhow::Result<Value> {
    for n in 0..MEMBERS {
        let (kind, token) = if is_ios(n) { ("ios", ios_token(n)) } else { ("android", android_token(n)) };
        let body = json!({ "type": kind, "token": token, "deviceId": format!("storm-{n}"), "clientId": member(n) });
        post_as(http, &format!("{}/me/subscribe", base(bases, n)), STORM_API_KEY, &body).await?;
    }
    // The app's first sends open its provider connections (and fetch an
    // OAuth token): a message to another room first, so the storm's first
    // message measures coalescing, not connection set-up.
    let before = fakes.delivered();
    let url = format!("{}/imkit/push/v2?secret={SECRET}", base(bases, 0));
    post(http, &url, &storm_callback("storm-warm-up", "warm-up-room", 0)).await?;
    wait_delivered(fakes, before, MEMBERS).await?;
    fakes.forget();
    let storm = storm(http, bases, fakes, seconds).await?;
    fakes.forget();
    // Off first: the alerts that end the coalesced stream's window come after it.
    let off = stream_run(http, bases, fakes, nodes, stream, false).await?;
    fakes.forget();
    let on = stream_run(http, bases, fakes, nodes, stream, true).await?;
    fakes.forget();
    Ok(json!({ "window_seconds": seconds, "storm": storm, "stream_on": on, "stream_off": off }))
}

/// 50 messages over the window, paced; waits for the window's alerts.
async fn storm(http: &reqwest::Client, bases: &Arc<[String]>, fakes: &Fakes, seconds: u32) -> anyhow::Result<Value> {
    const MESSAGES: usize = 50;
    let started = Instant::now();
    let gap = Duration::from_secs_f64(f64::from(seconds) / MESSAGES as f64);
    let mut first_sent = started;
    for n in 0..MESSAGES {
        tokio::time::sleep_until((started + gap * n as u32).into()).await;
        if n == 0 {
            first_sent = Instant::now();
        }
        let url = format!("{}/imkit/push/v2?secret={SECRET}", base(bases, n));
        post(http, &url, &storm_callback(&format!("storm-{n}"), "storm-room", n)).await?;
    }
    // Each device: the first message's alert, then the window's (or more,
    // were the window shorter than the storm).
    let deadline = Instant::now() + Duration::from_secs(u64::from(seconds) * 3 + 60);
    let expected = format!("SSS: {MESSAGES} new messages in Storm");
    loop {
        let got = alerts(fakes);
        let last_is_summary =
            (0..MEMBERS).all(|n| got.iter().rfind(|alert| alert.0 == n).is_some_and(|alert| alert.1 == expected));
        if last_is_summary {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "the window's alerts did not all arrive: {} alerts", got.len());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let got = alerts(fakes);
    let per_member: Vec<usize> = (0..MEMBERS).map(|n| got.iter().filter(|alert| alert.0 == n).count()).collect();
    let last: Vec<_> = (0..MEMBERS).filter_map(|n| got.iter().rfind(|alert| alert.0 == n)).collect();
    // The member's unreads: the storm's 50 and the warm-up's one.
    let badge = MESSAGES as u64 + 1;
    let right_badge = last.iter().filter(|alert| alert.2 == Some(badge)).count();
    let mut first: Vec<f64> = got
        .iter()
        .filter(|alert| alert.1 == "SSS: m0")
        .map(|alert| alert.3.duration_since(first_sent).as_secs_f64() * 1000.0)
        .collect();
    first.sort_by(f64::total_cmp);
    Ok(json!({
        "members": MEMBERS,
        "messages": MESSAGES,
        "alerts_per_member_max": per_member.iter().max(),
        "alerts_per_member_mean": per_member.iter().sum::<usize>() as f64 / MEMBERS as f64,
        "last_alert": expected,
        "last_alert_badge": badge,
        "last_alert_with_that_badge": right_badge,
        "first_message_ms": { "p50": percentile(&first, 0.5), "p99": percentile(&first, 0.99) },
    }))
}

/// `count` callbacks of 50 recipients to one room, 32 in flight: on the
/// storm app (`coalescing`) until every one is fanned out and nothing is
/// due (the held wait for the window), else on `SampleApp` until every
/// delivery arrived.
async fn stream_run(
    http: &reqwest::Client,
    bases: &Arc<[String]>,
    fakes: &Fakes,
    nodes: &Nodes,
    count: usize,
    coalescing: bool,
) -> anyhow::Result<Value> {
    let cpu = nodes.cpu_seconds();
    let before = fakes.delivered();
    let started = Instant::now();
    let accepted = drive(count, 32, {
        let (http, bases) = (http.clone(), Arc::clone(bases));
        move |n| {
            let (http, url) = (http.clone(), format!("{}/imkit/push/v2?secret={SECRET}", base(&bases, n)));
            async move {
                let body = if coalescing {
                    storm_callback(&format!("stream-{n}"), "stream-room", n)
                } else {
                    let recipients: Vec<String> = (0..MEMBERS).map(client_id).collect();
                    let mut body = callback(&format!("stream-{n}"), n, &recipients);
                    body["room"] = json!("stream-room");
                    body
                };
                post(&http, &url, &body).await.is_ok()
            }
        }
    })
    .await;
    if coalescing {
        // Done when nothing is journaled, queued or retrying (what is held
        // waits for the window, whose end is one alert per device).
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            let url = format!("{}/admin/api/overview?app={STORM_APP}", base(bases, 0));
            let answer: Value = http.get(&url).header("IM-API-KEY", STORM_API_KEY).send().await?.json().await?;
            let queue = &answer["result"]["queue"];
            if queue["journaled"] == 0 && queue["queued"] == 0 && queue["retrying"] == 0 {
                break;
            }
            anyhow::ensure!(Instant::now() < deadline, "the stream was not fanned out: {queue}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    } else {
        wait_delivered(fakes, before, count * MEMBERS).await?;
    }
    let seconds = started.elapsed().as_secs_f64();
    let deliveries = fakes.delivered() - before;
    let cpu = nodes.cpu_seconds() - cpu;
    Ok(json!({
        "coalescing": coalescing,
        "callbacks": count,
        "callbacks_accepted_per_second": accepted.round(),
        "messages_per_second": (count as f64 / seconds).round(),
        "deliveries": deliveries,
        "pushgate_cpu_us_per_message": (cpu * 1e6 / count as f64).round(),
        "deliveries_per_second": (deliveries as f64 / seconds).round(),
        "pushgate_cpu_us_per_delivery": (cpu * 1e6 / deliveries.max(1) as f64).round(),
    }))
}
