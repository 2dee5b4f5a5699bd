//! `POST /push/push2clients`: the custom push and how it maps onto each provider.
//!
//! Pure functions: the same request always gives the same provider payloads,
//! so they are computed again for every delivery attempt rather than stored.

use crate::ParseError;
use crate::overrides::{
    ApnsHeaders, ApnsOverride, ApnsOverrideType, ApnsPriority, WebPushHeaders, WebPushOverride, check_fcm, merge_patch,
};
use crate::webpush::{MAX_WEBPUSH_TTL_SECONDS, Urgency, WebPushMessage, declarative, navigate_to, web_push_topic};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

/// `aps.interruption-level`s Apple documents (iOS 15+).
const INTERRUPTION_LEVELS: [&str; 4] = ["passive", "active", "time-sensitive", "critical"];
/// Longest `apns-collapse-id` APNs accepts, in bytes.
const MAX_COLLAPSE_KEY_BYTES: usize = 64;
/// IMKIT's own pipeline gives FCM messages an hour to live when no expiry is set.
const DEFAULT_TTL_SECONDS: u64 = 3600;
/// The longest `android.ttl` FCM accepts: 28 days. A longer one is refused as
/// `INVALID_ARGUMENT`, which would fail the delivery for good.
pub const MAX_FCM_TTL_SECONDS: u64 = 28 * 24 * 3600;

/// `alert`: a plain string or a localized `{loc-key, loc-args}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Alert {
    /// Shown as it is.
    Text(String),
    /// Looked up by the app in its own strings.
    Localized {
        /// The localization key.
        #[serde(rename = "loc-key", default, skip_serializing_if = "Option::is_none")]
        loc_key: Option<String>,
        /// Positional arguments.
        #[serde(rename = "loc-args", default, skip_serializing_if = "Vec::is_empty")]
        loc_args: Vec<String>,
    },
}

/// The `payload` of push2clients, field by field as the vendor documents it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CustomPush {
    /// Shared: a custom classification, sent in the custom/data part of both.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub push_type: Option<String>,
    /// iOS (and FCM's ttl): Unix seconds after which the push is worthless.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiry: Option<u64>,
    /// iOS: the alert.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert: Option<Alert>,
    /// iOS: the badge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub badge: Option<u32>,
    /// iOS: the sound file name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sound: Option<String>,
    /// iOS: the APNs topic; the app's configured bundle id when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    /// Android (and iOS when there is no alert): the title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Android (and iOS when there is no alert): the body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Android: the notification icon.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icon: Option<String>,
    /// Android collapse key, and `apns-collapse-id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collapse_key: Option<String>,
    /// APNs headers and payload keys over what is built from the fields above.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apns: Option<ApnsOverride>,
    /// Merged into the FCM v1 `message` built from the fields above.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fcm: Option<Map<String, Value>>,
    /// Web Push headers and notification members over what is built.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webpush: Option<WebPushOverride>,
}

/// What APNs gets for one device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApnsPush {
    /// `true`: `apns-push-type: background`, priority 5 (no alert, title or body).
    pub silent: bool,
    /// `apns-priority`; `None`: APNs' usual (10, or 5 for a background push).
    /// A badge-only update is power-aware (5) though it is not a background push.
    pub priority: Option<ApnsPriority>,
    /// The payload JSON.
    pub payload: Vec<u8>,
    /// `apns-topic` override, if the request named one.
    pub topic: Option<String>,
    /// `apns-collapse-id`.
    pub collapse_id: Option<String>,
    /// `apns-expiration`.
    pub expiration: Option<u64>,
}

impl CustomPush {
    /// Checks what the JSON shape cannot: the collapse key's length, the
    /// override blocks' headers and members, and that what each provider
    /// gets with its block merged is a request it takes (the kind's rules,
    /// the size limit), so no delivery meets a refusal it could have had here.
    pub fn validate(&self) -> Result<(), ParseError> {
        if self.collapse_key.as_ref().is_some_and(|key| key.len() > MAX_COLLAPSE_KEY_BYTES) {
            return Err(ParseError::new(format!("payload.collapseKey must be at most {MAX_COLLAPSE_KEY_BYTES} bytes")));
        }
        if let Some(block) = &self.apns {
            ApnsHeaders::parse(&block.headers)?;
            if let Some(kind) = self.apns_type().filter(|kind| kind.dedicated_device().is_some()) {
                self.validate_dedicated(kind)?;
            }
            let apns = self.to_apns();
            let payload: Value = serde_json::from_slice(&apns.payload).unwrap_or_default();
            let aps = &payload["aps"];
            if !aps.is_object() {
                return Err(ParseError::new("payload.apns.payload.aps: must stay an object"));
            }
            let voip = self.is_voip();
            let own_payload = voip || self.dedicated_device().is_some();
            if apns.silent && (aps["content-available"] != 1 || !aps["alert"].is_null()) {
                return Err(ParseError::new(
                    "payload.apns: a background push needs aps.content-available 1 and no aps.alert (Apple's rule)",
                ));
            }
            if !apns.silent
                && !own_payload
                && aps["alert"].is_null()
                && aps["sound"].is_null()
                && aps["badge"].is_null()
            {
                return Err(ParseError::new(
                    "payload.apns: an alert push needs aps.alert, sound or badge; without them send a background one",
                ));
            }
            match &aps["interruption-level"] {
                Value::Null => {}
                Value::String(level) if INTERRUPTION_LEVELS.contains(&level.as_str()) => {}
                other => {
                    return Err(ParseError::new(format!(
                        "payload.apns.payload.aps.interruption-level: must be one of {}, not {other}",
                        INTERRUPTION_LEVELS.join(", ")
                    )));
                }
            }
            match &aps["relevance-score"] {
                Value::Null => {}
                Value::Number(score) if score.as_f64().is_some_and(|score| (0.0..=1.0).contains(&score)) => {}
                other => {
                    return Err(ParseError::new(format!(
                        "payload.apns.payload.aps.relevance-score: must be a number from 0 to 1, not {other}"
                    )));
                }
            }
            let limit = if voip { crate::MAX_VOIP_BYTES } else { crate::MAX_APNS_BYTES };
            if apns.payload.len() > limit {
                return Err(ParseError::new(format!(
                    "payload.apns.payload: the APNs payload with it merged is {} bytes, more than APNs' {limit}",
                    apns.payload.len(),
                )));
            }
        }
        if let Some(block) = &self.fcm {
            check_fcm(block)?;
            let size = self.to_fcm(0).to_string().len();
            if size > crate::MAX_FCM_BYTES {
                return Err(ParseError::new(format!(
                    "payload.fcm: the FCM message with it merged is {size} bytes, more than FCM's {}",
                    crate::MAX_FCM_BYTES
                )));
            }
        }
        if let Some(block) = &self.webpush {
            WebPushHeaders::parse(&block.headers)?;
            let size = self.to_webpush(0, None).payload.len();
            if size > crate::MAX_WEBPUSH_BYTES {
                return Err(ParseError::new(format!(
                    "payload.webpush.notification: the Web Push payload with it merged is {size} bytes, more than \
                     the {} a push service takes",
                    crate::MAX_WEBPUSH_BYTES
                )));
            }
        }
        Ok(())
    }

    /// Whether APNs gets it as a critical alert (`interruption-level`
    /// `critical`), which only an app with Apple's entitlement may send.
    pub fn is_critical(&self) -> bool {
        self.apns.as_ref().is_some_and(|block| {
            block.payload.get("aps").and_then(|aps| aps.get("interruption-level")).and_then(Value::as_str)
                == Some("critical")
        })
    }

    /// Whether it is a VoIP push (`apns-push-type: voip`), which only
    /// `ios-voip` devices get.
    pub fn is_voip(&self) -> bool {
        self.apns_type() == Some(ApnsOverrideType::Voip)
    }

    /// `payload.apns.headers.apns-push-type`, if the block names one (read
    /// alone: the worker asks it of every delivery of the push).
    pub fn apns_type(&self) -> Option<ApnsOverrideType> {
        let headers = &self.apns.as_ref()?.headers;
        let (_, value) = headers.iter().find(|(name, _)| name.eq_ignore_ascii_case("apns-push-type"))?;
        ApnsOverrideType::parse(value.as_str()?)
    }

    /// The device type whose tokens alone get this push (a `widgets`,
    /// `location`, `complication`, `fileprovider` or `pushtotalk` push).
    pub fn dedicated_device(&self) -> Option<crate::DeviceType> {
        self.apns_type().and_then(ApnsOverrideType::dedicated_device)
    }

    /// A push to dedicated tokens: IMKIT's display fields and the other
    /// providers' blocks would reach nothing, so they are refused by name;
    /// a widgets push keeps `aps.content-changed`.
    fn validate_dedicated(&self, kind: ApnsOverrideType) -> Result<(), ParseError> {
        let device = kind.dedicated_device().map_or("", crate::DeviceType::as_str);
        let given = [
            ("alert", self.alert.is_some()),
            ("title", self.title.is_some()),
            ("body", self.body.is_some()),
            ("badge", self.badge.is_some()),
            ("sound", self.sound.is_some()),
            ("icon", self.icon.is_some()),
            ("fcm", self.fcm.is_some()),
            ("webpush", self.webpush.is_some()),
        ];
        if let Some((field, _)) = given.iter().find(|(_, given)| *given) {
            return Err(ParseError::new(format!(
                "payload.{field}: a {} push goes to {device} tokens only, which show nothing of it",
                kind.as_str()
            )));
        }
        let payload: Value = serde_json::from_slice(&self.to_apns().payload).unwrap_or_default();
        if !payload["aps"].is_object() {
            return Err(ParseError::new("payload.apns.payload.aps: must stay an object"));
        }
        if kind == ApnsOverrideType::Widgets && payload["aps"]["content-changed"] != true {
            return Err(ParseError::new(
                "payload.apns.payload.aps.content-changed: a widgets push says true (WidgetKit's rule)",
            ));
        }
        Ok(())
    }

    /// Whether the push shows anything; without alert, title or body it is a
    /// silent (background) push.
    pub fn is_visible(&self) -> bool {
        self.alert.is_some() || self.title.is_some() || self.body.is_some()
    }

    /// Whether the push is already worthless at `now_seconds`.
    pub fn is_expired(&self, now_seconds: u64) -> bool {
        self.expiry.is_some_and(|expiry| expiry <= now_seconds)
    }

    /// The APNs request for this push: iOS fields into `aps`, `type` beside it.
    pub fn to_apns(&self) -> ApnsPush {
        let mut aps = Map::new();
        let kind = self.apns_type();
        if kind == Some(ApnsOverrideType::Widgets) {
            aps.insert("content-changed".into(), true.into());
        }
        let alert = match &self.alert {
            Some(Alert::Text(text)) => Some(Value::String(text.clone())),
            Some(Alert::Localized { loc_key, loc_args }) => {
                let mut alert = Map::new();
                if let Some(key) = loc_key {
                    alert.insert("loc-key".into(), key.clone().into());
                }
                if !loc_args.is_empty() {
                    alert.insert("loc-args".into(), loc_args.clone().into());
                }
                // The fallback text an app shows when it does not know the key.
                self.insert_title_body(&mut alert);
                Some(Value::Object(alert))
            }
            None if self.title.is_some() || self.body.is_some() => {
                let mut alert = Map::new();
                self.insert_title_body(&mut alert);
                Some(Value::Object(alert))
            }
            None => None,
        };
        let silent = alert.is_none();
        // A VoIP push's payload, and a dedicated token's, is the app's own:
        // nothing to wake, nothing to show.
        let own_payload = kind.is_some_and(|kind| kind == ApnsOverrideType::Voip || kind.dedicated_device().is_some());
        if let Some(alert) = alert {
            aps.insert("alert".into(), alert);
        }
        if let Some(badge) = self.badge {
            aps.insert("badge".into(), badge.into());
        }
        if let Some(sound) = &self.sound
            && !silent
        {
            aps.insert("sound".into(), sound.clone().into());
        }
        if silent && !own_payload {
            aps.insert("content-available".into(), 1.into());
        }
        let mut payload = Map::new();
        payload.insert("aps".into(), Value::Object(aps));
        if let Some(push_type) = &self.push_type {
            payload.insert("type".into(), push_type.clone().into());
        }
        let mut apns = ApnsPush {
            silent,
            priority: None,
            payload: Vec::new(),
            topic: self.topic.clone(),
            collapse_id: self.collapse_key.clone(),
            expiration: self.expiry,
        };
        if let Some(block) = &self.apns {
            merge_patch(&mut payload, &block.payload);
            // Checked at accept; a stored block that no longer reads changes nothing.
            let headers = ApnsHeaders::parse(&block.headers).unwrap_or_default();
            if let Some(push_type) = headers.push_type {
                apns.silent = push_type == ApnsOverrideType::Background;
            }
            if own_payload {
                apns.silent = false;
            }
            apns.priority = headers.priority.or(apns.priority);
            apns.expiration = headers.expiration.or(apns.expiration);
            apns.collapse_id = headers.collapse_id.or(apns.collapse_id);
            apns.topic = headers.topic.or(apns.topic);
        }
        apns.payload = Value::Object(payload).to_string().into_bytes();
        apns
    }

    fn insert_title_body(&self, alert: &mut Map<String, Value>) {
        if let Some(title) = &self.title {
            alert.insert("title".into(), title.clone().into());
        }
        if let Some(body) = &self.body {
            alert.insert("body".into(), body.clone().into());
        }
    }

    /// The Web Push for this push at `now_seconds`: a notification (title,
    /// body, the collapse key as `tag`, an `https` icon) when it shows
    /// anything, declarative when the app set a page to open (`navigate`);
    /// the badge as `app_badge`, `type` and a localized alert beside it. TTL
    /// from `expiry` as for FCM; high urgency when visible; the collapse key
    /// is the `Topic`. Not cut to size: a push too big is refused by the client.
    pub fn to_webpush(&self, now_seconds: u64, navigate: Option<&str>) -> WebPushMessage {
        let text = match &self.alert {
            Some(Alert::Text(text)) => Some(text),
            _ => None,
        };
        let notification = self.is_visible().then(|| {
            let mut notification = Map::new();
            let title = self.title.as_ref().or(text).or(self.body.as_ref());
            notification.insert("title".into(), title.cloned().unwrap_or_default().into());
            if let Some(body) = self.body.as_ref().filter(|body| Some(*body) != title) {
                notification.insert("body".into(), body.clone().into());
            }
            if let Some(tag) = &self.collapse_key {
                notification.insert("tag".into(), tag.clone().into());
            }
            if let Some(icon) = self.icon.as_ref().filter(|icon| icon.starts_with("https://")) {
                notification.insert("icon".into(), icon.clone().into());
            }
            notification
        });
        let navigate = navigate.map(|template| navigate_to(template, None));
        let mut push = declarative(notification, navigate, self.badge);
        if let Some(push_type) = &self.push_type {
            push.insert("type".into(), push_type.clone().into());
        }
        if let Some(Alert::Localized { loc_key: Some(key), loc_args }) = &self.alert {
            push.insert("loc-key".into(), key.clone().into());
            push.insert("loc-args".into(), loc_args.clone().into());
        }
        let mut message = WebPushMessage {
            payload: Vec::new(),
            ttl_seconds: self
                .expiry
                .map_or(DEFAULT_TTL_SECONDS, |expiry| expiry.saturating_sub(now_seconds))
                .min(MAX_WEBPUSH_TTL_SECONDS),
            urgency: if self.is_visible() { Urgency::High } else { Urgency::Normal },
            topic: self.collapse_key.as_deref().map(web_push_topic),
        };
        if let Some(block) = &self.webpush {
            if !block.notification.is_empty() {
                let notification = push.entry("notification").or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(notification) = notification {
                    merge_patch(notification, &block.notification);
                }
            }
            // Checked at accept; a stored block that no longer reads changes nothing.
            let headers = WebPushHeaders::parse(&block.headers).unwrap_or_default();
            message.ttl_seconds = headers.ttl_seconds.unwrap_or(message.ttl_seconds);
            message.urgency = headers.urgency.unwrap_or(message.urgency);
            message.topic = headers.topic.or(message.topic);
        }
        message.payload = Value::Object(push).to_string().into_bytes();
        message
    }

    /// The FCM v1 `message` (without its token) for this push at `now_seconds`:
    /// Android fields into `notification` / `android`, `type` and the localized
    /// alert into `data` (string values only).
    pub fn to_fcm(&self, now_seconds: u64) -> Value {
        let ttl = self
            .expiry
            .map_or(DEFAULT_TTL_SECONDS, |expiry| expiry.saturating_sub(now_seconds))
            .min(MAX_FCM_TTL_SECONDS);
        let mut android = Map::new();
        android.insert("ttl".into(), format!("{ttl}s").into());
        android.insert("priority".into(), if self.is_visible() { "high" } else { "normal" }.into());
        if let Some(key) = &self.collapse_key {
            android.insert("collapse_key".into(), key.clone().into());
        }
        let mut data = Map::new();
        if let Some(push_type) = &self.push_type {
            data.insert("type".into(), push_type.clone().into());
        }
        let mut message = Map::new();
        let has_text = self.title.is_some() || self.body.is_some();
        if has_text {
            let mut notification = Map::new();
            self.insert_title_body(&mut notification);
            message.insert("notification".into(), Value::Object(notification));
        }
        let mut android_notification = Map::new();
        if let Some(icon) = &self.icon {
            android_notification.insert("icon".into(), icon.clone().into());
        }
        if let Some(Alert::Localized { loc_key: Some(key), loc_args }) = &self.alert {
            android_notification.insert("body_loc_key".into(), key.clone().into());
            android_notification.insert("body_loc_args".into(), loc_args.clone().into());
            data.insert("loc-key".into(), key.clone().into());
            data.insert("loc-args".into(), json!(loc_args).to_string().into());
        }
        if has_text && !android_notification.is_empty() {
            android.insert("notification".into(), Value::Object(android_notification));
        }
        message.insert("android".into(), Value::Object(android));
        if !data.is_empty() {
            message.insert("data".into(), Value::Object(data));
        }
        if let Some(block) = &self.fcm {
            merge_patch(&mut message, block);
        }
        Value::Object(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The APNs request (what the provider sends besides the topic) of a
    /// push2clients of every `apns-push-type` it takes, as snapshots.
    #[test]
    fn request_snapshots_for_every_apns_push_type() {
        for (name, payload) in [
            (
                "alert",
                serde_json::json!({ "alert": "Sale", "badge": 1, "sound": "default", "collapseKey": "promo",
                "apns": { "headers": { "apns-priority": "5" }, "payload": { "aps": { "interruption-level": "passive" } } } }),
            ),
            (
                "background",
                serde_json::json!({ "type": "sync", "apns": { "headers": { "apns-push-type": "background" } } }),
            ),
            (
                "voip",
                serde_json::json!({ "apns": { "headers": { "apns-push-type": "voip" },
                "payload": { "aps": {}, "call": { "id": "c-1" } } } }),
            ),
            ("widgets", serde_json::json!({ "apns": { "headers": { "apns-push-type": "widgets" } } })),
            (
                "location",
                serde_json::json!({ "apns": { "headers": { "apns-push-type": "location", "apns-priority": "5" } } }),
            ),
            (
                "complication",
                serde_json::json!({ "apns": { "headers": { "apns-push-type": "complication" },
                "payload": { "score": "2-1" } } }),
            ),
            (
                "fileprovider",
                serde_json::json!({ "apns": { "headers": { "apns-push-type": "fileprovider" },
                "payload": { "container-identifier": "NSFileProviderRootContainerItemIdentifier" } } }),
            ),
            (
                "pushtotalk",
                serde_json::json!({ "apns": { "headers": { "apns-push-type": "pushtotalk", "apns-expiration": 0 },
                "payload": { "activeSpeaker": "Alice" } } }),
            ),
        ] {
            let push: CustomPush = serde_json::from_value(payload).expect("a push");
            assert_eq!(push.validate(), Ok(()), "{name}");
            let apns = push.to_apns();
            let request = serde_json::json!({
                "silent": apns.silent,
                "priority": apns.priority.map(ApnsPriority::as_str),
                "expiration": apns.expiration,
                "collapse_id": apns.collapse_id,
                "dedicated_device": push.dedicated_device().map(crate::DeviceType::as_str),
                "payload": serde_json::from_slice::<Value>(&apns.payload).expect("JSON"),
            });
            insta::assert_json_snapshot!(format!("apns_{name}"), request);
        }
    }

    fn seed_marketing() -> CustomPush {
        serde_json::from_value(json!({
            "type": "marketing", "alert": "您有一則新的優惠活動,立即查看!", "badge": 1, "sound": "default",
            "topic": "io.imkit.app", "title": "限時優惠", "body": "您有一則新的優惠活動,立即查看!",
            "icon": "https://example.com/icon.png", "collapseKey": "promo_2026"
        }))
        .expect("the seed's first example parses")
    }

    fn apns_json(push: &CustomPush) -> Value {
        serde_json::from_slice(&push.to_apns().payload).expect("json")
    }

    #[test]
    fn the_seeds_marketing_push_maps_ios_fields_to_apns() {
        let push = seed_marketing();
        let apns = push.to_apns();
        assert!(!apns.silent);
        assert_eq!(apns.collapse_id.as_deref(), Some("promo_2026"));
        assert_eq!(apns.topic.as_deref(), Some("io.imkit.app"));
        assert_eq!(
            apns_json(&push),
            json!({ "aps": { "alert": "您有一則新的優惠活動,立即查看!", "badge": 1, "sound": "default" }, "type": "marketing" })
        );
    }

    #[test]
    fn the_seeds_marketing_push_maps_android_fields_to_fcm() {
        assert_eq!(
            seed_marketing().to_fcm(1_000),
            json!({
                "notification": { "title": "限時優惠", "body": "您有一則新的優惠活動,立即查看!" },
                "android": { "ttl": "3600s", "priority": "high", "collapse_key": "promo_2026",
                             "notification": { "icon": "https://example.com/icon.png" } },
                "data": { "type": "marketing" }
            })
        );
    }

    #[test]
    fn a_localized_alert_keeps_its_key_and_args_on_both_providers() {
        let push: CustomPush = serde_json::from_value(json!({
            "alert": { "loc-key": "NEW_MESSAGE_NOTIFICATION", "loc-args": ["張小明", "您好,請問有空嗎?"] },
            "badge": 3, "sound": "default", "title": "新訊息", "body": "張小明:您好,請問有空嗎?"
        }))
        .expect("the seed's second example parses");
        assert_eq!(
            apns_json(&push)["aps"]["alert"],
            json!({ "loc-key": "NEW_MESSAGE_NOTIFICATION", "loc-args": ["張小明", "您好,請問有空嗎?"], "title": "新訊息", "body": "張小明:您好,請問有空嗎?" })
        );
        let fcm = push.to_fcm(0);
        assert_eq!(fcm["android"]["notification"]["body_loc_key"], "NEW_MESSAGE_NOTIFICATION");
        assert_eq!(fcm["data"]["loc-args"], r#"["張小明","您好,請問有空嗎?"]"#);
    }

    #[test]
    fn title_and_body_become_the_ios_alert_when_there_is_no_alert() {
        let push = CustomPush { title: Some("T".into()), body: Some("B".into()), ..CustomPush::default() };
        assert_eq!(apns_json(&push)["aps"]["alert"], json!({ "title": "T", "body": "B" }));
    }

    #[test]
    fn no_alert_title_or_body_is_a_silent_push() {
        let push = CustomPush {
            push_type: Some("sync".into()),
            badge: Some(4),
            sound: Some("x".into()),
            ..CustomPush::default()
        };
        let apns = push.to_apns();
        assert!(apns.silent);
        assert_eq!(apns_json(&push), json!({ "aps": { "badge": 4, "content-available": 1 }, "type": "sync" }));
        let fcm = push.to_fcm(0);
        assert!(fcm.get("notification").is_none());
        assert_eq!(fcm["android"]["priority"], "normal");
        assert_eq!(fcm["data"], json!({ "type": "sync" }));
    }

    #[test]
    fn expiry_sets_apns_expiration_and_the_fcm_ttl() {
        let push = CustomPush { expiry: Some(10_000), body: Some("b".into()), ..CustomPush::default() };
        assert_eq!(push.to_apns().expiration, Some(10_000));
        assert_eq!(push.to_fcm(9_400)["android"]["ttl"], "600s");
        assert!(!push.is_expired(9_999));
        assert!(push.is_expired(10_000));
    }

    #[test]
    fn an_expiry_beyond_28_days_gives_fcm_its_longest_ttl() {
        let push = CustomPush { expiry: Some(1_000 + 34 * 24 * 3600), body: Some("b".into()), ..CustomPush::default() };
        assert_eq!(push.to_fcm(1_000)["android"]["ttl"], "2419200s");
        assert_eq!(push.to_apns().expiration, Some(1_000 + 34 * 24 * 3600), "APNs takes the expiry as it is");
    }

    #[test]
    fn the_seeds_marketing_push_gives_a_declarative_web_push() {
        let web = seed_marketing().to_webpush(1_000, Some("https://chat.example.com/{room}"));
        assert_eq!((web.ttl_seconds, web.urgency, web.topic.as_deref()), (3600, Urgency::High, Some("promo_2026")));
        assert_eq!(
            serde_json::from_slice::<Value>(&web.payload).expect("json"),
            json!({
                "web_push": 8030,
                "notification": { "title": "限時優惠", "body": "您有一則新的優惠活動,立即查看!", "tag": "promo_2026",
                                  "icon": "https://example.com/icon.png", "navigate": "https://chat.example.com/" },
                "app_badge": 1, "type": "marketing"
            })
        );
    }

    #[test]
    fn a_silent_push_reaches_the_web_as_data_without_a_notification() {
        let push =
            CustomPush { push_type: Some("sync".into()), badge: Some(2), expiry: Some(1_600), ..CustomPush::default() };
        let web = push.to_webpush(1_000, Some("https://chat.example.com/"));
        assert_eq!((web.ttl_seconds, web.urgency), (600, Urgency::Normal));
        assert_eq!(
            serde_json::from_slice::<Value>(&web.payload).expect("json"),
            json!({ "app_badge": 2, "type": "sync" })
        );
        let alert_only = CustomPush { alert: Some(Alert::Text("Hi".into())), ..CustomPush::default() };
        let web: Value = serde_json::from_slice(&alert_only.to_webpush(0, None).payload).expect("json");
        assert_eq!(web, json!({ "notification": { "title": "Hi" } }), "no page to open: not declarative");
    }

    #[test]
    fn a_collapse_key_longer_than_apns_allows_is_refused() {
        let push = CustomPush { collapse_key: Some("k".repeat(65)), ..CustomPush::default() };
        assert_eq!(push.validate().expect_err("too long").0, "payload.collapseKey must be at most 64 bytes");
    }

    fn with_blocks(blocks: Value) -> CustomPush {
        let mut push = serde_json::to_value(seed_marketing()).expect("json");
        // Set as they are (a merge would drop the blocks' own nulls).
        push.as_object_mut().expect("object").extend(blocks.as_object().expect("object").clone());
        serde_json::from_value(push).expect("the blocks parse")
    }

    #[test]
    fn override_blocks_merge_over_what_each_provider_gets() {
        let push = with_blocks(json!({
            "apns": { "headers": { "apns-priority": "5", "apns-collapse-id": "promo-apns", "apns-expiration": 0 },
                      "payload": { "aps": { "sound": null, "interruption-level": "passive" }, "deepLink": "app://promo" } },
            "fcm": { "android": { "priority": "normal", "notification": { "channel_id": "promos" } },
                     "data": { "type": null, "deepLink": "app://promo" }, "fcm_options": { "analytics_label": "promo" } },
            "webpush": { "headers": { "Urgency": "low", "TTL": "60" },
                         "notification": { "navigate": "https://chat.example.com/promo", "silent": true } }
        }));
        push.validate().expect("valid");
        let apns = push.to_apns();
        assert_eq!(
            (apns.priority, apns.collapse_id.as_deref(), apns.expiration),
            (Some(ApnsPriority::PowerAware), Some("promo-apns"), Some(0))
        );
        assert_eq!(
            apns_json(&push),
            json!({ "aps": { "alert": "您有一則新的優惠活動,立即查看!", "badge": 1, "interruption-level": "passive" },
                    "type": "marketing", "deepLink": "app://promo" })
        );
        let fcm = push.to_fcm(1_000);
        assert_eq!(fcm["android"]["priority"], "normal");
        assert_eq!(
            fcm["android"]["notification"],
            json!({ "icon": "https://example.com/icon.png", "channel_id": "promos" })
        );
        assert_eq!(fcm["data"], json!({ "deepLink": "app://promo" }), "null removed pushgate's type");
        assert_eq!(fcm["fcm_options"]["analytics_label"], "promo");
        let web = push.to_webpush(1_000, Some("https://chat.example.com/{room}"));
        assert_eq!((web.urgency, web.ttl_seconds), (Urgency::Low, 60));
        let payload: Value = serde_json::from_slice(&web.payload).expect("json");
        assert_eq!(payload["notification"]["navigate"], "https://chat.example.com/promo");
        assert_eq!(payload["notification"]["silent"], true);
        assert_eq!(payload["notification"]["title"], "限時優惠", "what the block leaves alone stays");
        // A data-only FCM message: the block removes what would show.
        let data_only = with_blocks(json!({ "fcm": { "notification": null, "android": { "notification": null } } }));
        data_only.validate().expect("valid");
        let fcm = data_only.to_fcm(1_000);
        assert!(fcm.get("notification").is_none() && fcm["android"].get("notification").is_none(), "{fcm}");
        assert_eq!(fcm["data"], json!({ "type": "marketing" }));
        // Stored and read back, the blocks are the same.
        let stored: CustomPush = serde_json::from_str(&serde_json::to_string(&push).expect("json")).expect("reads");
        assert_eq!(stored, push);
    }

    #[test]
    fn a_block_that_makes_a_push_a_provider_refuses_is_refused_naming_it() {
        let refused = |blocks: Value| with_blocks(blocks).validate().expect_err("refused").0;
        let background = json!({ "apns": { "headers": { "apns-push-type": "background" } } });
        assert!(refused(background).contains("a background push needs aps.content-available 1 and no aps.alert"));
        let background = json!({ "apns": { "headers": { "apns-push-type": "background", "apns-priority": "5" },
                                           "payload": { "aps": { "alert": null, "sound": null, "content-available": 1 } } } });
        let background = with_blocks(background);
        assert!(background.validate().is_ok() && background.to_apns().silent, "a proper background push");
        let big = "x".repeat(4_100);
        assert!(
            refused(json!({ "apns": { "payload": { "big": big } } }))
                .starts_with("payload.apns.payload: the APNs payload with it merged is")
        );
        assert!(
            refused(json!({ "fcm": { "data": { "big": big } } }))
                .starts_with("payload.fcm: the FCM message with it merged is")
        );
        assert!(
            refused(json!({ "webpush": { "notification": { "body": big } } }))
                .starts_with("payload.webpush.notification: ")
        );
        assert!(refused(json!({ "apns": { "payload": { "aps": "x" } } })).starts_with("payload.apns.payload.aps: "));
        assert!(
            refused(json!({ "apns": { "headers": { "apns-id": "x" } } })).starts_with("payload.apns.headers.apns-id: ")
        );
        let level = json!({ "apns": { "payload": { "aps": { "interruption-level": "urgent" } } } });
        assert!(refused(level).starts_with("payload.apns.payload.aps.interruption-level: must be one of passive"));
        let score = json!({ "apns": { "payload": { "aps": { "relevance-score": 1.5 } } } });
        assert!(refused(score).starts_with("payload.apns.payload.aps.relevance-score: "));
        let critical = with_blocks(json!({ "apns": { "payload": { "aps": { "interruption-level": "critical" } } } }));
        assert!(critical.validate().is_ok() && critical.is_critical() && !seed_marketing().is_critical());
        let unknown: Result<CustomPush, _> = serde_json::from_value(json!({ "apns": { "header": {} } }));
        assert!(unknown.is_err(), "an unknown member of a block is refused");
    }
}
