//! What a Web Push subscription (a browser, a UnifiedPush distributor) gets:
//! a JSON payload to encrypt (RFC 8291) and the RFC 8030 headers that go
//! with it.
//!
//! The payload is a Declarative Web Push message (`web_push: 8030`, a
//! `notification` the browser shows by itself, `app_badge`) when the app
//! configured the page a notification opens (`navigate`, which that format
//! requires); it always carries IMKIT's fields beside it (`type`, `loc-key`,
//! `loc-args`, `messageType`, `room`, the message as `payload`) for a service
//! worker that shows notifications itself.

use crate::RoomId;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

/// Largest plaintext of one push: with one `aes128gcm` record, 86 bytes of
/// header and 17 of padding delimiter and tag, the encrypted message stays
/// within the 4,096 bytes every push service accepts.
pub const MAX_WEBPUSH_BYTES: usize = 3993;
/// The Declarative Web Push magic member's value.
pub const DECLARATIVE_WEB_PUSH: u16 = 8030;
/// The longest `TTL` sent: push services cap it themselves (FCM at 28 days,
/// Mozilla at 60), so a longer expiry gets the shortest cap.
pub const MAX_WEBPUSH_TTL_SECONDS: u64 = 28 * 24 * 3600;
/// Longest `Topic`, in base64url characters (RFC 8030 §5.4).
const MAX_TOPIC_CHARS: usize = 32;
/// A chat push's (and a badge update's) time to live, as on FCM.
pub(crate) const CHAT_TTL_SECONDS: u64 = 3600;

/// RFC 8030 `Urgency`: how soon the push service should deliver, weighed
/// against the device's battery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Urgency {
    /// Only on power and Wi-Fi.
    VeryLow,
    /// On power or Wi-Fi.
    Low,
    /// When the device is not in a low-battery state.
    Normal,
    /// At once, even on low battery: chat alerts.
    High,
}

impl Urgency {
    /// The header value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::VeryLow => "very-low",
            Self::Low => "low",
            Self::Normal => "normal",
            Self::High => "high",
        }
    }
}

/// One Web Push for one subscription, before encryption.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebPushMessage {
    /// The JSON plaintext, at most [`MAX_WEBPUSH_BYTES`] for pushes pushgate fits.
    pub payload: Vec<u8>,
    /// `TTL`, seconds: how long the push service keeps it for an offline device.
    pub ttl_seconds: u64,
    /// `Urgency`.
    pub urgency: Urgency,
    /// `Topic`: a newer push with the same topic replaces one still queued.
    pub topic: Option<String>,
}

/// The `Topic` for `key` (a room, a collapse key): the key itself when it
/// is already at most 32 base64url characters, else the first 32 characters
/// of its SHA-256 digest in base64url (the same key always gives the same topic).
pub fn web_push_topic(key: &str) -> String {
    let usable = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    if !key.is_empty() && key.len() <= MAX_TOPIC_CHARS && key.chars().all(usable) {
        return key.to_owned();
    }
    let mut topic = URL_SAFE_NO_PAD.encode(Sha256::digest(key.as_bytes()));
    topic.truncate(MAX_TOPIC_CHARS);
    topic
}

/// The silent badge update a subscription gets after a read mark (or for a
/// chat message routed silent): `app_badge` alone, low urgency, one topic so
/// a newer badge replaces an older one still queued.
pub fn badge_update_webpush(badge: u32) -> WebPushMessage {
    WebPushMessage {
        payload: json!({ "app_badge": badge }).to_string().into_bytes(),
        ttl_seconds: CHAT_TTL_SECONDS,
        urgency: Urgency::Low,
        topic: Some(crate::BADGE_PUSH_TYPE.to_owned()),
    }
}

/// The page a notification opens: the app's `navigate` with `{room}`
/// replaced by the room id (percent-encoded). A push without a room (a
/// push2clients) opens the site's root instead of a room page with no room.
pub(crate) fn navigate_to(template: &str, room: Option<&RoomId>) -> String {
    let Some(room) = room else {
        if !template.contains("{room}") {
            return template.to_owned();
        }
        let path = template.find("://").and_then(|scheme| template[scheme + 3..].find('/').map(|at| scheme + 3 + at));
        return path.map_or_else(|| format!("{template}/"), |at| template[..=at].to_owned()).replace("{room}", "");
    };
    let mut encoded = String::new();
    for byte in room.as_str().bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    template.replace("{room}", &encoded)
}

/// The top level of a Web Push payload: the Declarative Web Push members
/// when there is a notification to show and a page for it to open.
pub(crate) fn declarative(
    notification: Option<serde_json::Map<String, Value>>,
    navigate: Option<String>,
    badge: Option<u32>,
) -> serde_json::Map<String, Value> {
    let mut push = serde_json::Map::new();
    if let Some(mut notification) = notification {
        if let Some(navigate) = navigate {
            push.insert("web_push".into(), DECLARATIVE_WEB_PUSH.into());
            notification.insert("navigate".into(), navigate.into());
        }
        push.insert("notification".into(), Value::Object(notification));
    }
    if let Some(badge) = badge {
        push.insert("app_badge".into(), badge.into());
    }
    push
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_topic_is_the_key_when_usable_else_a_stable_digest() {
        assert_eq!(web_push_topic("room_1-A"), "room_1-A");
        let long = web_push_topic("a room id that is far longer than thirty-two characters");
        assert_eq!(long.len(), 32);
        assert!(long.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
        assert_eq!(long, web_push_topic("a room id that is far longer than thirty-two characters"));
        assert_ne!(web_push_topic("room/1"), "room/1", "a slash is not base64url");
        assert_ne!(web_push_topic("room/1"), web_push_topic("room/2"));
    }

    #[test]
    fn a_badge_update_carries_the_badge_alone_at_low_urgency() {
        let update = badge_update_webpush(7);
        assert_eq!(serde_json::from_slice::<Value>(&update.payload).expect("json"), json!({ "app_badge": 7 }));
        assert_eq!(update.urgency, Urgency::Low);
        assert_eq!(update.topic.as_deref(), Some("badge"));
    }

    #[test]
    fn the_room_goes_into_the_page_a_notification_opens() {
        let room = RoomId::parse("room 1/ä").expect("a room id");
        assert_eq!(
            navigate_to("https://chat.example.com/rooms/{room}", Some(&room)),
            "https://chat.example.com/rooms/room%201%2F%C3%A4"
        );
        assert_eq!(navigate_to("https://chat.example.com/rooms/{room}", None), "https://chat.example.com/");
        assert_eq!(navigate_to("https://chat.example.com/#/room/{room}", None), "https://chat.example.com/");
        assert_eq!(navigate_to("https://chat.example.com/inbox", None), "https://chat.example.com/inbox");
        assert_eq!(navigate_to("https://chat.example.com/", Some(&room)), "https://chat.example.com/");
    }
}
