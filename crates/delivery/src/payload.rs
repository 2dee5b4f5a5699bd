//! The provider payloads of one delivery, built from its stored push (pure
//! domain functions of what was stored, for every attempt), a private chat
//! alert sealed here to the device's key (RFC 8291: random by nature, so
//! each attempt's ciphertext differs).

use pushgate_domain::{
    ApnsPush, ChatMessage, ChatStyle, DeliveryMode, DeviceType, PrivateForm, PushRequest, Recipient, WebPushMessage,
    badge_update_apns, badge_update_fcm, badge_update_webpush, clear_apns, clear_fcm, clear_webpush,
};
use pushgate_providers::webpush::seal;
use pushgate_store::ClaimedDelivery;

/// What a chat message's payloads need of the recipient: its badge, locale,
/// quiet route and experiment variant.
fn recipient(delivery: &ClaimedDelivery) -> Recipient<'_> {
    Recipient {
        badge: delivery.badge,
        locale: delivery.locale.as_ref(),
        quiet: delivery.mode == Some(DeliveryMode::Quiet),
        variant: delivery.variant(),
        summary: delivery.summary.as_ref(),
    }
}

/// What APNs and FCM get of the delivery's chat alert (the app's privacy and
/// the device's key): `Clear`, or the sealed clear push, or (`None`) only the
/// message's id.
enum Private {
    Clear,
    Hidden(Option<Vec<u8>>),
}

/// Seals the clear push `to_seal` builds when the app's privacy and the
/// device's key call for it (a key that cannot seal, which registration
/// rules out, falls back to the id only).
fn private(style: &ChatStyle, delivery: &ClaimedDelivery, to_seal: impl FnOnce() -> Vec<u8>) -> Private {
    match (style.privacy.form(delivery.push_key.is_some()), &delivery.push_key) {
        (PrivateForm::Clear, _) => Private::Clear,
        (PrivateForm::Sealed, Some(key)) => Private::Hidden(seal(&to_seal(), key.p256dh(), key.auth())),
        (PrivateForm::Sealed | PrivateForm::IdOnly, _) => Private::Hidden(None),
    }
}

/// The chat message and IMKIT's `alert` (v1) when the recipient gets the
/// message; `None` for a badge update, or a chat recipient routed to
/// `silent` (muted room, online), which gets a badge update instead.
fn message<'a>(request: &'a PushRequest, delivery: &ClaimedDelivery) -> Option<(&'a ChatMessage, Option<&'a str>)> {
    if delivery.mode == Some(DeliveryMode::Silent) {
        return None;
    }
    match request {
        PushRequest::Chat(message) => Some((message, None)),
        PushRequest::LegacyChat { message, alert } => Some((message, alert.as_deref())),
        PushRequest::Custom(_)
        | PushRequest::BadgeUpdate
        | PushRequest::Clear { .. }
        // Only ActivityKit tokens get it (the worker checks).
        | PushRequest::LiveActivity(_) => None,
    }
}

/// The APNs push for the delivery's device; `None` when that device gets none.
pub(crate) fn apns(request: &PushRequest, delivery: &ClaimedDelivery, style: &ChatStyle) -> Option<ApnsPush> {
    let voip = delivery.device_type == DeviceType::IosVoip;
    let badge = delivery.badge.unwrap_or_default();
    match request {
        // A VoIP device takes a VoIP push only, and a VoIP push goes to VoIP devices only.
        PushRequest::Custom(push) => return (push.is_voip() == voip).then(|| push.to_apns()),
        PushRequest::LiveActivity(push) => return Some(push.to_apns()),
        // A VoIP push must report a call; a clear is not one.
        PushRequest::Clear { room } => return (!voip).then(|| clear_apns(room, badge)),
        _ => {}
    }
    match message(request, delivery) {
        Some((message, _)) if voip => Some(message.to_apns_voip(style, &recipient(delivery))),
        Some((message, alert)) => {
            let recipient = recipient(delivery);
            Some(match private(style, delivery, || message.apns_to_seal(style, &recipient, alert)) {
                Private::Clear => message.to_apns(style, &recipient, alert),
                Private::Hidden(sealed) => message.to_apns_private(style, &recipient, sealed.as_deref()),
            })
        }
        // A VoIP push must report a call; a badge update is not one.
        None if voip => None,
        None => Some(badge_update_apns(badge)),
    }
}

/// The FCM message (without its token) for the delivery's device.
pub(crate) fn fcm(
    request: &PushRequest,
    delivery: &ClaimedDelivery,
    style: &ChatStyle,
    now_seconds: u64,
) -> serde_json::Value {
    match request {
        PushRequest::Custom(push) => return push.to_fcm(now_seconds),
        PushRequest::Clear { room } => return clear_fcm(room, delivery.badge.unwrap_or_default()),
        _ => {}
    }
    match message(request, delivery) {
        Some((message, alert)) => {
            let recipient = recipient(delivery);
            match private(style, delivery, || message.fcm_to_seal(style, &recipient, alert)) {
                Private::Clear => message.to_fcm(style, &recipient, alert),
                Private::Hidden(sealed) => message.to_fcm_private(&recipient, sealed.as_deref()),
            }
        }
        None => badge_update_fcm(delivery.badge.unwrap_or_default()),
    }
}

/// The Web Push for the delivery's subscription.
pub(crate) fn webpush(
    request: &PushRequest,
    delivery: &ClaimedDelivery,
    style: &ChatStyle,
    now_seconds: u64,
) -> WebPushMessage {
    match request {
        PushRequest::Custom(push) => return push.to_webpush(now_seconds, style.web_navigate.as_deref()),
        PushRequest::Clear { room } => return clear_webpush(room, delivery.badge.unwrap_or_default()),
        _ => {}
    }
    match message(request, delivery) {
        Some((message, alert)) => message.to_webpush(style, &recipient(delivery), alert),
        None => badge_update_webpush(delivery.badge.unwrap_or_default()),
    }
}
