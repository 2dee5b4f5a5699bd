//! Provider dispatch: one [`Provider`] per configured provider of an app,
//! keyed by [`ProviderKind`]. Each builds its request for a delivery from the
//! stored push, waits its turn under its rate limit and sends; the worker
//! only gates (pauses), settles and records.

use crate::payload;
use crate::rate::SendRate;
use async_trait::async_trait;
use pushgate_domain::{
    ApnsPriority, ChatStyle, DeviceType, Environment, ProviderKind, PushRequest, Reason, WebPushEndpoints,
};
use pushgate_providers::Outcome;
use pushgate_providers::apns::{ApnsClient, Notification, Priority, PushType, apns_id};
use pushgate_providers::fcm::FcmClient;
use pushgate_providers::webpush::WebPushClient;
use pushgate_store::{ClaimedDelivery, DeliveryUpdate};
use std::sync::Arc;
use tracing::Instrument as _;

/// What became of one send.
#[derive(Debug)]
pub(crate) enum Sent {
    /// The provider answered.
    Answered(Outcome),
    /// This device gets nothing from this push; why.
    Skipped(Reason),
    /// The worker's gate held it back (the provider is paused for the app).
    Held(DeliveryUpdate),
}

/// Whether a delivery may go now: `Some(update)` holds it back. Asked once
/// the request is known to exist, just before the rate limiter.
pub(crate) type Admit<'a> = &'a (dyn Fn() -> Option<DeliveryUpdate> + Send + Sync);

/// One provider of one app.
#[async_trait]
pub(crate) trait Provider: Send + Sync + std::fmt::Debug {
    /// Which provider this is (pauses, metrics).
    fn kind(&self) -> ProviderKind;

    /// Builds the delivery's request, asks `admit`, waits under the rate
    /// limit and sends.
    async fn send(
        &self,
        delivery: &ClaimedDelivery,
        request: &PushRequest,
        style: &ChatStyle,
        now_ms: i64,
        admit: Admit<'_>,
    ) -> Sent;
}

/// Asks the gate, then waits for the rate limiter: `Some` when the gate
/// holds the delivery back.
async fn take_turn(admit: Admit<'_>, rate: Option<&SendRate>) -> Option<Sent> {
    if let Some(held) = admit() {
        return Some(Sent::Held(held));
    }
    if let Some(rate) = rate {
        rate.until_ready().await;
    }
    None
}

/// A send to the provider, in a `send` span, with its answer logged.
async fn answered(send: impl std::future::Future<Output = Outcome>) -> Outcome {
    let outcome = send.instrument(tracing::debug_span!("send")).await;
    tracing::debug!(outcome = ?outcome.reason().map(ToString::to_string), "answered");
    outcome
}

/// The provider that serves a device type.
pub(crate) fn provider_kind_of(device_type: DeviceType) -> ProviderKind {
    match device_type {
        DeviceType::Ios
        | DeviceType::IosVoip
        | DeviceType::IosLiveActivity
        | DeviceType::IosPushToStart
        | DeviceType::IosWidgets
        | DeviceType::IosLocation
        | DeviceType::IosComplication
        | DeviceType::IosFileProvider
        | DeviceType::IosPushToTalk => ProviderKind::Apns,
        DeviceType::Android | DeviceType::Fcm => ProviderKind::Fcm,
        DeviceType::Web | DeviceType::UnifiedPush => ProviderKind::WebPush,
    }
}

/// The device types `provider` delivers to.
pub(crate) fn device_types_of(provider: ProviderKind) -> &'static [DeviceType] {
    match provider {
        ProviderKind::Apns => &[
            DeviceType::Ios,
            DeviceType::IosVoip,
            DeviceType::IosLiveActivity,
            DeviceType::IosPushToStart,
            DeviceType::IosWidgets,
            DeviceType::IosLocation,
            DeviceType::IosComplication,
            DeviceType::IosFileProvider,
            DeviceType::IosPushToTalk,
        ],
        ProviderKind::Fcm => &[DeviceType::Android, DeviceType::Fcm],
        ProviderKind::WebPush => &[DeviceType::Web, DeviceType::UnifiedPush],
    }
}

/// APNs for one app: a client per environment.
#[derive(Debug)]
pub struct ApnsProviders {
    /// `api.push.apple.com` (or the configured endpoint).
    pub production: Arc<ApnsClient>,
    /// `api.sandbox.push.apple.com` (or the configured endpoint).
    pub sandbox: Arc<ApnsClient>,
    /// The app's bundle id, the `apns-topic` unless a push names one.
    pub topic: String,
    /// The environment of a device that names none.
    pub default_environment: Environment,
    /// The app's send rate limit, if any.
    pub rate: Option<SendRate>,
}

#[async_trait]
impl Provider for ApnsProviders {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Apns
    }

    async fn send(
        &self,
        delivery: &ClaimedDelivery,
        request: &PushRequest,
        style: &ChatStyle,
        _now_ms: i64,
        admit: Admit<'_>,
    ) -> Sent {
        let client = match delivery.environment.unwrap_or(self.default_environment) {
            Environment::Production => &self.production,
            Environment::Sandbox => &self.sandbox,
        };
        let built = tracing::debug_span!("build").in_scope(|| payload::apns(request, delivery, style));
        let Some(apns) = built else {
            return Sent::Skipped(match request {
                PushRequest::Custom(_) => Reason::NotForDeviceType,
                _ => Reason::NoVoipBadgeUpdate,
            });
        };
        let push_type = match (delivery.device_type, apns.silent) {
            (DeviceType::IosVoip, _) => PushType::Voip,
            (DeviceType::IosLiveActivity | DeviceType::IosPushToStart, _) => PushType::LiveActivity,
            (DeviceType::IosWidgets, _) => PushType::Widgets,
            (DeviceType::IosLocation, _) => PushType::Location,
            (DeviceType::IosComplication, _) => PushType::Complication,
            (DeviceType::IosFileProvider, _) => PushType::FileProvider,
            (DeviceType::IosPushToTalk, _) => PushType::PushToTalk,
            (_, true) => PushType::Background,
            (_, false) => PushType::Alert,
        };
        if let Some(held) = take_turn(admit, self.rate.as_ref()).await {
            return held;
        }
        let device_key = format!("{}:{}", delivery.device_type, delivery.device_id);
        let notification = Notification {
            device_token: delivery.token.as_str(),
            push_type,
            topic: apns.topic.as_deref().unwrap_or(&self.topic),
            apns_id: apns_id(&delivery.push_id().to_string(), &device_key),
            expiration: apns.expiration,
            priority: apns.priority.map(|priority| match priority {
                ApnsPriority::Immediate => Priority::Immediate,
                ApnsPriority::PowerAware => Priority::PowerAware,
                ApnsPriority::Low => Priority::Low,
            }),
            collapse_id: apns.collapse_id.as_deref(),
            payload: &apns.payload,
        };
        Sent::Answered(answered(client.send(&notification)).await)
    }
}

/// FCM HTTP v1 for one app.
#[derive(Debug)]
pub struct FcmProvider {
    /// The client of the app's Firebase project.
    pub client: Arc<FcmClient>,
    /// The project's send rate limit, if any.
    pub rate: Option<SendRate>,
}

#[async_trait]
impl Provider for FcmProvider {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Fcm
    }

    async fn send(
        &self,
        delivery: &ClaimedDelivery,
        request: &PushRequest,
        style: &ChatStyle,
        now_ms: i64,
        admit: Admit<'_>,
    ) -> Sent {
        if let Some(held) = take_turn(admit, self.rate.as_ref()).await {
            return held;
        }
        let now_seconds = u64::try_from(now_ms / 1000).unwrap_or_default();
        let message = tracing::debug_span!("build").in_scope(|| payload::fcm(request, delivery, style, now_seconds));
        Sent::Answered(answered(self.client.send(delivery.token.as_str(), &message)).await)
    }
}

/// Web Push for one app: browsers and UnifiedPush distributors.
#[derive(Debug)]
pub struct WebPushProvider {
    /// The client holding the app's VAPID key.
    pub client: Arc<WebPushClient>,
    /// Where the app's subscriptions may point, checked again before each
    /// send: a host taken off `allowed_hosts` gets nothing more.
    pub endpoints: WebPushEndpoints,
    /// The app's Web Push rate limit, if any.
    pub rate: Option<SendRate>,
}

#[async_trait]
impl Provider for WebPushProvider {
    fn kind(&self) -> ProviderKind {
        ProviderKind::WebPush
    }

    async fn send(
        &self,
        delivery: &ClaimedDelivery,
        request: &PushRequest,
        style: &ChatStyle,
        now_ms: i64,
        admit: Admit<'_>,
    ) -> Sent {
        let Some(subscription) = delivery.token.web_subscription() else {
            return Sent::Skipped(Reason::UnreadableSubscription);
        };
        if self.endpoints.check(&subscription.endpoint).is_err() {
            return Sent::Skipped(Reason::EndpointNotAllowed);
        }
        if let Some(held) = take_turn(admit, self.rate.as_ref()).await {
            return held;
        }
        let now_seconds = u64::try_from(now_ms / 1000).unwrap_or_default();
        let message =
            tracing::debug_span!("build").in_scope(|| payload::webpush(request, delivery, style, now_seconds));
        Sent::Answered(answered(self.client.send(&subscription, &message)).await)
    }
}
