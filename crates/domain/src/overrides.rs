//! push2clients' provider override blocks (`payload.apns`, `payload.fcm`,
//! `payload.webpush`): what a sender adds to, or changes in, the request
//! pushgate builds from IMKIT's fields, per provider. Payload parts are
//! merged as a JSON Merge Patch (RFC 7396: objects merge key by key, `null`
//! removes a key, anything else replaces); headers are named and checked one
//! by one. Everything is checked at accept (a 400 naming the field, nothing
//! stored) so that a delivery never meets a block its provider would refuse.

use crate::ParseError;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// `payload.apns`: APNs request headers and payload keys.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApnsOverride {
    /// `apns-push-type`, `apns-priority`, `apns-expiration`, `apns-collapse-id`, `apns-topic`.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub headers: Map<String, Value>,
    /// Merged over the payload pushgate builds (`aps` and custom keys).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub payload: Map<String, Value>,
}

/// `payload.webpush`: Web Push request headers and notification members.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebPushOverride {
    /// `TTL`, `Urgency`, `Topic` (RFC 8030).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub headers: Map<String, Value>,
    /// Merged over the payload's `notification` (Declarative Web Push members).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub notification: Map<String, Value>,
}

/// `apns-push-type` in an override: the kinds a push2clients is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApnsOverrideType {
    /// A visible notification.
    Alert,
    /// A silent `content-available` push (priority 5).
    Background,
    /// A PushKit VoIP push (priority 10): only `ios-voip` devices get it,
    /// and they get nothing else of push2clients (a VoIP push must report a call).
    Voip,
    /// WidgetKit's reload (`aps.content-changed`), to `ios-widgets` tokens.
    Widgets,
    /// A location query, to `ios-location` tokens.
    Location,
    /// A watchOS complication update, to `ios-complication` tokens.
    Complication,
    /// A File Provider signal, to `ios-fileprovider` tokens.
    FileProvider,
    /// A Push to Talk transmission (priority 10, expiration 0), to `ios-pushtotalk` tokens.
    PushToTalk,
}

impl ApnsOverrideType {
    const ALL: [Self; 8] = [
        Self::Alert,
        Self::Background,
        Self::Voip,
        Self::Widgets,
        Self::Location,
        Self::Complication,
        Self::FileProvider,
        Self::PushToTalk,
    ];

    /// The kind a header value names, if push2clients sends it.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == text)
    }

    /// The header value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Alert => "alert",
            Self::Background => "background",
            Self::Voip => "voip",
            Self::Widgets => "widgets",
            Self::Location => "location",
            Self::Complication => "complication",
            Self::FileProvider => "fileprovider",
            Self::PushToTalk => "pushtotalk",
        }
    }

    /// The device type whose tokens alone take this kind, for the kinds
    /// that go to a token of their own.
    pub fn dedicated_device(self) -> Option<crate::DeviceType> {
        use crate::DeviceType;
        match self {
            Self::Alert | Self::Background | Self::Voip => None,
            Self::Widgets => Some(DeviceType::IosWidgets),
            Self::Location => Some(DeviceType::IosLocation),
            Self::Complication => Some(DeviceType::IosComplication),
            Self::FileProvider => Some(DeviceType::IosFileProvider),
            Self::PushToTalk => Some(DeviceType::IosPushToTalk),
        }
    }
}

/// The `apns-push-type`s push2clients does not send, and why.
const OTHER_PUSH_TYPES: [(&str, &str); 2] = [
    ("liveactivity", "goes to an ActivityKit token: send it with POST /push/liveactivity"),
    ("mdm", "goes to an MDM enrolment's token, which a chat app does not hold"),
];

/// `apns-priority`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApnsPriority {
    /// 10: at once.
    Immediate,
    /// 5: as the device's power allows.
    PowerAware,
    /// 1: only when the device is awake for other reasons.
    Low,
}

impl ApnsPriority {
    /// The header value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Immediate => "10",
            Self::PowerAware => "5",
            Self::Low => "1",
        }
    }
}

/// The headers of `payload.apns`, read and checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApnsHeaders {
    /// `apns-push-type`.
    pub push_type: Option<ApnsOverrideType>,
    /// `apns-priority`.
    pub priority: Option<ApnsPriority>,
    /// `apns-expiration`, Unix seconds (0: now or never).
    pub expiration: Option<u64>,
    /// `apns-collapse-id`.
    pub collapse_id: Option<String>,
    /// `apns-topic`: the app's bundle id, instead of the configured one.
    pub topic: Option<String>,
}

/// Longest `apns-collapse-id`, in bytes.
const MAX_COLLAPSE_ID_BYTES: usize = 64;
/// Longest Web Push `Topic` (RFC 8030 §5.4: 32 characters of the URL-safe base64 alphabet).
const MAX_TOPIC_CHARS: usize = 32;

/// A member's name in an error (`payload.apns.headers.apns-priority`),
/// written only when an error is: the blocks are read again at every
/// delivery attempt, and a name made for each member would be made for nothing.
struct FieldName<'a>(&'static str, &'a str);

impl std::fmt::Display for FieldName<'_> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "{}.{}", self.0, self.1)
    }
}

/// A header's value as text: a string, or a number written as one.
fn header_text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        _ => None,
    }
}

impl ApnsHeaders {
    /// Reads `payload.apns.headers`; an error names the header and what it must be.
    pub fn parse(headers: &Map<String, Value>) -> Result<Self, ParseError> {
        let mut parsed = Self::default();
        for (name, value) in headers {
            let at = FieldName("payload.apns.headers", name);
            let text = header_text(value).ok_or_else(|| ParseError::new(format!("{at}: must be a string")))?;
            match name.to_ascii_lowercase().as_str() {
                "apns-push-type" => {
                    parsed.push_type = Some(match ApnsOverrideType::parse(&text) {
                        Some(kind) => kind,
                        None => {
                            let why = match OTHER_PUSH_TYPES.iter().find(|(name, _)| *name == text) {
                                Some((_, why)) => format!("a {text} push {why}"),
                                None => format!("{text:?} is not an apns-push-type Apple documents"),
                            };
                            let sent: Vec<&str> = ApnsOverrideType::ALL.iter().map(|kind| kind.as_str()).collect();
                            return Err(ParseError::new(format!(
                                "{at}: {why}; push2clients sends {}",
                                sent.join(", ")
                            )));
                        }
                    });
                }
                "apns-priority" => {
                    parsed.priority = Some(match text.as_str() {
                        "10" => ApnsPriority::Immediate,
                        "5" => ApnsPriority::PowerAware,
                        "1" => ApnsPriority::Low,
                        _ => return Err(ParseError::new(format!("{at}: must be 10, 5 or 1, not {text:?}"))),
                    });
                }
                "apns-expiration" => {
                    let seconds = text.parse().map_err(|_| {
                        ParseError::new(format!("{at}: must be Unix seconds (0: deliver now or never), not {text:?}"))
                    })?;
                    parsed.expiration = Some(seconds);
                }
                "apns-collapse-id" => {
                    if text.is_empty() || text.len() > MAX_COLLAPSE_ID_BYTES {
                        return Err(ParseError::new(format!("{at}: must be 1 to {MAX_COLLAPSE_ID_BYTES} bytes")));
                    }
                    parsed.collapse_id = Some(text);
                }
                "apns-topic" => {
                    let valid = !text.is_empty()
                        && text.bytes().all(|byte| byte.is_ascii_alphanumeric() || b".-_".contains(&byte));
                    if !valid {
                        return Err(ParseError::new(format!("{at}: must be the app's bundle id, not {text:?}")));
                    }
                    parsed.topic = Some(text);
                }
                "apns-id" | "authorization" | "apns-push-type-suffix" => {
                    return Err(ParseError::new(format!("{at}: pushgate sets this header itself")));
                }
                _ => {
                    return Err(ParseError::new(format!(
                        "{at}: not an APNs header pushgate takes (apns-push-type, apns-priority, apns-expiration, \
                         apns-collapse-id, apns-topic)"
                    )));
                }
            }
        }
        match (parsed.push_type, parsed.priority) {
            (Some(ApnsOverrideType::Background), Some(ApnsPriority::Immediate)) => {
                return Err(ParseError::new(
                    "payload.apns.headers.apns-priority: a background push must have priority 5 or 1 (Apple refuses 10)",
                ));
            }
            (Some(kind @ (ApnsOverrideType::Voip | ApnsOverrideType::PushToTalk)), Some(priority))
                if priority != ApnsPriority::Immediate =>
            {
                return Err(ParseError::new(format!(
                    "payload.apns.headers.apns-priority: a {} push goes at priority 10 (Apple's rule)",
                    kind.as_str()
                )));
            }
            _ => {}
        }
        if parsed.push_type == Some(ApnsOverrideType::PushToTalk) && parsed.expiration != Some(0) {
            return Err(ParseError::new(
                "payload.apns.headers.apns-expiration: a pushtotalk push must say 0 (Apple's rule: a transmission \
                 is now or never)",
            ));
        }
        Ok(parsed)
    }
}

/// The Web Push headers of `payload.webpush`, read and checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WebPushHeaders {
    /// `TTL`, seconds.
    pub ttl_seconds: Option<u64>,
    /// `Urgency`.
    pub urgency: Option<crate::webpush::Urgency>,
    /// `Topic`.
    pub topic: Option<String>,
}

impl WebPushHeaders {
    /// Reads `payload.webpush.headers`; an error names the header and what it must be.
    pub fn parse(headers: &Map<String, Value>) -> Result<Self, ParseError> {
        use crate::webpush::Urgency;
        let mut parsed = Self::default();
        for (name, value) in headers {
            let at = FieldName("payload.webpush.headers", name);
            let text = header_text(value).ok_or_else(|| ParseError::new(format!("{at}: must be a string")))?;
            match name.to_ascii_lowercase().as_str() {
                "ttl" => {
                    let seconds: u64 = text
                        .parse()
                        .map_err(|_| ParseError::new(format!("{at}: must be whole seconds, not {text:?}")))?;
                    parsed.ttl_seconds = Some(seconds.min(crate::webpush::MAX_WEBPUSH_TTL_SECONDS));
                }
                "urgency" => {
                    parsed.urgency = Some(match text.as_str() {
                        "very-low" => Urgency::VeryLow,
                        "low" => Urgency::Low,
                        "normal" => Urgency::Normal,
                        "high" => Urgency::High,
                        _ => {
                            return Err(ParseError::new(format!(
                                "{at}: must be very-low, low, normal or high, not {text:?}"
                            )));
                        }
                    });
                }
                "topic" => {
                    let valid = !text.is_empty()
                        && text.len() <= MAX_TOPIC_CHARS
                        && text.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_');
                    if !valid {
                        return Err(ParseError::new(format!(
                            "{at}: must be 1 to {MAX_TOPIC_CHARS} characters of A-Z, a-z, 0-9, - and _"
                        )));
                    }
                    parsed.topic = Some(text);
                }
                _ => {
                    return Err(ParseError::new(format!(
                        "{at}: not a Web Push header pushgate takes (TTL, Urgency, Topic)"
                    )));
                }
            }
        }
        Ok(parsed)
    }
}

/// The members of an FCM v1 `message` a sender may set; the target
/// (`token`, `topic`, `condition`) is pushgate's, per device.
const FCM_MESSAGE_MEMBERS: [&str; 6] = ["data", "notification", "android", "webpush", "apns", "fcm_options"];

/// Checks `payload.fcm` against the FCM v1 `message` it is merged into:
/// known members, `data` of strings, `android.priority` and `android.ttl` in
/// FCM's forms. (A `null` removes what pushgate set.)
pub fn check_fcm(block: &Map<String, Value>) -> Result<(), ParseError> {
    for (name, value) in block {
        let at = FieldName("payload.fcm", name);
        if matches!(name.as_str(), "token" | "topic" | "condition" | "name") {
            return Err(ParseError::new(format!("{at}: pushgate sets the target of each message itself")));
        }
        if !FCM_MESSAGE_MEMBERS.contains(&name.as_str()) {
            return Err(ParseError::new(format!(
                "{at}: not a member of an FCM message ({})",
                FCM_MESSAGE_MEMBERS.join(", ")
            )));
        }
        if !value.is_object() && !value.is_null() {
            return Err(ParseError::new(format!("{at}: must be an object")));
        }
    }
    if let Some(Value::Object(data)) = block.get("data")
        && let Some((key, _)) = data.iter().find(|(_, value)| !value.is_string() && !value.is_null())
    {
        return Err(ParseError::new(format!("payload.fcm.data.{key}: FCM data values must be strings")));
    }
    if let Some(Value::Object(android)) = block.get("android") {
        match android.get("priority") {
            None | Some(Value::Null) => {}
            Some(Value::String(priority)) if matches!(priority.as_str(), "normal" | "high") => {}
            Some(other) => {
                return Err(ParseError::new(format!(
                    "payload.fcm.android.priority: must be \"normal\" or \"high\", not {other}"
                )));
            }
        }
        match android.get("ttl") {
            None | Some(Value::Null) => {}
            Some(Value::String(ttl)) if is_duration(ttl) => {}
            Some(other) => {
                return Err(ParseError::new(format!(
                    "payload.fcm.android.ttl: must be seconds with an s, such as \"3600s\", not {other}"
                )));
            }
        }
        if let Some(Value::Object(notification)) = android.get("notification") {
            check_android_notification(notification)?;
        }
    }
    Ok(())
}

/// The `AndroidNotification` options whose forms FCM checks: a wrong one
/// would fail every delivery of the push with `INVALID_ARGUMENT`.
fn check_android_notification(notification: &Map<String, Value>) -> Result<(), ParseError> {
    let at = |key: &str| format!("payload.fcm.android.notification.{key}");
    for (key, value) in notification {
        if value.is_null() {
            continue;
        }
        let valid = match key.as_str() {
            // #rrggbb.
            "color" => value.as_str().is_some_and(|color| {
                color.len() == 7 && color.starts_with('#') && color[1..].bytes().all(|b| b.is_ascii_hexdigit())
            }),
            "visibility" => {
                value.as_str().is_some_and(|visibility| matches!(visibility, "PRIVATE" | "PUBLIC" | "SECRET"))
            }
            "notification_priority" => value.as_str().is_some_and(|priority| {
                matches!(
                    priority,
                    "PRIORITY_MIN" | "PRIORITY_LOW" | "PRIORITY_DEFAULT" | "PRIORITY_HIGH" | "PRIORITY_MAX"
                )
            }),
            "notification_count" => value.as_u64().is_some_and(|count| count <= u64::from(u32::MAX)),
            "sticky" | "default_sound" | "default_vibrate_timings" | "default_light_settings" | "local_only" => {
                value.is_boolean()
            }
            "image" => value.as_str().is_some_and(|url| url.starts_with("https://")),
            "title_loc_args" | "body_loc_args" => {
                value.as_array().is_some_and(|args| args.iter().all(Value::is_string))
            }
            "title" | "body" | "icon" | "sound" | "tag" | "click_action" | "channel_id" | "ticker"
            | "title_loc_key" | "body_loc_key" | "event_time" => value.is_string(),
            "vibrate_timings" | "light_settings" | "proxy" | "bypass_proxy_notification" => true,
            _ => {
                return Err(ParseError::new(format!("{}: not an AndroidNotification option", at(key))));
            }
        };
        if !valid {
            return Err(ParseError::new(format!("{}: {value} is not in the form FCM takes", at(key))));
        }
    }
    Ok(())
}

/// A protobuf `Duration` in JSON: seconds, up to nine decimals, then `s`.
fn is_duration(text: &str) -> bool {
    let Some(number) = text.strip_suffix('s') else { return false };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    !whole.is_empty()
        && whole.bytes().all(|byte| byte.is_ascii_digit())
        && fraction.len() <= 9
        && fraction.bytes().all(|byte| byte.is_ascii_digit())
        && !(number.contains('.') && fraction.is_empty())
}

/// Applies `patch` to `target` as a JSON Merge Patch (RFC 7396).
pub fn merge_patch(target: &mut Map<String, Value>, patch: &Map<String, Value>) {
    for (key, value) in patch {
        match value {
            Value::Null => {
                target.remove(key);
            }
            Value::Object(inner) => {
                let slot = target.entry(key.clone()).or_insert_with(|| Value::Object(Map::new()));
                if !slot.is_object() {
                    *slot = Value::Object(Map::new());
                }
                if let Value::Object(slot) = slot {
                    merge_patch(slot, inner);
                }
            }
            other => {
                target.insert(key.clone(), other.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => unreachable!("an object"),
        }
    }

    #[test]
    fn a_merge_patch_merges_objects_removes_nulls_and_replaces_the_rest() {
        // RFC 7396 Appendix A, the examples that apply to objects.
        let mut target = object(json!({ "a": "b", "c": { "d": "e", "f": "g" }, "h": [1], "i": "j" }));
        merge_patch(
            &mut target,
            &object(json!({ "a": "z", "c": { "f": null }, "h": { "x": 1 }, "i": null, "k": [2] })),
        );
        assert_eq!(Value::Object(target), json!({ "a": "z", "c": { "d": "e" }, "h": { "x": 1 }, "k": [2] }));
    }

    #[test]
    fn apns_headers_are_read_and_each_wrong_one_is_named() {
        let headers = ApnsHeaders::parse(&object(json!({
            "apns-push-type": "background", "apns-priority": 5, "apns-expiration": "0",
            "apns-collapse-id": "sync", "apns-topic": "io.imkit.app"
        })))
        .expect("valid");
        assert_eq!(headers.push_type, Some(ApnsOverrideType::Background));
        assert_eq!((headers.priority, headers.expiration), (Some(ApnsPriority::PowerAware), Some(0)));
        for (headers, named) in [
            (
                json!({ "apns-push-type": "pager" }),
                "payload.apns.headers.apns-push-type: \"pager\" is not an apns-push-type",
            ),
            (
                json!({ "apns-push-type": "voip", "apns-priority": 1 }),
                "payload.apns.headers.apns-priority: a voip push goes",
            ),
            (json!({ "apns-priority": "7" }), "payload.apns.headers.apns-priority: "),
            (json!({ "apns-expiration": "soon" }), "payload.apns.headers.apns-expiration: "),
            (json!({ "apns-collapse-id": "k".repeat(65) }), "payload.apns.headers.apns-collapse-id: "),
            (json!({ "apns-topic": "io imkit" }), "payload.apns.headers.apns-topic: "),
            (json!({ "apns-id": "x" }), "payload.apns.headers.apns-id: pushgate sets"),
            (json!({ "x-mine": "x" }), "payload.apns.headers.x-mine: not an APNs header"),
            (json!({ "apns-priority": ["10"] }), "payload.apns.headers.apns-priority: must be a string"),
            (json!({ "apns-push-type": "background", "apns-priority": "10" }), "a background push must have priority"),
        ] {
            let error = ApnsHeaders::parse(&object(headers)).expect_err("refused").0;
            assert!(error.contains(named), "{error}");
        }
    }

    #[test]
    fn web_push_headers_are_read_and_each_wrong_one_is_named() {
        let headers =
            WebPushHeaders::parse(&object(json!({ "TTL": 60, "Urgency": "very-low", "Topic": "news_1" }))).expect("ok");
        assert_eq!(headers.ttl_seconds, Some(60));
        assert_eq!(headers.urgency, Some(crate::webpush::Urgency::VeryLow));
        for (headers, named) in [
            (json!({ "TTL": "-1" }), "payload.webpush.headers.TTL: "),
            (json!({ "Urgency": "now" }), "payload.webpush.headers.Urgency: "),
            (json!({ "Topic": "a/b" }), "payload.webpush.headers.Topic: "),
            (json!({ "Topic": "t".repeat(33) }), "payload.webpush.headers.Topic: "),
            (json!({ "Crypto-Key": "x" }), "payload.webpush.headers.Crypto-Key: not a Web Push header"),
        ] {
            let error = WebPushHeaders::parse(&object(headers)).expect_err("refused").0;
            assert!(error.starts_with(named), "{error}");
        }
    }

    #[test]
    fn an_fcm_block_takes_message_members_in_fcms_forms_only() {
        let valid = json!({ "android": { "priority": "normal", "ttl": "86400s", "notification": {
                                "channel_id": "news", "image": "https://example.com/a.png", "color": "#1a2B3c",
                                "sticky": true, "visibility": "PUBLIC", "notification_count": 3 } },
                            "data": { "k": "v", "gone": null }, "fcm_options": { "analytics_label": "news" } });
        assert!(check_fcm(&object(valid)).is_ok());
        for (block, named) in [
            (json!({ "token": "x" }), "payload.fcm.token: pushgate sets the target"),
            (json!({ "topic": "news" }), "payload.fcm.topic: pushgate sets the target"),
            (json!({ "androidd": {} }), "payload.fcm.androidd: not a member of an FCM message"),
            (json!({ "data": { "n": 1 } }), "payload.fcm.data.n: FCM data values must be strings"),
            (json!({ "android": { "priority": "urgent" } }), "payload.fcm.android.priority: "),
            (json!({ "android": { "ttl": "1h" } }), "payload.fcm.android.ttl: "),
            (json!({ "android": { "ttl": "3." } }), "payload.fcm.android.ttl: "),
            (json!({ "notification": "x" }), "payload.fcm.notification: must be an object"),
            (json!({ "android": { "notification": { "color": "red" } } }), "payload.fcm.android.notification.color: "),
            (
                json!({ "android": { "notification": { "visibility": "public" } } }),
                "payload.fcm.android.notification.visibility: ",
            ),
            (
                json!({ "android": { "notification": { "notification_count": -1 } } }),
                "payload.fcm.android.notification.notification_count: ",
            ),
            (
                json!({ "android": { "notification": { "sticky": "yes" } } }),
                "payload.fcm.android.notification.sticky: ",
            ),
            (
                json!({ "android": { "notification": { "image": "http://x" } } }),
                "payload.fcm.android.notification.image: ",
            ),
            (
                json!({ "android": { "notification": { "chanel_id": "x" } } }),
                "payload.fcm.android.notification.chanel_id: not an",
            ),
        ] {
            let error = check_fcm(&object(block)).expect_err("refused").0;
            assert!(error.starts_with(named), "{error}");
        }
        assert!(is_duration("3.5s") && is_duration("0s") && !is_duration("s") && !is_duration("1.1234567890s"));
    }
}
