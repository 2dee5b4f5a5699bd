//! Private payloads (`[apps.privacy]`): what APNs and FCM carry of a chat
//! alert when its content must not be readable by them. Sealing itself (RFC
//! 8291 `aes128gcm`, random by nature) happens in the delivery; this builds
//! the clear push to seal, sized so that the sealed one fits the provider's
//! limit, and the push that carries the ciphertext, or only the message's id.

use super::{CHAT_PUSH_TYPE, CHAT_TTL, ChatMessage, ChatStyle, Language, Recipient, room_collapse_key};
use crate::{ApnsPush, MAX_APNS_BYTES, MAX_FCM_BYTES, PrivacyFallback, PrivacyMode};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value, json};

/// The `loc-key` of a private alert's neutral text (the app may localise it;
/// pushgate's own text is "New message" in en, zh-TW, ja).
pub const PRIVATE_LOC_KEY: &str = "im_loc_private";
/// The key that carries the sealed push (APNs payload, FCM `data`), base64url.
pub const SEALED_KEY: &str = "encrypted";
/// What `aes128gcm` adds to a plaintext sealed as one record: the header
/// (salt 16, record size 4, key id length 1, the sender's public key 65),
/// the tag (16) and the padding delimiter (1).
pub const SEAL_OVERHEAD: usize = 103;

/// An app's privacy setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Privacy {
    /// What chat alerts carry.
    pub mode: PrivacyMode,
    /// With `encrypt`, what a device without a key gets.
    pub fallback: PrivacyFallback,
}

impl Default for Privacy {
    fn default() -> Self {
        Self { mode: PrivacyMode::Off, fallback: PrivacyFallback::IdOnly }
    }
}

/// The form of one device's chat alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrivateForm {
    /// The message in clear.
    Clear,
    /// The clear push, sealed to the device's key.
    Sealed,
    /// A neutral alert with the message's id and room.
    IdOnly,
}

impl Privacy {
    /// The form for a device with (`has_key`) or without a `pushKey`.
    pub fn form(self, has_key: bool) -> PrivateForm {
        match (self.mode, has_key, self.fallback) {
            (PrivacyMode::Off, ..) | (PrivacyMode::Encrypt, false, PrivacyFallback::Clear) => PrivateForm::Clear,
            (PrivacyMode::Encrypt, true, _) => PrivateForm::Sealed,
            (PrivacyMode::IdOnly, ..) | (PrivacyMode::Encrypt, false, PrivacyFallback::IdOnly) => PrivateForm::IdOnly,
        }
    }
}

impl Language {
    fn private_text(self) -> &'static str {
        match self {
            Self::En => "New message",
            Self::ZhTw => "新訊息",
            Self::Ja => "新着メッセージ",
        }
    }
}

/// The longest plaintext whose sealed form, base64url (no padding), fits in
/// `available` bytes.
fn sealable(available: usize) -> usize {
    (available * 3 / 4).saturating_sub(SEAL_OVERHEAD)
}

impl ChatMessage {
    /// The clear APNs payload to seal for `recipient`: what it would get in
    /// clear, cut (as [`ChatMessage::to_apns`] cuts) to what fits once sealed.
    pub fn apns_to_seal(&self, style: &ChatStyle, recipient: &Recipient<'_>, alert: Option<&str>) -> Vec<u8> {
        let wrapper = self.to_apns_private(style, recipient, Some(&[])).payload.len();
        let budget = sealable(MAX_APNS_BYTES.saturating_sub(wrapper));
        self.to_apns_within(style, recipient, alert, budget).payload
    }

    /// A private APNs alert: a neutral text (`loc-key` `im_loc_private`),
    /// `mutable-content` for the app's Notification Service Extension, the
    /// badge, sound and `thread-id` as usual, and either the sealed clear
    /// payload (`encrypted`, base64url) or, without one, the message's id
    /// and room (`id_only`).
    pub fn to_apns_private(&self, style: &ChatStyle, recipient: &Recipient<'_>, sealed: Option<&[u8]>) -> ApnsPush {
        let language = style.language_for(recipient.locale);
        let mut aps = Map::new();
        aps.insert("alert".into(), json!({ "loc-key": PRIVATE_LOC_KEY, "body": language.private_text() }));
        aps.insert("mutable-content".into(), 1.into());
        self.insert_alert_options(&mut aps, style, recipient);
        let mut payload = json!({ "aps": aps, "type": CHAT_PUSH_TYPE });
        self.private_fields(&mut payload, sealed);
        let collapse_id = self.room.as_ref().filter(|_| style.collapse_by_room).map(room_collapse_key);
        let payload = payload.to_string().into_bytes();
        ApnsPush { silent: false, priority: None, payload, topic: None, collapse_id, expiration: None }
    }

    /// The clear FCM message to seal (as [`ChatMessage::apns_to_seal`]).
    pub fn fcm_to_seal(&self, style: &ChatStyle, recipient: &Recipient<'_>, alert: Option<&str>) -> Vec<u8> {
        let wrapper = self.to_fcm_private(recipient, Some(&[])).to_string().len();
        let budget = sealable(MAX_FCM_BYTES.saturating_sub(wrapper));
        self.to_fcm_within(style, recipient, alert, budget).to_string().into_bytes()
    }

    /// A private FCM message: data only (nothing readable in a
    /// `notification`), high priority so the app can show its own
    /// notification: `type`, the room (for grouping), and either the sealed
    /// clear message (`encrypted`) or the message's id and the badge.
    pub fn to_fcm_private(&self, recipient: &Recipient<'_>, sealed: Option<&[u8]>) -> Value {
        let mut data = json!({ "type": CHAT_PUSH_TYPE });
        self.private_fields(&mut data, sealed);
        if let (None, Some(badge)) = (sealed, recipient.badge) {
            data["badge"] = badge.to_string().into();
        }
        json!({ "android": { "ttl": CHAT_TTL, "priority": "high" }, "data": data })
    }

    /// The sealed push, or the message's id and room.
    fn private_fields(&self, object: &mut Value, sealed: Option<&[u8]>) {
        if let Some(room) = &self.room {
            object["room"] = room.as_str().into();
        }
        match sealed {
            Some(ciphertext) => object[SEALED_KEY] = URL_SAFE_NO_PAD.encode(ciphertext).into(),
            None => object["messageId"] = self.id.as_str().into(),
        }
    }
}
