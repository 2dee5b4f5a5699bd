//! IMKIT chat messages, as the PUSH_GENERIC (v2) and PUSH (v1) callbacks
//! carry them, and the payloads IMKIT's own pipeline sends for them
//! (imkit-reference §1): `im_loc_<messageType>` keys, positional `loc-args`
//! [sender nickname, message], and server-rendered fallback text.
//!
//! Pure functions of (message, recipient, style): the payload of every
//! attempt is built again from what was stored, so nothing here is stored.
//! Every payload fits its provider's limit: the FCM `payload` data field (or
//! the VoIP `payload`) goes first, then the visible text is cut on a
//! character boundary with an ellipsis.

use crate::push::ApnsPush;
use crate::webpush::{
    CHAT_TTL_SECONDS, MAX_WEBPUSH_BYTES, Urgency, WebPushMessage, declarative, navigate_to, web_push_topic,
};
use crate::{ApnsPriority, AppId, ClientId, Locale, MessageId, ParseError, RoomId, Variant, fill_template};
use serde_json::{Map, Value, json};

/// Largest APNs payload, bytes.
pub const MAX_APNS_BYTES: usize = 4096;
/// Largest APNs VoIP payload, bytes.
pub const MAX_VOIP_BYTES: usize = 5120;
/// Largest FCM message we send (notification + data), bytes.
pub const MAX_FCM_BYTES: usize = 4096;
/// Most recipients one v2 callback may list.
pub const MAX_RECIPIENTS: usize = 10_000;
/// Longest `messageType`, bytes: it becomes part of the `loc-key`.
const MAX_MESSAGE_TYPE_BYTES: usize = 64;
/// IMKIT's time to live for chat pushes on FCM.
const CHAT_TTL: &str = "3600s";
/// The `type` (custom/data classification) of a chat push.
pub const CHAT_PUSH_TYPE: &str = "chat";
/// The `type` of a silent badge update.
pub const BADGE_PUSH_TYPE: &str = "badge";
/// The `type` of the push that tells a client's other devices a room was read.
pub const CLEAR_PUSH_TYPE: &str = "clear";
/// Longest `apns-collapse-id` APNs takes, bytes.
const MAX_APNS_COLLAPSE_ID_BYTES: usize = 64;
/// What the visible text is cut with.
const ELLIPSIS: char = '…';

/// Fields the callbacks add around the message; they are not part of it and
/// are left out of the `payload` data.
const CALLBACK_FIELDS: [&str; 5] = ["pushToClients", "toClient", "badge", "alert", "mentions"];

/// One chat message, as a callback carries it.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatMessage {
    /// `_id` (or `id`): the callback's idempotency key.
    pub id: MessageId,
    /// `appID`.
    pub app_id: AppId,
    /// `messageType`, `text` when absent.
    pub message_type: String,
    /// `message`, the text content.
    pub text: Option<String>,
    /// `room`.
    pub room: Option<RoomId>,
    /// `roomName` (v2 only).
    pub room_name: Option<String>,
    /// `sender.nickname`.
    pub sender: Option<String>,
    /// The message as received, without the callback's own fields: the FCM
    /// `payload` data, unknown fields included.
    fields: Map<String, Value>,
}

/// A v2 (PUSH_GENERIC) callback: one message, many recipients.
#[derive(Debug, Clone, PartialEq)]
pub struct GenericCallback {
    /// The message.
    pub message: ChatMessage,
    /// `pushToClients`.
    pub recipients: Vec<ClientId>,
    /// `mentions` (pushgate's extension: IMKIT's message names no mentioned
    /// members): the clients the message mentions.
    pub mentions: Vec<ClientId>,
}

/// A v1 (PUSH) callback: one message for one recipient, badge and alert
/// computed by IMKIT.
#[derive(Debug, Clone, PartialEq)]
pub struct LegacyCallback {
    /// The message.
    pub message: ChatMessage,
    /// `toClient`.
    pub to_client: ClientId,
    /// `badge`, used as given.
    pub badge: Option<u32>,
    /// `alert`, used as given.
    pub alert: Option<String>,
}

fn optional_string(body: &Map<String, Value>, field: &str) -> Result<Option<String>, ParseError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(_) => Err(ParseError::new(format!("{field} must be a string"))),
    }
}

fn field_error(field: &str, error: ParseError) -> ParseError {
    ParseError::new(format!("{field}: {error}"))
}

impl ChatMessage {
    /// Reads the fields pushgate uses, strictly; every other field is kept
    /// as it is. The callback's own fields (`pushToClients`, `toClient`,
    /// `badge`, `alert`) are not part of the message.
    pub fn parse(body: &Map<String, Value>) -> Result<Self, ParseError> {
        let id_field = if body.contains_key("_id") { "_id" } else { "id" };
        let id = optional_string(body, id_field)?.ok_or_else(|| ParseError::new("_id is required"))?;
        let id = MessageId::parse(&id).map_err(|e| field_error(id_field, e))?;
        let app_id = optional_string(body, "appID")?.ok_or_else(|| ParseError::new("appID is required"))?;
        let app_id = AppId::parse(&app_id).map_err(|e| field_error("appID", e))?;
        let message_type = optional_string(body, "messageType")?.unwrap_or_else(|| "text".to_owned());
        if message_type.is_empty()
            || message_type.len() > MAX_MESSAGE_TYPE_BYTES
            || !message_type.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        {
            return Err(ParseError::new(format!(
                "messageType must be 1 to {MAX_MESSAGE_TYPE_BYTES} letters, digits, '_', '-' or '.'"
            )));
        }
        let room = optional_string(body, "room")?.map(|room| RoomId::parse(&room)).transpose()?;
        let sender = match body.get("sender") {
            None | Some(Value::Null | Value::String(_)) => None,
            Some(Value::Object(sender)) => {
                optional_string(sender, "nickname").map_err(|_| ParseError::new("sender.nickname must be a string"))?
            }
            Some(_) => return Err(ParseError::new("sender must be an object")),
        };
        let mut fields = body.clone();
        for field in CALLBACK_FIELDS {
            fields.remove(field);
        }
        Ok(Self {
            id,
            app_id,
            message_type,
            text: optional_string(body, "message")?,
            room,
            room_name: optional_string(body, "roomName")?.filter(|name| !name.is_empty()),
            sender: sender.filter(|nickname| !nickname.is_empty()),
            fields,
        })
    }

    /// The message as received, without the callback's fields: what is
    /// stored ([`crate::PushRequest`]), and parsed again for the attempts.
    pub(crate) fn fields(&self) -> &Map<String, Value> {
        &self.fields
    }

    fn is_encrypted(&self) -> bool {
        self.message_type == "encrypted"
    }

    /// The `payload` data: the message, without its content when encrypted.
    fn payload_fields(&self) -> Map<String, Value> {
        let mut fields = self.fields.clone();
        if self.is_encrypted() {
            fields.remove("message");
        }
        fields
    }

    fn loc_key(&self) -> String {
        format!("im_loc_{}", self.message_type)
    }

    /// The longest free text (nickname, message, room name, given alert, a
    /// summary's first sender), in characters.
    fn longest_text(&self, alert: Option<&str>, summary: Option<&Summary>) -> usize {
        let sender = summary.and_then(|summary| summary.senders.first()).map(String::as_str);
        [self.sender.as_deref(), self.text.as_deref(), self.room_name.as_deref(), alert, sender]
            .into_iter()
            .flatten()
            .map(|text| text.chars().count())
            .max()
            .unwrap_or_default()
    }

    /// Title, body and localization for a recipient, each free text cut to
    /// at most `cut` characters. A summary (coalescing) replaces the body.
    fn copy(&self, language: Language, recipient: &Recipient<'_>, cut: usize) -> Copy {
        let variant = recipient.variant;
        let nickname = clip(self.sender.as_deref().unwrap_or(language.someone()), cut);
        let text = clip(self.text.as_deref().unwrap_or_default(), cut);
        let room_name = self.room_name.as_deref().map(|room_name| clip(room_name, cut));
        // An encrypted message's content is never shown, not even to the app's strings or a template.
        let shown_text = if self.is_encrypted() { "" } else { text.as_str() };
        let fill =
            |template: &str| fill_template(template, &nickname, shown_text, room_name.as_deref().unwrap_or_default());
        let body = match (recipient.summary, variant.and_then(|variant| variant.body.as_deref())) {
            (Some(summary), _) => language.summary(summary, room_name.as_deref(), cut),
            (None, Some(template)) => fill(template),
            (None, None) => render(language.template(&self.message_type, !text.is_empty()), &nickname, &text),
        };
        let title = match (variant.and_then(|variant| variant.title.as_deref()), &room_name) {
            (Some(template), _) => fill(template),
            (None, Some(room_name)) => room_name.clone(),
            (None, None) => nickname.clone(),
        };
        let custom_body = recipient.summary.is_some() || variant.is_some_and(|variant| variant.body.is_some());
        let loc_args = if self.is_encrypted() { vec![nickname] } else { vec![nickname, text] };
        Copy { title, body, custom_body, loc_key: self.loc_key(), loc_args }
    }

    /// The APNs alert push for one recipient. `alert` (v1) replaces the
    /// rendered alert with the given text.
    pub fn to_apns(&self, style: &ChatStyle, recipient: &Recipient<'_>, alert: Option<&str>) -> ApnsPush {
        self.to_apns_within(style, recipient, alert, MAX_APNS_BYTES)
    }

    /// [`ChatMessage::to_apns`] in at most `limit` bytes (a private payload
    /// seals it, and the ciphertext must fit APNs' limit).
    pub(crate) fn to_apns_within(
        &self,
        style: &ChatStyle,
        recipient: &Recipient<'_>,
        alert: Option<&str>,
        limit: usize,
    ) -> ApnsPush {
        let language = style.language_for(recipient.locale);
        let build = |cut: usize, _with_payload: bool| {
            let mut aps = Map::new();
            match alert {
                Some(alert) => {
                    aps.insert("alert".into(), clip(alert, cut).into());
                }
                // An experiment's body is shown as it is: a loc-key would replace it on the device.
                None => {
                    let copy = self.copy(language, recipient, cut);
                    let alert = if copy.custom_body {
                        json!({ "title": copy.title, "body": copy.body })
                    } else {
                        json!({ "loc-key": copy.loc_key, "loc-args": copy.loc_args, "title": copy.title, "body": copy.body })
                    };
                    aps.insert("alert".into(), alert);
                }
            }
            self.insert_alert_options(&mut aps, style, recipient);
            json!({ "aps": aps })
        };
        let payload = fit(limit, self.longest_text(alert, recipient.summary), build).to_string().into_bytes();
        let collapse_id = self.room.as_ref().filter(|_| style.collapse_by_room).map(room_collapse_key);
        ApnsPush { silent: false, priority: None, payload, topic: None, collapse_id, expiration: None }
    }

    /// What every chat alert's `aps` carries beside its text: the badge, the
    /// sound (or, in quiet hours, a passive interruption level instead) and
    /// the room as `thread-id`.
    pub(crate) fn insert_alert_options(
        &self,
        aps: &mut Map<String, Value>,
        style: &ChatStyle,
        recipient: &Recipient<'_>,
    ) {
        if let Some(badge) = recipient.badge {
            aps.insert("badge".into(), badge.into());
        }
        if recipient.quiet {
            aps.insert("interruption-level".into(), "passive".into());
        } else if let Some(sound) = &style.sound {
            aps.insert("sound".into(), sound.clone().into());
        }
        if let Some(room) = &self.room {
            aps.insert("thread-id".into(), room.as_str().into());
        }
    }

    /// The PushKit (VoIP) push for one recipient: no `aps` content, the
    /// localization, text, badge and the message beside it for the app to
    /// report the call with.
    pub fn to_apns_voip(&self, style: &ChatStyle, recipient: &Recipient<'_>) -> ApnsPush {
        let language = style.language_for(recipient.locale);
        let build = |cut: usize, with_payload: bool| {
            let copy = self.copy(language, recipient, cut);
            let mut push = json!({
                "aps": {}, "type": CHAT_PUSH_TYPE, "loc-key": copy.loc_key, "loc-args": copy.loc_args,
                "title": copy.title, "body": copy.body,
            });
            if let Some(badge) = recipient.badge {
                push["badge"] = badge.into();
            }
            if with_payload {
                push["payload"] = Value::Object(self.payload_fields());
            }
            push
        };
        let payload = fit(MAX_VOIP_BYTES, self.longest_text(None, None), build).to_string().into_bytes();
        ApnsPush { silent: false, priority: None, payload, topic: None, collapse_id: None, expiration: None }
    }

    /// The FCM v1 `message` (without its token) for one recipient. `alert`
    /// (v1) replaces the rendered body with the given text.
    pub fn to_fcm(&self, style: &ChatStyle, recipient: &Recipient<'_>, alert: Option<&str>) -> Value {
        self.to_fcm_within(style, recipient, alert, MAX_FCM_BYTES)
    }

    /// [`ChatMessage::to_fcm`] in at most `limit` bytes (see `to_apns_within`).
    pub(crate) fn to_fcm_within(
        &self,
        style: &ChatStyle,
        recipient: &Recipient<'_>,
        alert: Option<&str>,
        limit: usize,
    ) -> Value {
        let language = style.language_for(recipient.locale);
        let build = |cut: usize, with_payload: bool| {
            let copy = self.copy(language, recipient, cut);
            let body = alert.map_or_else(|| copy.body.clone(), |alert| clip(alert, cut));
            let mut android_notification = Map::new();
            if alert.is_none() && !copy.custom_body {
                android_notification.insert("body_loc_key".into(), copy.loc_key.clone().into());
                android_notification.insert("body_loc_args".into(), copy.loc_args.clone().into());
            }
            if let Some(badge) = recipient.badge {
                android_notification.insert("notification_count".into(), badge.into());
            }
            android_notification.insert("click_action".into(), style.click_action.clone().into());
            if let Some(icon) = &style.icon {
                android_notification.insert("icon".into(), icon.clone().into());
            }
            // With coalescing the room is the notification's tag: a room's
            // notifications replace each other, and the app cancels them by
            // it on a clear push. Without, the message is IMKIT's, as it was.
            if let Some(room) = self.room.as_ref().filter(|_| style.collapse_by_room) {
                android_notification.insert("tag".into(), room.as_str().into());
            }
            if recipient.quiet {
                android_notification.insert("notification_priority".into(), "PRIORITY_LOW".into());
            } else if let Some(sound) = &style.sound {
                android_notification.insert("sound".into(), sound.clone().into());
            }
            let mut data = Map::new();
            data.insert("type".into(), CHAT_PUSH_TYPE.into());
            if alert.is_none() {
                data.insert("loc-key".into(), copy.loc_key.clone().into());
                data.insert("loc-args".into(), json!(copy.loc_args).to_string().into());
            }
            if let Some(badge) = recipient.badge {
                data.insert("badge".into(), badge.to_string().into());
            }
            if with_payload {
                data.insert("payload".into(), Value::Object(self.payload_fields()).to_string().into());
            }
            // No `collapse_key`: FCM keeps at most four collapsible messages
            // per offline device and drops the rest without saying which, so
            // a chat alert stays non-collapsible (the tag replaces on the device).
            json!({
                "notification": { "title": copy.title, "body": body },
                "android": { "ttl": CHAT_TTL, "priority": "high", "notification": android_notification },
                "data": data,
            })
        };
        fit(limit, self.longest_text(alert, recipient.summary), build)
    }
}

impl ChatMessage {
    /// The Web Push for one recipient: Declarative Web Push when the app
    /// set a page to open, IMKIT's fields beside it; the room is the `tag`
    /// (one notification per room) and the `Topic` (a room's pushes replace
    /// each other while queued). `alert` (v1) replaces the rendered body.
    pub fn to_webpush(&self, style: &ChatStyle, recipient: &Recipient<'_>, alert: Option<&str>) -> WebPushMessage {
        let language = style.language_for(recipient.locale);
        let navigate = style.web_navigate.as_deref().map(|template| navigate_to(template, self.room.as_ref()));
        let build = |cut: usize, with_payload: bool| {
            let copy = self.copy(language, recipient, cut);
            let body = alert.map_or_else(|| copy.body.clone(), |alert| clip(alert, cut));
            let mut notification = Map::new();
            notification.insert("title".into(), copy.title.clone().into());
            notification.insert("body".into(), body.into());
            if let Some(room) = &self.room {
                notification.insert("tag".into(), room.as_str().into());
            }
            if let Some(locale) = recipient.locale {
                notification.insert("lang".into(), locale.as_str().into());
            }
            if recipient.quiet {
                notification.insert("silent".into(), true.into());
            }
            let mut push = declarative(Some(notification), navigate.clone(), recipient.badge);
            push.insert("type".into(), CHAT_PUSH_TYPE.into());
            if alert.is_none() && !copy.custom_body {
                push.insert("loc-key".into(), copy.loc_key.into());
                push.insert("loc-args".into(), copy.loc_args.into());
            }
            push.insert("messageType".into(), self.message_type.clone().into());
            if let Some(room) = &self.room {
                push.insert("room".into(), room.as_str().into());
            }
            if with_payload {
                push.insert("payload".into(), Value::Object(self.payload_fields()));
            }
            Value::Object(push)
        };
        WebPushMessage {
            payload: fit(MAX_WEBPUSH_BYTES, self.longest_text(alert, recipient.summary), build)
                .to_string()
                .into_bytes(),
            ttl_seconds: CHAT_TTL_SECONDS,
            urgency: if recipient.quiet { Urgency::Normal } else { Urgency::High },
            topic: self.room.as_ref().map(|room| web_push_topic(room.as_str())),
        }
    }
}

/// The silent badge update APNs gets for a routed-silent message (muted
/// room, online client, mentions only): the badge only, nothing shown, priority 5.
pub fn badge_update_apns(badge: u32) -> ApnsPush {
    let payload = json!({ "aps": { "badge": badge }, "type": BADGE_PUSH_TYPE }).to_string().into_bytes();
    ApnsPush {
        silent: false,
        priority: Some(ApnsPriority::PowerAware),
        payload,
        topic: None,
        collapse_id: None,
        expiration: None,
    }
}

/// What a client's other devices get when it reads a room: the new badge,
/// the room, and `type` `clear`, for the app to remove that room's delivered
/// notifications. APNs: an `alert` push at priority 5 carrying only the badge
/// (applied by the system even when the app does not run) and
/// `content-available` (the app is woken, as the system allows, to remove the
/// notifications whose `thread-id` is the room): one push, never throttled
/// away as a background push can be, whatever the app does.
pub fn clear_apns(room: &RoomId, badge: u32) -> ApnsPush {
    let payload =
        json!({ "aps": { "badge": badge, "content-available": 1 }, "type": CLEAR_PUSH_TYPE, "room": room.as_str() });
    let payload = payload.to_string().into_bytes();
    ApnsPush {
        silent: false,
        priority: Some(ApnsPriority::PowerAware),
        payload,
        topic: None,
        collapse_id: None,
        expiration: None,
    }
}

/// The FCM message of [`clear_apns`]: data only, normal priority (nothing is
/// shown, so FCM's rule for high priority is not met), the room's clear
/// replacing an older one while it waits.
pub fn clear_fcm(room: &RoomId, badge: u32) -> Value {
    json!({
        "android": { "ttl": CHAT_TTL, "priority": "normal", "collapse_key": format!("clear-{}", room_collapse_key(room)) },
        "data": { "type": CLEAR_PUSH_TYPE, "room": room.as_str(), "badge": badge.to_string() },
    })
}

/// The Web Push of [`clear_apns`]: a service worker closes the notifications
/// whose `tag` is the room and sets the app badge.
pub fn clear_webpush(room: &RoomId, badge: u32) -> WebPushMessage {
    let payload = json!({ "app_badge": badge, "type": CLEAR_PUSH_TYPE, "room": room.as_str() });
    WebPushMessage {
        payload: payload.to_string().into_bytes(),
        ttl_seconds: CHAT_TTL_SECONDS,
        urgency: Urgency::Normal,
        topic: Some(web_push_topic(&format!("clear-{}", room.as_str()))),
    }
}

/// The silent (data-only) badge update FCM gets for a routed-silent message.
pub fn badge_update_fcm(badge: u32) -> Value {
    json!({
        // A newer update replaces one still waiting for an offline device.
        "android": { "ttl": CHAT_TTL, "priority": "normal", "collapse_key": BADGE_PUSH_TYPE },
        "data": { "type": BADGE_PUSH_TYPE, "badge": badge.to_string() },
    })
}

impl GenericCallback {
    /// Parses a v2 callback body: the message and `pushToClients`.
    pub fn parse(body: &Map<String, Value>) -> Result<Self, ParseError> {
        let message = ChatMessage::parse(body)?;
        let Some(recipients) = body.get("pushToClients") else {
            return Err(ParseError::new("pushToClients is required"));
        };
        let Value::Array(recipients) = recipients else {
            return Err(ParseError::new("pushToClients must be an array of client ids"));
        };
        if recipients.len() > MAX_RECIPIENTS {
            return Err(ParseError::new(format!("pushToClients: at most {MAX_RECIPIENTS} clients per message")));
        }
        let recipients = client_ids("pushToClients", recipients)?;
        let mentions = match body.get("mentions") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(mentions)) if mentions.len() <= MAX_RECIPIENTS => client_ids("mentions", mentions)?,
            Some(Value::Array(_)) => {
                return Err(ParseError::new(format!("mentions: at most {MAX_RECIPIENTS} clients per message")));
            }
            Some(_) => return Err(ParseError::new("mentions must be an array of client ids")),
        };
        Ok(Self { message, recipients, mentions })
    }
}

/// Client ids from the array of `field`, each named by its index when refused.
fn client_ids(field: &str, values: &[Value]) -> Result<Vec<ClientId>, ParseError> {
    values
        .iter()
        .enumerate()
        .map(|(index, client)| {
            let field = format!("{field}[{index}]");
            let client = client.as_str().ok_or_else(|| ParseError::new(format!("{field} must be a string")))?;
            ClientId::parse(client).map_err(|e| field_error(&field, e))
        })
        .collect()
}

impl LegacyCallback {
    /// Parses a v1 callback body: the message, `toClient`, `badge` and `alert`.
    pub fn parse(body: &Map<String, Value>) -> Result<Self, ParseError> {
        let message = ChatMessage::parse(body)?;
        let to_client = optional_string(body, "toClient")?.ok_or_else(|| ParseError::new("toClient is required"))?;
        let to_client = ClientId::parse(&to_client).map_err(|e| field_error("toClient", e))?;
        let badge = match body.get("badge") {
            None | Some(Value::Null) => None,
            Some(badge) => Some(
                badge
                    .as_u64()
                    .and_then(|badge| u32::try_from(badge).ok())
                    .ok_or_else(|| ParseError::new("badge must be a non-negative integer"))?,
            ),
        };
        Ok(Self { message, to_client, badge, alert: optional_string(body, "alert")? })
    }
}

/// Per-app settings of chat payloads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatStyle {
    /// The language when the device gave none we have text for.
    pub default_locale: Option<Locale>,
    /// `aps.sound` and `android.notification.sound`; `None` for no sound.
    pub sound: Option<String>,
    /// `android.notification.icon`.
    pub icon: Option<String>,
    /// `android.notification.click_action`.
    pub click_action: String,
    /// The page a Web Push notification opens (`{room}` is replaced by the
    /// room id); without it, Web Push payloads are not declarative and a
    /// service worker shows them.
    pub web_navigate: Option<String>,
    /// A room's alert replaces the one before it on the device and while it
    /// waits (the app coalesces busy rooms): the room is the APNs
    /// `apns-collapse-id` and the FCM `android.notification.tag` (it is
    /// always the APNs `thread-id`, the Web Push `tag` and `Topic`).
    pub collapse_by_room: bool,
    /// What APNs and FCM may read of a chat alert (`[apps.privacy]`).
    pub privacy: Privacy,
}

impl Default for ChatStyle {
    fn default() -> Self {
        Self {
            default_locale: None,
            sound: Some("default".into()),
            icon: None,
            click_action: "push_chatroom".into(),
            web_navigate: None,
            collapse_by_room: false,
            privacy: Privacy::default(),
        }
    }
}

impl ChatStyle {
    fn language_for(&self, locale: Option<&Locale>) -> Language {
        locale
            .and_then(Language::of)
            .or_else(|| self.default_locale.as_ref().and_then(Language::of))
            .unwrap_or(Language::En)
    }
}

/// Whether pushgate has fallback text in this locale's language.
pub fn has_text_for(locale: &Locale) -> bool {
    Language::of(locale).is_some()
}

/// What differs between recipients of one message.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Recipient<'a> {
    /// Their badge (total unread).
    pub badge: Option<u32>,
    /// Their device's locale.
    pub locale: Option<&'a Locale>,
    /// Quiet hours: no sound, `interruption-level` passive.
    pub quiet: bool,
    /// Their experiment variant, whose templates replace the title and body.
    pub variant: Option<&'a Variant>,
    /// `Some`: this alert stands for a busy room's messages held while the
    /// room alerted them (coalescing): its body counts them.
    pub summary: Option<&'a Summary>,
}

/// What the alert that ends a busy room's window says: how many messages the
/// recipient has not read in the room, and who sent the messages of the
/// window, the latest first (each once).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Summary {
    /// The room's unread messages for the recipient.
    pub count: u32,
    /// The senders' nicknames, the latest first.
    pub senders: Vec<String>,
}

/// The key that makes a room's notifications replace each other on a device:
/// the room id, or a stable digest of it when it is longer than an
/// `apns-collapse-id` may be.
pub fn room_collapse_key(room: &RoomId) -> String {
    if room.as_str().len() <= MAX_APNS_COLLAPSE_ID_BYTES {
        room.as_str().to_owned()
    } else {
        web_push_topic(room.as_str())
    }
}

struct Copy {
    title: String,
    body: String,
    /// The body comes from an experiment's template, not from the loc-key's text.
    custom_body: bool,
    loc_key: String,
    loc_args: Vec<String>,
}

/// The languages pushgate renders fallback text in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Language {
    En,
    ZhTw,
    Ja,
}

impl Language {
    fn of(locale: &Locale) -> Option<Self> {
        let mut subtags = locale.as_str().split('-');
        match subtags.next()? {
            "en" => Some(Self::En),
            "ja" => Some(Self::Ja),
            // Traditional Chinese: Taiwan, Hong Kong, Macau or the Hant script.
            "zh" if subtags.any(|subtag| matches!(subtag, "Hant" | "TW" | "HK" | "MO")) => Some(Self::ZhTw),
            _ => None,
        }
    }

    fn someone(self) -> &'static str {
        match self {
            Self::En => "Someone",
            Self::ZhTw => "有人",
            Self::Ja => "誰か",
        }
    }

    /// The body of a busy room's alert: who sent its messages (the latest
    /// sender, and how many others), how many are unread, and where.
    fn summary(self, summary: &Summary, room: Option<&str>, cut: usize) -> String {
        let sender = clip(summary.senders.first().map_or(self.someone(), String::as_str), cut);
        let others = summary.senders.len().saturating_sub(1);
        let count = summary.count;
        match (self, others, room) {
            (Self::En, 0, Some(room)) => format!("{sender}: {count} new messages in {room}"),
            (Self::En, 0, None) => format!("{sender}: {count} new messages"),
            (Self::En, 1, Some(room)) => format!("{sender} and 1 other: {count} new messages in {room}"),
            (Self::En, 1, None) => format!("{sender} and 1 other: {count} new messages"),
            (Self::En, _, Some(room)) => format!("{sender} and {others} others: {count} new messages in {room}"),
            (Self::En, _, None) => format!("{sender} and {others} others: {count} new messages"),
            (Self::ZhTw, 0, Some(room)) => format!("{sender}:{room} 有 {count} 則新訊息"),
            (Self::ZhTw, 0, None) => format!("{sender}:{count} 則新訊息"),
            (Self::ZhTw, _, Some(room)) => format!("{sender} 和其他 {others} 人:{room} 有 {count} 則新訊息"),
            (Self::ZhTw, _, None) => format!("{sender} 和其他 {others} 人:{count} 則新訊息"),
            (Self::Ja, 0, Some(room)) => format!("{sender}: {room}に{count}件の新着メッセージ"),
            (Self::Ja, 0, None) => format!("{sender}: {count}件の新着メッセージ"),
            (Self::Ja, _, Some(room)) => format!("{sender}ほか{others}人: {room}に{count}件の新着メッセージ"),
            (Self::Ja, _, None) => format!("{sender}ほか{others}人: {count}件の新着メッセージ"),
        }
    }

    /// `$1` is the sender's nickname, `$2` the message.
    fn template(self, message_type: &str, has_text: bool) -> &'static str {
        match (self, message_type) {
            (Self::En, "text") => "$1: $2",
            (Self::En, "image") => "$1 sent a photo",
            (Self::En, "video") => "$1 sent a video",
            (Self::En, "audio") => "$1 sent a voice message",
            (Self::En, "sticker") => "$1 sent a sticker",
            (Self::En, "location") => "$1 shared a location",
            (Self::En, "file") => "$1 sent a file",
            (Self::En, "joinRoom") => "$1 joined the room",
            (Self::En, "leaveRoom") => "$1 left the room",
            (Self::En, "addMember") => "$1 added $2",
            (Self::En, "addMembers") => "$1 added several members",
            (Self::En, "deleteMember") => "$1 removed $2 from the room",
            (Self::En, "encrypted") => "You received an encrypted message",
            (Self::En, _) if has_text => "$1: $2",
            (Self::En, _) => "$1 sent a message",
            (Self::ZhTw, "text") => "$1: $2",
            (Self::ZhTw, "image") => "$1 傳送了一張圖片",
            (Self::ZhTw, "video") => "$1 傳送了一段影片",
            (Self::ZhTw, "audio") => "$1 傳送了一段語音",
            (Self::ZhTw, "sticker") => "$1 傳送了一張貼圖",
            (Self::ZhTw, "location") => "$1 分享了位置",
            (Self::ZhTw, "file") => "$1 傳送了一個檔案",
            (Self::ZhTw, "joinRoom") => "$1 加入了聊天室",
            (Self::ZhTw, "leaveRoom") => "$1 離開了聊天室",
            (Self::ZhTw, "addMember") => "$1 邀請了 $2",
            (Self::ZhTw, "addMembers") => "$1 邀請了多人",
            (Self::ZhTw, "deleteMember") => "$1 將 $2 移出聊天室",
            (Self::ZhTw, "encrypted") => "您收到一則加密訊息",
            (Self::ZhTw, _) if has_text => "$1: $2",
            (Self::ZhTw, _) => "$1 傳送了一則訊息",
            (Self::Ja, "text") => "$1: $2",
            (Self::Ja, "image") => "$1が画像を送信しました",
            (Self::Ja, "video") => "$1が動画を送信しました",
            (Self::Ja, "audio") => "$1が音声メッセージを送信しました",
            (Self::Ja, "sticker") => "$1がスタンプを送信しました",
            (Self::Ja, "location") => "$1が位置情報を共有しました",
            (Self::Ja, "file") => "$1がファイルを送信しました",
            (Self::Ja, "joinRoom") => "$1がルームに参加しました",
            (Self::Ja, "leaveRoom") => "$1がルームから退出しました",
            (Self::Ja, "addMember") => "$1が$2を招待しました",
            (Self::Ja, "addMembers") => "$1が複数のメンバーを招待しました",
            (Self::Ja, "deleteMember") => "$1が$2をルームから削除しました",
            (Self::Ja, "encrypted") => "暗号化されたメッセージを受信しました",
            (Self::Ja, _) if has_text => "$1: $2",
            (Self::Ja, _) => "$1がメッセージを送信しました",
        }
    }
}

/// Fills `$1` and `$2` in one pass, so a nickname containing `$2` stays as it is.
fn render(template: &str, first: &str, second: &str) -> String {
    let mut out = String::with_capacity(template.len() + first.len() + second.len());
    let mut rest = template;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        match after.as_bytes().first() {
            Some(b'1') => out.push_str(first),
            Some(b'2') => out.push_str(second),
            _ => {
                out.push('$');
                rest = after;
                continue;
            }
        }
        rest = &after[1..];
    }
    out.push_str(rest);
    out
}

/// At most `cut` characters of `text`, the last of them an ellipsis when
/// something was cut.
fn clip(text: &str, cut: usize) -> String {
    if text.chars().count() <= cut {
        return text.to_owned();
    }
    let mut clipped: String = text.chars().take(cut.saturating_sub(1)).collect();
    clipped.push(ELLIPSIS);
    clipped
}

/// The largest payload `build(cut, with_payload)` makes within `limit`
/// bytes (serialized): whole with its payload data if it fits, else without it, else
/// with the free text cut to the most characters that fit.
fn fit(limit: usize, longest: usize, build: impl Fn(usize, bool) -> Value) -> Value {
    let fits = |payload: &Value| payload.to_string().len() <= limit;
    let whole = build(usize::MAX, true);
    if fits(&whole) {
        return whole;
    }
    let without_payload = build(usize::MAX, false);
    if fits(&without_payload) {
        return without_payload;
    }
    // The most characters per text that fit; 1 (an ellipsis alone) always
    // does, as everything else in a payload is bounded.
    let (mut low, mut high) = (1, longest);
    while low < high {
        let middle = low + (high - low).div_ceil(2);
        if fits(&build(middle, false)) { low = middle } else { high = middle - 1 }
    }
    build(low, false)
}

mod private;
#[cfg(test)]
mod tests;

pub use private::{PRIVATE_LOC_KEY, Privacy, PrivateForm, SEAL_OVERHEAD, SEALED_KEY};
