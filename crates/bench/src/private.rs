//! Private payloads: what sealing costs. The private app (`PRIVATE_APP`,
//! `[apps.privacy] mode = "encrypt"`) has 50 members, half iOS, half
//! Android, each with a `pushKey`; a stream of callbacks of 50 to them is
//! measured as the steady stream to `SampleApp` is (`storm.rs`): deliveries
//! per second and pushgate's CPU per delivery, sealed against clear.

use super::*;

/// The app that seals.
pub(crate) const PRIVATE_APP: &str = "PrivateApp";
/// Its API key.
pub(crate) const PRIVATE_API_KEY: &str = "bench-private-api-key-0123";
/// Its members.
const MEMBERS: usize = 50;

pub(crate) async fn run(
    http: &reqwest::Client,
    bases: &Arc<[String]>,
    fakes: &Fakes,
    nodes: &Nodes,
    count: usize,
) -> anyhow::Result<Value> {
    let key = pushgate_testkit::TestSubscription::generate("bench", "https://unused.example");
    for n in 0..MEMBERS {
        let (kind, token) = if is_ios(n) {
            ("ios", format!("{:064x}", 0x5800_0000 + n))
        } else {
            ("android", format!("private-fcm-{n}"))
        };
        let body = json!({ "type": kind, "token": token, "deviceId": format!("private-{n}"), "clientId": format!("p{n}"),
                           "pushKey": key.push_key() });
        post_as(http, &format!("{}/me/subscribe", base(bases, n)), PRIVATE_API_KEY, &body).await?;
    }
    fakes.forget();
    let cpu = nodes.cpu_seconds();
    let started = Instant::now();
    let accepted = drive(count, 32, {
        let (http, bases) = (http.clone(), Arc::clone(bases));
        move |n| {
            let (http, url) = (http.clone(), format!("{}/imkit/push/v2?secret={SECRET}", base(&bases, n)));
            async move {
                let members: Vec<String> = (0..MEMBERS).map(|m| format!("p{m}")).collect();
                let mut body = callback(&format!("private-{n}"), n, &members);
                body["appID"] = json!(PRIVATE_APP);
                post(&http, &url, &body).await.is_ok()
            }
        }
    })
    .await;
    // Counted by what was sealed: another app's late alerts (a coalescing
    // window's end) may reach the fakes meanwhile.
    let deliveries = count * MEMBERS;
    let sealed = || {
        fakes.apns.delivered().iter().filter(|r| r.payload.get("encrypted").is_some()).count()
            + fakes
                .fcm
                .messages()
                .iter()
                .filter(|m| m.status == 200 && m.message["data"].get("encrypted").is_some())
                .count()
    };
    while sealed() < deliveries {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(600),
            "only {} of {deliveries} sealed pushes arrived",
            sealed()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    let cpu = nodes.cpu_seconds() - cpu;
    let sealed = sealed();
    fakes.forget();
    Ok(json!({
        "callbacks": count,
        "callbacks_accepted_per_second": accepted.round(),
        "deliveries": deliveries,
        "sealed": sealed,
        "deliveries_per_second": (deliveries as f64 / seconds).round(),
        "pushgate_cpu_us_per_delivery": (cpu * 1e6 / deliveries as f64).round(),
    }))
}
