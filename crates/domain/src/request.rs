//! What an accepted push asks for, as it is kept with the push: the one
//! place its stored form is written and read. The store keeps the text and
//! the kind; the worker reads them back and builds every attempt's payloads
//! from them (payloads themselves are never stored).
//!
//! The stored forms are the ones pushgate has always written, so a database
//! from an earlier version reads back unchanged: a custom push is its
//! push2clients `payload`, a chat message is the message as received without
//! the callback's own fields (a v1 callback's `alert` beside it), a badge
//! update is `{}`.

use crate::{ChatMessage, CustomPush, LiveActivityPush, ParseError, PushKind, RoomId};
use serde_json::{Map, Value};

/// The field a v1 callback's `alert` is kept in, beside the message's fields
/// (a message field of that name is a callback field, never kept).
const LEGACY_ALERT_FIELD: &str = "alert";

/// What a push delivers, one variant per [`PushKind`].
#[derive(Debug, Clone, PartialEq)]
pub enum PushRequest {
    /// `POST /push/push2clients`.
    Custom(CustomPush),
    /// A PUSH_GENERIC (v2) callback's message; badges are computed here.
    Chat(ChatMessage),
    /// A legacy PUSH (v1) callback's message, with IMKIT's `alert` (used as
    /// given, like its badge).
    LegacyChat {
        /// The message.
        message: ChatMessage,
        /// `alert`, if IMKIT gave one.
        alert: Option<String>,
    },
    /// A silent badge update (what a read mark sent before clear pushes;
    /// the badge is the delivery's).
    BadgeUpdate,
    /// A read mark's push to the client's devices: clear the room's
    /// notifications (the badge is the delivery's).
    Clear {
        /// The room read.
        room: RoomId,
    },
    /// `POST /push/liveactivity`.
    LiveActivity(LiveActivityPush),
}

impl PushRequest {
    /// Its kind, stored beside it: how its stored form is read back.
    pub fn kind(&self) -> PushKind {
        match self {
            Self::Custom(_) => PushKind::Custom,
            Self::Chat(_) => PushKind::Chat,
            Self::LegacyChat { .. } => PushKind::ChatV1,
            Self::BadgeUpdate => PushKind::Badge,
            Self::Clear { .. } => PushKind::Clear,
            Self::LiveActivity(_) => PushKind::LiveActivity,
        }
    }

    /// The dedicated device type whose tokens alone get this push (a Live
    /// Activity's, a push2clients' of a dedicated kind); `None`: the
    /// notification devices.
    pub fn dedicated_device(&self) -> Option<crate::DeviceType> {
        match self {
            Self::LiveActivity(push) => Some(push.device_type()),
            Self::Custom(push) => push.dedicated_device(),
            _ => None,
        }
    }

    /// The stored form (JSON text).
    pub fn encode(&self) -> String {
        match self {
            Self::Custom(push) => serde_json::to_string(push).unwrap_or_else(|_| "{}".to_owned()),
            Self::Chat(message) => serde_json::to_string(message.fields()).unwrap_or_else(|_| "{}".to_owned()),
            Self::LegacyChat { message, alert } => {
                let mut fields = message.fields().clone();
                if let Some(alert) = alert {
                    fields.insert(LEGACY_ALERT_FIELD.to_owned(), alert.clone().into());
                }
                Value::Object(fields).to_string()
            }
            Self::BadgeUpdate => "{}".to_owned(),
            Self::Clear { room } => serde_json::json!({ "room": room.as_str() }).to_string(),
            Self::LiveActivity(push) => serde_json::to_string(push).unwrap_or_else(|_| "{}".to_owned()),
        }
    }

    /// Reads a stored form back; an error names what is wrong with it.
    pub fn decode(kind: PushKind, stored: &str) -> Result<Self, ParseError> {
        let unreadable = |error: serde_json::Error| ParseError::new(format!("a stored {kind} push: {error}"));
        match kind {
            PushKind::Custom => serde_json::from_str(stored).map(Self::Custom).map_err(unreadable),
            PushKind::Chat => {
                let fields: Map<String, Value> = serde_json::from_str(stored).map_err(unreadable)?;
                ChatMessage::parse(&fields).map(Self::Chat)
            }
            PushKind::ChatV1 => {
                let fields: Map<String, Value> = serde_json::from_str(stored).map_err(unreadable)?;
                let alert = fields.get(LEGACY_ALERT_FIELD).and_then(Value::as_str).map(str::to_owned);
                Ok(Self::LegacyChat { message: ChatMessage::parse(&fields)?, alert })
            }
            PushKind::Badge => Ok(Self::BadgeUpdate),
            PushKind::Clear => {
                let fields: Map<String, Value> = serde_json::from_str(stored).map_err(unreadable)?;
                let room = fields
                    .get("room")
                    .and_then(Value::as_str)
                    .ok_or_else(|| ParseError::new("a stored clear push names no room"))?;
                Ok(Self::Clear { room: RoomId::parse(room)? })
            }
            PushKind::LiveActivity => serde_json::from_str(stored).map(Self::LiveActivity).map_err(unreadable),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LegacyCallback;
    use serde_json::json;

    fn message() -> ChatMessage {
        let body = json!({
            "_id": "m1", "appID": "SampleApp", "room": "r1", "message": "hi",
            "sender": {"nickname": "Alice"}, "extra": [1, 2], "pushToClients": ["bbb"],
        });
        ChatMessage::parse(body.as_object().expect("an object")).expect("a message")
    }

    #[test]
    fn every_request_reads_back_as_it_was_stored() {
        let custom = CustomPush { title: Some("T".into()), badge: Some(3), ..CustomPush::default() };
        for request in [
            PushRequest::Custom(custom),
            PushRequest::Chat(message()),
            PushRequest::LegacyChat { message: message(), alert: Some("Alice: hi".into()) },
            PushRequest::LegacyChat { message: message(), alert: None },
            PushRequest::BadgeUpdate,
            PushRequest::Clear { room: RoomId::parse("demo-room").expect("a room") },
            PushRequest::LiveActivity(
                serde_json::from_value(serde_json::json!({ "event": "end", "activityId": "a1", "timestamp": 7 }))
                    .expect("a live activity push"),
            ),
        ] {
            let stored = request.encode();
            assert_eq!(PushRequest::decode(request.kind(), &stored), Ok(request.clone()), "{stored}");
        }
    }

    #[test]
    fn the_stored_forms_are_those_earlier_versions_wrote() {
        let chat = PushRequest::Chat(message()).encode();
        let stored: Value = serde_json::from_str(&chat).expect("JSON");
        assert_eq!(stored["extra"], json!([1, 2]), "unknown fields are kept");
        assert!(stored.get("pushToClients").is_none(), "the callback's own fields are not");
        let body = json!({"_id": "m1", "appID": "SampleApp", "toClient": "bbb", "alert": "Alice: hi", "badge": 2});
        let callback = LegacyCallback::parse(body.as_object().expect("an object")).expect("a v1 callback");
        let legacy = PushRequest::LegacyChat { message: callback.message, alert: callback.alert }.encode();
        assert_eq!(
            serde_json::from_str::<Value>(&legacy).expect("JSON"),
            json!({"_id": "m1", "appID": "SampleApp", "alert": "Alice: hi"})
        );
        assert_eq!(PushRequest::BadgeUpdate.encode(), "{}");
    }

    #[test]
    fn an_unreadable_stored_form_is_an_error_not_a_panic() {
        assert!(PushRequest::decode(PushKind::Chat, "not json").is_err());
        assert!(PushRequest::decode(PushKind::Chat, "{}").is_err(), "a message needs its _id");
        assert!(PushRequest::decode(PushKind::Custom, r#"{"badge": -1}"#).is_err());
    }
}
