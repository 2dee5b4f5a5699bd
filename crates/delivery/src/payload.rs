//! The provider payloads of one delivery, built from its stored push (pure
//! domain functions of what was stored, for every attempt).

use pushgate_domain::{
    ApnsPush, ChatMessage, ChatStyle, DeliveryMode, DeviceType, PushRequest, Recipient, WebPushMessage,
    badge_update_apns, badge_update_fcm, badge_update_webpush, clear_apns, clear_fcm, clear_webpush,
};
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
        PushRequest::Custom(_) | PushRequest::BadgeUpdate | PushRequest::Clear { .. } => None,
    }
}

/// The APNs push for the delivery's device; `None` when that device gets none.
pub(crate) fn apns(request: &PushRequest, delivery: &ClaimedDelivery, style: &ChatStyle) -> Option<ApnsPush> {
    let voip = delivery.device_type == DeviceType::IosVoip;
    let badge = delivery.badge.unwrap_or_default();
    match request {
        PushRequest::Custom(push) => return Some(push.to_apns()),
        // A VoIP push must report a call; a clear is not one.
        PushRequest::Clear { room } => return (!voip).then(|| clear_apns(room, badge)),
        _ => {}
    }
    match message(request, delivery) {
        Some((message, _)) if voip => Some(message.to_apns_voip(style, &recipient(delivery))),
        Some((message, alert)) => Some(message.to_apns(style, &recipient(delivery), alert)),
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
        Some((message, alert)) => message.to_fcm(style, &recipient(delivery), alert),
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
