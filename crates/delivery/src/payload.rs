//! A stored push read back for its attempts, and the provider payloads built
//! from it for one delivery (pure domain functions of what was stored).

use pushgate_domain::{
    ApnsPush, ChatMessage, ChatStyle, CustomPush, DeliveryMode, DeviceType, Experiment, PushKind, Recipient,
    WebPushMessage, badge_update_apns, badge_update_fcm, badge_update_webpush,
};
use pushgate_store::ClaimedDelivery;

/// A stored push, read back for its attempts: parsed once per claimed batch
/// and shared by the batch's deliveries of it; the provider payloads are
/// built again from it for each (pure functions of what was stored).
pub(crate) enum StoredPush {
    /// push2clients.
    Custom(CustomPush),
    /// A v2 callback (`alert` none) or a v1 callback (`alert` as given), with
    /// the push's experiment, if any.
    Chat { message: ChatMessage, alert: Option<String>, experiment: Option<Experiment> },
    /// A silent badge update after a read mark.
    Badge,
}

impl StoredPush {
    /// `None` when the stored request cannot be read back.
    pub(crate) fn parse(delivery: &ClaimedDelivery) -> Option<Self> {
        match delivery.kind {
            PushKind::Custom => serde_json::from_str(&delivery.request).ok().map(Self::Custom),
            PushKind::Chat | PushKind::ChatV1 => {
                let fields: serde_json::Map<String, serde_json::Value> =
                    serde_json::from_str(&delivery.request).ok()?;
                let alert = fields.get("alert").and_then(|alert| alert.as_str()).map(str::to_owned);
                let experiment = match &delivery.experiment {
                    Some((snapshot, _)) => Some(serde_json::from_str(snapshot).ok()?),
                    None => None,
                };
                Some(Self::Chat { message: ChatMessage::parse(&fields).ok()?, alert, experiment })
            }
            PushKind::Badge => Some(Self::Badge),
        }
    }

    fn recipient<'a>(&'a self, delivery: &'a ClaimedDelivery) -> Recipient<'a> {
        let variant = match (self, &delivery.experiment) {
            (Self::Chat { experiment: Some(experiment), .. }, Some((_, name))) => {
                experiment.variants.iter().find(|variant| variant.name == *name)
            }
            _ => None,
        };
        Recipient {
            badge: delivery.badge,
            locale: delivery.locale.as_ref(),
            quiet: delivery.mode == Some(DeliveryMode::Quiet),
            variant,
        }
    }

    /// The APNs push for the delivery's device; `None` when that device gets none.
    pub(crate) fn apns(&self, delivery: &ClaimedDelivery, style: &ChatStyle) -> Option<ApnsPush> {
        let voip = delivery.device_type == DeviceType::IosVoip;
        match self {
            Self::Custom(push) => Some(push.to_apns()),
            Self::Chat { message, .. } if !routed_silent(delivery) && voip => {
                Some(message.to_apns_voip(style, &self.recipient(delivery)))
            }
            Self::Chat { message, alert, .. } if !routed_silent(delivery) => {
                Some(message.to_apns(style, &self.recipient(delivery), alert.as_deref()))
            }
            // A VoIP push must report a call; a badge update is not one.
            Self::Chat { .. } | Self::Badge if voip => None,
            Self::Chat { .. } | Self::Badge => Some(badge_update_apns(delivery.badge.unwrap_or_default())),
        }
    }

    /// The FCM message (without its token) for the delivery's device.
    pub(crate) fn fcm(&self, delivery: &ClaimedDelivery, style: &ChatStyle, now_seconds: u64) -> serde_json::Value {
        match self {
            Self::Custom(push) => push.to_fcm(now_seconds),
            Self::Chat { message, alert, .. } if !routed_silent(delivery) => {
                message.to_fcm(style, &self.recipient(delivery), alert.as_deref())
            }
            Self::Chat { .. } | Self::Badge => badge_update_fcm(delivery.badge.unwrap_or_default()),
        }
    }

    /// The Web Push for the delivery's subscription.
    pub(crate) fn webpush(&self, delivery: &ClaimedDelivery, style: &ChatStyle, now_seconds: u64) -> WebPushMessage {
        match self {
            Self::Custom(push) => push.to_webpush(now_seconds, style.web_navigate.as_deref()),
            Self::Chat { message, alert, .. } if !routed_silent(delivery) => {
                message.to_webpush(style, &self.recipient(delivery), alert.as_deref())
            }
            Self::Chat { .. } | Self::Badge => badge_update_webpush(delivery.badge.unwrap_or_default()),
        }
    }
}

/// A chat recipient routed to `silent` (muted room, online) gets a badge
/// update instead of the message.
fn routed_silent(delivery: &ClaimedDelivery) -> bool {
    delivery.mode == Some(DeliveryMode::Silent)
}
