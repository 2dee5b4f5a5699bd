//! pushgate's domain: the values every other crate passes around.
//!
//! Everything here is pure (no IO, no clock, no randomness) so it can be unit
//! tested exhaustively. Types follow "parse, don't validate": a value of type
//! [`ClientId`] or [`PushToken`] has already been checked, so code that
//! receives one never checks again.

mod chat;
mod device;
mod experiment;
mod ids;
mod kinds;
mod liveactivity;
mod overrides;
mod push;
mod reasons;
mod request;
mod routing;
pub mod trace;
mod webpush;

pub use chat::{
    BADGE_PUSH_TYPE, CHAT_PUSH_TYPE, CLEAR_PUSH_TYPE, ChatMessage, ChatStyle, GenericCallback, LegacyCallback,
    MAX_APNS_BYTES, MAX_FCM_BYTES, MAX_RECIPIENTS, MAX_VOIP_BYTES, PRIVATE_LOC_KEY, Privacy, PrivateForm, Recipient,
    SEAL_OVERHEAD, SEALED_KEY, Summary, badge_update_apns, badge_update_fcm, clear_apns, clear_fcm, clear_webpush,
    has_text_for, room_collapse_key,
};
pub use device::{
    DeviceType, Environment, KNOWN_PUSH_SERVICES, Locale, PushKey, PushToken, TimeZoneName, TokenKind,
    WebPushEndpoints, WebPushSubscription, mask_token,
};
pub use experiment::{Experiment, Variant, fill_template, two_proportion_p_value};
pub use ids::{AppId, BadgeSource, ClientId, DeviceId, ExperimentId, MessageId, PushId, RoomId};
pub use kinds::{DeliveryMode, PrivacyFallback, PrivacyMode, ProviderKind, PushKind, RoomNotify};
pub use liveactivity::{LiveActivityEvent, LiveActivityPush};
pub use overrides::{ApnsHeaders, ApnsOverride, ApnsOverrideType, ApnsPriority, WebPushHeaders, WebPushOverride};
pub use push::{Alert, ApnsPush, CustomPush};
pub use reasons::{Reason, Unreachable, explain_reason};
pub use request::PushRequest;
pub use routing::{OnlinePolicy, QuietHours, RecipientState, Route, route};
pub use trace::TraceParent;
pub use webpush::{
    DECLARATIVE_WEB_PUSH, MAX_WEBPUSH_BYTES, MAX_WEBPUSH_TTL_SECONDS, Urgency, WebPushMessage, badge_update_webpush,
    web_push_topic,
};

/// Why a value from outside was refused. The message is safe to show to the
/// caller: it names what is expected and never echoes a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(pub String);

impl ParseError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}
