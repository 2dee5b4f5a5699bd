//! Pure request building and answer mapping, unit-tested without a network.

use crate::Outcome;
use bytes::Bytes;
use http::{HeaderValue, Method, Request, StatusCode};
use std::time::Duration;
use uuid::Uuid;

/// The payload limit for every push type but VoIP.
pub const MAX_PAYLOAD_BYTES: usize = 4096;
/// The payload limit for VoIP pushes.
pub const MAX_VOIP_PAYLOAD_BYTES: usize = 5120;
/// `apns-collapse-id` may be at most this long.
pub const MAX_COLLAPSE_ID_BYTES: usize = 64;

/// `apns-push-type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushType {
    /// A visible notification.
    Alert,
    /// A silent, content-available push.
    Background,
    /// A PushKit VoIP push (topic gets `.voip`).
    Voip,
    /// A location query.
    Location,
    /// A watch complication update.
    Complication,
    /// A file provider update.
    FileProvider,
    /// Mobile device management.
    Mdm,
    /// A Live Activity update (topic gets `.push-type.liveactivity`).
    LiveActivity,
    /// A Push to Talk push.
    PushToTalk,
    /// A WidgetKit reload (iOS 26; topic gets `.push-type.widgets`).
    Widgets,
}

impl PushType {
    /// The header value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Alert => "alert",
            Self::Background => "background",
            Self::Voip => "voip",
            Self::Location => "location",
            Self::Complication => "complication",
            Self::FileProvider => "fileprovider",
            Self::Mdm => "mdm",
            Self::LiveActivity => "liveactivity",
            Self::PushToTalk => "pushtotalk",
            Self::Widgets => "widgets",
        }
    }

    fn topic_suffix(self) -> &'static str {
        match self {
            Self::Voip => ".voip",
            Self::Location => ".location-query",
            Self::Complication => ".complication",
            Self::FileProvider => ".pushkit.fileprovider",
            Self::LiveActivity => ".push-type.liveactivity",
            Self::PushToTalk => ".voip-ptt",
            Self::Widgets => ".push-type.widgets",
            Self::Alert | Self::Background | Self::Mdm => "",
        }
    }

    /// The largest payload this push type may carry.
    pub fn max_payload_bytes(self) -> usize {
        if self == Self::Voip { MAX_VOIP_PAYLOAD_BYTES } else { MAX_PAYLOAD_BYTES }
    }
}

/// `apns-priority`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    /// 10: deliver now (must alert, sound or badge).
    Immediate,
    /// 5: power-aware; required for background pushes.
    PowerAware,
    /// 1: lowest.
    Low,
}

impl Priority {
    fn as_str(self) -> &'static str {
        match self {
            Self::Immediate => "10",
            Self::PowerAware => "5",
            Self::Low => "1",
        }
    }
}

/// One notification for one device.
#[derive(Debug, Clone)]
pub struct Notification<'a> {
    /// The device token, hex.
    pub device_token: &'a str,
    /// What kind of push this is.
    pub push_type: PushType,
    /// The app's bundle id; the push type's suffix is added here.
    pub topic: &'a str,
    /// Stable per (push, device): see [`apns_id`].
    pub apns_id: Uuid,
    /// Unix seconds after which APNs should stop trying; `Some(0)` means
    /// deliver once or never; `None` lets APNs pick.
    pub expiration: Option<u64>,
    /// `None` picks 10, or 5 for background pushes.
    pub priority: Option<Priority>,
    /// `apns-collapse-id`.
    pub collapse_id: Option<&'a str>,
    /// The JSON payload (`{"aps": {...}, ...}`).
    pub payload: &'a [u8],
}

/// The `apns-id` of one push to one device: a UUID derived from both, so every
/// retry of the same delivery carries the same id.
pub fn apns_id(push_id: &str, device_key: &str) -> Uuid {
    const NAMESPACE: Uuid = Uuid::from_u128(0x6b1f_3c2e_8d4a_4f5b_9c7e_1a2b_3c4d_5e6f);
    let mut name = Vec::with_capacity(push_id.len() + device_key.len() + 1);
    name.extend_from_slice(push_id.as_bytes());
    name.push(0);
    name.extend_from_slice(device_key.as_bytes());
    Uuid::new_v5(&NAMESPACE, &name)
}

/// Builds the HTTP/2 request, or says why APNs would refuse it without sending.
pub fn build_request(
    notification: &Notification<'_>,
    authority: &str,
    bearer: Option<&str>,
) -> Result<Request<Bytes>, Outcome> {
    if notification.payload.is_empty() {
        return Err(Outcome::rejected("PayloadEmpty"));
    }
    if notification.payload.len() > notification.push_type.max_payload_bytes() {
        return Err(Outcome::rejected("PayloadTooLarge"));
    }
    if notification.device_token.is_empty() || !notification.device_token.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Outcome::invalid_token("BadDeviceToken", None));
    }
    let priority = notification.priority.unwrap_or(match notification.push_type {
        PushType::Background => Priority::PowerAware,
        _ => Priority::Immediate,
    });
    if notification.push_type == PushType::Background && priority == Priority::Immediate {
        return Err(Outcome::rejected("BadPriority"));
    }
    let mut builder = Request::builder()
        .method(Method::POST)
        .uri(format!("https://{authority}/3/device/{}", notification.device_token))
        .header("apns-push-type", notification.push_type.as_str())
        .header("apns-id", notification.apns_id.hyphenated().to_string())
        .header("apns-priority", priority.as_str())
        .header("apns-topic", format!("{}{}", notification.topic, notification.push_type.topic_suffix()))
        .header(http::header::CONTENT_TYPE, "application/json");
    if let Some(expiration) = notification.expiration {
        builder = builder.header("apns-expiration", expiration.to_string());
    }
    if let Some(collapse_id) = notification.collapse_id {
        if collapse_id.len() > MAX_COLLAPSE_ID_BYTES {
            return Err(Outcome::rejected("BadCollapseId"));
        }
        let value = HeaderValue::from_str(collapse_id).map_err(|_| Outcome::rejected("BadCollapseId"))?;
        builder = builder.header("apns-collapse-id", value);
    }
    if let Some(jwt) = bearer {
        builder = builder.header(http::header::AUTHORIZATION, format!("bearer {jwt}"));
    }
    builder.body(Bytes::copy_from_slice(notification.payload)).map_err(|_| Outcome::rejected("BadTopic"))
}

/// APNs' error body.
#[derive(Debug, Default, serde::Deserialize)]
pub struct ErrorBody {
    /// Apple's reason, such as `BadDeviceToken`.
    #[serde(default)]
    pub reason: String,
    /// With 410: when the token became invalid, Unix milliseconds.
    pub timestamp: Option<i64>,
}

/// How an APNs answer maps onto what to do. Two answers need the client's
/// own action first and are told apart here: `ExpiredProviderToken` (sign a
/// new token) and the answers that call for a new connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Final: hand this outcome to the caller.
    Final(Outcome),
    /// Sign a new provider token and send again.
    ExpiredProviderToken,
    /// Send again on a new connection (`IdleTimeout`).
    Reconnect,
    /// Retry later, and open a new connection meanwhile (`Shutdown`, 503).
    RetryOnNewConnection(Outcome),
}

/// Maps a status and body to an [`Answer`], per the table in protocols.md.
pub fn map_answer(status: StatusCode, body: &[u8], retry_after: Option<Duration>) -> Answer {
    if status == StatusCode::OK {
        return Answer::Final(Outcome::Delivered);
    }
    let error: ErrorBody = serde_json::from_slice(body).unwrap_or_default();
    let reason = error.reason.as_str();
    let outcome = match (status.as_u16(), reason) {
        (400, "BadDeviceToken" | "DeviceTokenNotForTopic") => Outcome::invalid_token(reason, None),
        (400, "TopicDisallowed") => Outcome::app_rejected(reason),
        (400, "IdleTimeout") => return Answer::Reconnect,
        (403, "ExpiredProviderToken") => return Answer::ExpiredProviderToken,
        (
            403,
            "InvalidProviderToken"
            | "MissingProviderToken"
            | "BadCertificate"
            | "BadCertificateEnvironment"
            | "Forbidden",
        ) => Outcome::app_rejected(reason),
        (410, _) => Outcome::invalid_token(if reason.is_empty() { "Unregistered" } else { reason }, error.timestamp),
        (429, "TooManyProviderTokenUpdates") => {
            Outcome::retry(reason, Some(retry_after.unwrap_or(super::jwt::MIN_REFRESH_INTERVAL)))
        }
        (429, _) => Outcome::retry(if reason.is_empty() { "TooManyRequests" } else { reason }, retry_after),
        (503, _) => {
            let reason = if reason.is_empty() { "ServiceUnavailable" } else { reason };
            return Answer::RetryOnNewConnection(Outcome::retry(reason, retry_after));
        }
        (500..=599, _) => Outcome::retry(if reason.is_empty() { "InternalServerError" } else { reason }, retry_after),
        (400..=499, _) => {
            if !KNOWN_REJECTIONS.contains(&reason) {
                tracing::warn!(
                    apns.status = status.as_u16(),
                    apns.reason = reason,
                    "unknown APNs answer; failing this delivery"
                );
            }
            Outcome::rejected(if reason.is_empty() { status.as_str() } else { reason })
        }
        _ => {
            tracing::warn!(apns.status = status.as_u16(), apns.reason = reason, "unexpected APNs status; retrying");
            Outcome::retry(status.as_str(), retry_after)
        }
    };
    Answer::Final(outcome)
}

/// The 4xx reasons that mean "our request is wrong": fail, don't retry unchanged.
const KNOWN_REJECTIONS: &[&str] = &[
    "BadCollapseId",
    "BadExpirationDate",
    "BadMessageId",
    "BadPriority",
    "BadTopic",
    "DuplicateHeaders",
    "InvalidPushType",
    "MissingDeviceToken",
    "MissingTopic",
    "PayloadEmpty",
    "PayloadTooLarge",
    "BadPath",
    "MethodNotAllowed",
];

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "740f4707bebcf74f9b7c25d48e3358945f6aa01da5ddb387462c7eaf61bb78ad";

    fn notification<'a>(push_type: PushType, payload: &'a [u8]) -> Notification<'a> {
        Notification {
            device_token: TOKEN,
            push_type,
            topic: "io.imkit.app",
            apns_id: apns_id("push-1", "ios:iphone-1"),
            expiration: Some(1_800_000_000),
            priority: None,
            collapse_id: Some("promo_2026"),
            payload,
        }
    }

    fn header<'a>(request: &'a Request<Bytes>, name: &str) -> &'a str {
        request.headers().get(name).and_then(|value| value.to_str().ok()).unwrap_or("<absent>")
    }

    #[test]
    fn an_alert_request_carries_every_header_apns_reads() {
        let payload = br#"{"aps":{"alert":"hi"}}"#;
        let request =
            build_request(&notification(PushType::Alert, payload), "api.push.apple.com", Some("jwt")).unwrap();
        assert_eq!(request.method(), Method::POST);
        assert_eq!(request.uri().to_string(), format!("https://api.push.apple.com/3/device/{TOKEN}"));
        assert_eq!(header(&request, "authorization"), "bearer jwt");
        assert_eq!(header(&request, "apns-push-type"), "alert");
        assert_eq!(header(&request, "apns-priority"), "10");
        assert_eq!(header(&request, "apns-topic"), "io.imkit.app");
        assert_eq!(header(&request, "apns-expiration"), "1800000000");
        assert_eq!(header(&request, "apns-collapse-id"), "promo_2026");
        assert_eq!(header(&request, "apns-id"), apns_id("push-1", "ios:iphone-1").to_string());
        assert_eq!(request.body().as_ref(), payload);
    }

    #[test]
    fn a_background_push_defaults_to_priority_5_and_refuses_10() {
        let payload = br#"{"aps":{"content-available":1}}"#;
        let request = build_request(&notification(PushType::Background, payload), "h", None).unwrap();
        assert_eq!(header(&request, "apns-priority"), "5");
        assert_eq!(header(&request, "authorization"), "<absent>", "certificate auth sends no bearer");
        let mut forced = notification(PushType::Background, payload);
        forced.priority = Some(Priority::Immediate);
        assert_eq!(build_request(&forced, "h", None).unwrap_err(), Outcome::rejected("BadPriority"));
    }

    #[test]
    fn a_voip_push_uses_the_voip_topic_and_the_larger_limit() {
        let payload = vec![b' '; 5000];
        let request = build_request(&notification(PushType::Voip, &payload), "h", None).unwrap();
        assert_eq!(header(&request, "apns-topic"), "io.imkit.app.voip");
        let too_big = vec![b' '; 5121];
        assert_eq!(
            build_request(&notification(PushType::Voip, &too_big), "h", None).unwrap_err(),
            Outcome::rejected("PayloadTooLarge")
        );
    }

    #[test]
    fn each_push_type_gets_the_topic_apple_asks_for() {
        // Apple, "Sending notification requests to APNs", apns-push-type.
        for (push_type, topic) in [
            (PushType::Alert, "io.imkit.app"),
            (PushType::Background, "io.imkit.app"),
            (PushType::Location, "io.imkit.app.location-query"),
            (PushType::Voip, "io.imkit.app.voip"),
            (PushType::Complication, "io.imkit.app.complication"),
            (PushType::FileProvider, "io.imkit.app.pushkit.fileprovider"),
            (PushType::LiveActivity, "io.imkit.app.push-type.liveactivity"),
            (PushType::PushToTalk, "io.imkit.app.voip-ptt"),
            (PushType::Widgets, "io.imkit.app.push-type.widgets"),
        ] {
            let request = build_request(&notification(push_type, br#"{"aps":{}}"#), "h", None).unwrap();
            assert_eq!(header(&request, "apns-topic"), topic, "{push_type:?}");
        }
    }

    #[test]
    fn a_payload_over_4096_bytes_is_refused_before_sending() {
        let payload = vec![b' '; 4097];
        let outcome = build_request(&notification(PushType::Alert, &payload), "h", None).unwrap_err();
        assert_eq!(outcome, Outcome::rejected("PayloadTooLarge"));
        let payload = vec![b' '; 4096];
        assert!(build_request(&notification(PushType::Alert, &payload), "h", None).is_ok());
    }

    #[test]
    fn a_collapse_id_over_64_bytes_is_refused() {
        let long = "x".repeat(65);
        let mut with_long_id = notification(PushType::Alert, b"{}");
        with_long_id.collapse_id = Some(&long);
        assert_eq!(build_request(&with_long_id, "h", None).unwrap_err(), Outcome::rejected("BadCollapseId"));
    }

    #[test]
    fn the_apns_id_is_stable_per_push_and_device() {
        assert_eq!(apns_id("p", "d"), apns_id("p", "d"));
        assert_ne!(apns_id("p", "d"), apns_id("p", "e"));
        assert_ne!(apns_id("pd", ""), apns_id("p", "d"), "the separator keeps the two parts apart");
        assert!(apns_id("p", "d").to_string().chars().all(|c| !c.is_ascii_uppercase()));
    }

    fn answer(status: u16, body: &str) -> Answer {
        map_answer(StatusCode::from_u16(status).unwrap(), body.as_bytes(), None)
    }

    #[test]
    fn every_documented_answer_maps_to_its_outcome() {
        let reason = |r: &str| format!(r#"{{"reason":"{r}"}}"#);
        assert_eq!(answer(200, ""), Answer::Final(Outcome::Delivered));
        assert_eq!(
            answer(400, &reason("BadDeviceToken")),
            Answer::Final(Outcome::invalid_token("BadDeviceToken", None))
        );
        assert_eq!(
            answer(400, &reason("DeviceTokenNotForTopic")),
            Answer::Final(Outcome::invalid_token("DeviceTokenNotForTopic", None))
        );
        assert_eq!(answer(400, &reason("TopicDisallowed")), Answer::Final(Outcome::app_rejected("TopicDisallowed")));
        for ours in KNOWN_REJECTIONS.iter().filter(|r| !["BadPath", "MethodNotAllowed", "PayloadTooLarge"].contains(r))
        {
            assert_eq!(answer(400, &reason(ours)), Answer::Final(Outcome::rejected(*ours)), "{ours}");
        }
        assert_eq!(answer(400, &reason("IdleTimeout")), Answer::Reconnect);
        assert_eq!(answer(403, &reason("ExpiredProviderToken")), Answer::ExpiredProviderToken);
        for credentials in
            ["InvalidProviderToken", "MissingProviderToken", "BadCertificate", "BadCertificateEnvironment", "Forbidden"]
        {
            assert_eq!(answer(403, &reason(credentials)), Answer::Final(Outcome::app_rejected(credentials)));
        }
        assert_eq!(answer(404, &reason("BadPath")), Answer::Final(Outcome::rejected("BadPath")));
        assert_eq!(answer(405, &reason("MethodNotAllowed")), Answer::Final(Outcome::rejected("MethodNotAllowed")));
        assert_eq!(
            answer(410, r#"{"reason":"Unregistered","timestamp":1700000000123}"#),
            Answer::Final(Outcome::invalid_token("Unregistered", Some(1_700_000_000_123)))
        );
        assert_eq!(answer(410, &reason("ExpiredToken")), Answer::Final(Outcome::invalid_token("ExpiredToken", None)));
        assert_eq!(answer(413, &reason("PayloadTooLarge")), Answer::Final(Outcome::rejected("PayloadTooLarge")));
        assert_eq!(answer(429, &reason("TooManyRequests")), Answer::Final(Outcome::retry("TooManyRequests", None)));
        assert_eq!(
            answer(429, &reason("TooManyProviderTokenUpdates")),
            Answer::Final(Outcome::retry("TooManyProviderTokenUpdates", Some(super::super::jwt::MIN_REFRESH_INTERVAL)))
        );
        assert_eq!(
            answer(500, &reason("InternalServerError")),
            Answer::Final(Outcome::retry("InternalServerError", None))
        );
        assert_eq!(
            answer(503, &reason("ServiceUnavailable")),
            Answer::RetryOnNewConnection(Outcome::retry("ServiceUnavailable", None))
        );
        assert_eq!(answer(503, &reason("Shutdown")), Answer::RetryOnNewConnection(Outcome::retry("Shutdown", None)));
    }

    #[test]
    fn an_unknown_reason_fails_the_delivery_but_keeps_the_token() {
        assert_eq!(answer(400, r#"{"reason":"SomethingNew"}"#), Answer::Final(Outcome::rejected("SomethingNew")));
        assert_eq!(answer(400, "not json"), Answer::Final(Outcome::rejected("400")));
    }

    #[test]
    fn retry_after_is_carried_on_429() {
        let answer =
            map_answer(StatusCode::TOO_MANY_REQUESTS, br#"{"reason":"TooManyRequests"}"#, Some(Duration::from_secs(7)));
        assert_eq!(answer, Answer::Final(Outcome::retry("TooManyRequests", Some(Duration::from_secs(7)))));
    }
}
