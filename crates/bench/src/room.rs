//! The largest room IMKIT sends: one v2 callback to 10,000 recipients (one
//! device each), one callback at a time, 20 of them. For each: how long the
//! accept took, and how long after the callback was sent its last device
//! was reached (issue 30's targets: accept ≤ 20 ms every time, last device
//! ≤ 300 ms).

use crate::{Fakes, SECRET, base, callback, client_id, percentile, post, wait_delivered};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Instant;

/// Recipients of the largest room: IMKIT's `pushToClients` limit.
pub const ROOM: usize = 10_000;

/// `callbacks` callbacks to `ROOM` recipients (fewer with fewer devices), one at a time.
pub async fn run(
    http: &reqwest::Client,
    bases: &Arc<[String]>,
    fakes: &Fakes,
    devices: usize,
    callbacks: usize,
) -> anyhow::Result<Value> {
    let room = ROOM.min(devices);
    let (mut accepts, mut firsts, mut lasts) =
        (Vec::with_capacity(callbacks), Vec::with_capacity(callbacks), Vec::with_capacity(callbacks));
    for n in 0..callbacks {
        // A different tenth of the clients each time (marker text `m{n}` on each delivery).
        let recipients: Vec<String> = (0..room).map(|k| client_id((n * room + k) % devices)).collect();
        let body = callback(&format!("room-{n}"), n, &recipients);
        let url = format!("{}/imkit/push/v2?secret={SECRET}", base(bases, n));
        let before = fakes.delivered();
        let sent = Instant::now();
        post(http, &url, &body).await?;
        accepts.push(sent.elapsed().as_secs_f64() * 1000.0);
        wait_delivered(fakes, before, room).await?;
        let received: Vec<Instant> = fakes
            .apns
            .requests()
            .iter()
            .map(|request| request.received_at)
            .chain(fakes.fcm.messages().iter().map(|message| message.received_at))
            .collect();
        let since_sent = |at: Option<&Instant>| at.map_or(0.0, |at| at.duration_since(sent).as_secs_f64() * 1000.0);
        firsts.push(since_sent(received.iter().min()));
        lasts.push(since_sent(received.iter().max()));
        fakes.forget();
    }
    let summary = |mut values: Vec<f64>| {
        values.sort_by(f64::total_cmp);
        json!({ "p50": percentile(&values, 0.5), "p99": percentile(&values, 0.99),
                "max": values.last().map_or(0.0, |max| (max * 100.0).round() / 100.0) })
    };
    Ok(json!({
        "recipients": room,
        "callbacks": callbacks,
        "accept_ms": summary(accepts),
        "first_device_ms": summary(firsts),
        "last_device_ms": summary(lasts),
    }))
}
