//! Test fakes that speak the real provider protocols, for pushgate's tests
//! and benchmarks. Never a dependency of production code: the `pushgate`
//! binary cannot reach anything here.
//!
//! - [`FakeApns`]: HTTP/2 over TLS, checks the provider JWT, every header and
//!   the payload size, answers as APNs does, records every request, and fails
//!   on demand per device token.
//! - [`FakeFcm`]: FCM HTTP v1 plus the OAuth2 token endpoint a service
//!   account's `token_uri` points at.
//! - [`FakePushService`]: a Web Push service over HTTPS that issues
//!   subscriptions, checks VAPID and the RFC 8030 headers, decrypts
//!   (RFC 8291) and records what it accepts, and fails on demand.
//! - [`node_peers`]: the npm packages `web-push-testing` and `web-push`, run
//!   with Node, to check against Web Push code nobody here wrote.
//! - [`TestCa`] and the key helpers make the certificates and keys they need.
//! - [`load`]: a bare HTTP/2 load generator, for the raw capacity of a fake.
//! - [`postgres_server`] and its helpers: where tests of the shared store run.

mod apns;
mod browser;
mod certs;
mod fcm;
mod imkit;
mod keys;
pub mod load;
mod node;
mod otlp;
mod postgres;
pub mod seed;
mod webpush;

pub use apns::{ApnsFailure, FakeApns, FakeApnsConfig, RecordedApnsRequest, RecordedChannelRequest};
pub use browser::{Browser, PAGE_DEADLINE};
pub use certs::TestCa;
pub use fcm::{FakeFcm, FakeFcmConfig, FcmFailure, RecordedFcmMessage};
pub use imkit::FakeImkit;
pub use keys::{Es256Key, TestServiceAccount};
pub use node::{NodePeers, WebPushTesting, node_peers};
pub use otlp::{FakeOtlpCollector, ReceivedSpan};
pub use postgres::{postgres_absent, postgres_server, unique_schema};
pub use webpush::{FakePushService, PushServiceFailure, ReceivedPush, TestSubscription};

use std::time::Duration;

/// Waits until `condition` holds, re-checking whenever `notify` fires, for at
/// most `deadline`. Panics with `what` when the deadline passes: a test that
/// waits must fail, not hang.
pub(crate) async fn wait_until(
    notify: &tokio::sync::Notify,
    deadline: Duration,
    what: &str,
    mut condition: impl FnMut() -> bool,
) {
    let waiting = async {
        loop {
            let notified = notify.notified();
            if condition() {
                return;
            }
            notified.await;
        }
    };
    if tokio::time::timeout(deadline, waiting).await.is_err() {
        panic!("timed out after {deadline:?} waiting for {what}");
    }
}

/// The `[apps.apns]` and `[apps.fcm]` tables of an app that sends to these
/// fakes: APNs token authentication with the `.p8` at `key_file` (key id
/// `ABC123DEFG`, team `DEF123GHIJ`, topic `io.imkit.app`, as the fakes'
/// callers set them up), FCM with the service account at
/// `service_account_file`, and `ca_file` trusted for both.
pub fn fake_provider_tables(
    apns: &FakeApns,
    key_file: &std::path::Path,
    fcm: &FakeFcm,
    service_account_file: &std::path::Path,
    ca_file: &std::path::Path,
) -> String {
    format!(
        r#"
[apps.apns]
key_file = {key_file:?}
key_id = "ABC123DEFG"
team_id = "DEF123GHIJ"
topic = "io.imkit.app"
endpoint = "{apns_endpoint}"
channels_endpoint = "{apns_endpoint}"
ca_file = {ca_file:?}

[apps.fcm]
service_account_file = {service_account_file:?}
endpoint = "{fcm_endpoint}"
ca_file = {ca_file:?}
"#,
        key_file = key_file.display().to_string(),
        ca_file = ca_file.display().to_string(),
        service_account_file = service_account_file.display().to_string(),
        apns_endpoint = apns.endpoint(),
        fcm_endpoint = fcm.endpoint(),
    )
}
