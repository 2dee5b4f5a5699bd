//! `pushgate devices export`: an app's devices, read from the store the
//! configuration names, as JSON lines of `/me/subscribe` bodies (whole
//! tokens: the file registers them again with `devices import`, here or on
//! another instance). Read page by page, written as read.

use crate::config::Config;
use crate::startup::open_store;
use anyhow::Context as _;
use pushgate_domain::TokenKind;
use serde_json::{Value, json};
use std::io::Write;

/// Devices read per page.
const PAGE: u32 = 1000;

/// Writes every device of `app` to `out`, one line each; answers how many.
pub async fn export_devices(config: &Config, app: &str, out: &mut impl Write) -> anyhow::Result<usize> {
    let (app_id, _) = config.app(app)?;
    let store = open_store(&config.store.url).await.context("opening the store")?;
    let mut after = None;
    let mut written = 0;
    loop {
        let page = store.app_devices(&app_id, after.take(), PAGE).await?;
        for device in &page {
            let token = match device.device_type.token_kind() {
                // A subscription goes out as the object a browser gives.
                TokenKind::WebPush => {
                    serde_json::from_str(device.token.as_str()).unwrap_or_else(|_| Value::from(device.token.as_str()))
                }
                _ => Value::from(device.token.as_str()),
            };
            let mut body = json!({
                "type": device.device_type.as_str(), "token": token,
                "deviceId": device.device_id.as_str(), "clientId": device.client_id.as_str(),
            });
            for (key, value) in [
                ("environment", device.environment.map(|environment| environment.as_str().to_owned())),
                ("locale", device.locale.as_ref().map(|locale| locale.as_str().to_owned())),
                ("timezone", device.timezone.as_ref().map(|timezone| timezone.as_str().to_owned())),
            ] {
                if let Some(value) = value {
                    body[key] = value.into();
                }
            }
            if let Some(key) = &device.push_key {
                body["pushKey"] = json!({ "p256dh": key.p256dh(), "auth": key.auth() });
            }
            writeln!(out, "{body}")?;
            written += 1;
        }
        match page.last() {
            Some(last) if page.len() == PAGE as usize => after = Some((last.device_type, last.device_id.clone())),
            _ => break,
        }
    }
    store.close().await;
    Ok(written)
}
