//! The delivery worker: claims due deliveries, sends each through its
//! provider, and records what became of it.
//!
//! At-least-once: a delivery is leased while it is sent; if the process dies
//! before the outcome is recorded, the lease runs out (or, on the embedded
//! store, is released at the next start) and the delivery is sent again with
//! the same `apns-id`. That window, between the provider's answer and the
//! outcome's commit, is where a duplicate can happen.

use crate::config::{AppConfig, DeliveryConfig};
use anyhow::Context as _;
use pushgate_api::metrics::Metrics;
use pushgate_api::pauses::Gate;
use pushgate_api::{DeliveryHandle, now_ms};
use pushgate_domain::{
    ApnsPush, AppId, ChatMessage, ChatStyle, CustomPush, DeliveryMode, DeviceType, Environment, Experiment, Locale,
    PushKind, Recipient, badge_update_apns, badge_update_fcm,
};
use pushgate_providers::apns::{
    ApnsAuth, ApnsClient, ApnsClientConfig, Notification, Priority, PushType, TokenSigner, apns_id,
};
use pushgate_providers::fcm::{FcmClient, FcmClientConfig, ServiceAccount};
use pushgate_providers::{Outcome, SystemClock};
use pushgate_store::{ClaimedDelivery, DeliveryStatus, DeliveryUpdate, Store};
use std::collections::HashMap;
use std::hash::BuildHasher as _;
use std::sync::Arc;
use std::time::Duration;

/// How often finished pushes past the retention are forgotten.
const HOUSEKEEPING_INTERVAL_MS: i64 = 3_600_000;
/// Pushes (and callback ids) forgotten per transaction.
const HOUSEKEEPING_BATCH: u32 = 1000;

/// A token bucket: sends wait for a token, so a large push paces itself
/// under the provider's quota instead of tripping it.
type RateLimiter = governor::DefaultDirectRateLimiter;

fn rate_limiter(per_second: u32) -> Option<Arc<RateLimiter>> {
    std::num::NonZeroU32::new(per_second).map(|rate| Arc::new(RateLimiter::direct(governor::Quota::per_second(rate))))
}

/// The provider clients of one app.
#[derive(Debug)]
pub struct AppProviders {
    apns_production: Option<Arc<ApnsClient>>,
    apns_sandbox: Option<Arc<ApnsClient>>,
    apns_rate: Option<Arc<RateLimiter>>,
    topic: String,
    default_environment: Environment,
    fcm: Option<Arc<FcmClient>>,
    fcm_rate: Option<Arc<RateLimiter>>,
    max_attempts: u32,
    chat_style: ChatStyle,
}

impl AppProviders {
    /// Builds the clients an app's configuration asks for. No connection is
    /// opened until the first send.
    pub fn from_config(app: &AppConfig, max_attempts: u32) -> anyhow::Result<Self> {
        let mut providers = Self {
            apns_production: None,
            apns_sandbox: None,
            apns_rate: None,
            topic: String::new(),
            default_environment: Environment::Production,
            fcm: None,
            fcm_rate: None,
            max_attempts,
            chat_style: ChatStyle {
                default_locale: Locale::parse(&app.chat.locale).ok(),
                sound: Some(app.chat.sound.clone()).filter(|sound| !sound.is_empty()),
                icon: app.chat.icon.clone(),
                click_action: app.chat.click_action.clone(),
            },
        };
        if let Some(apns) = &app.apns {
            let auth =
                match (&apns.key_file, &apns.key_id, &apns.team_id, &apns.certificate_file, &apns.certificate_key_file)
                {
                    (Some(key_file), Some(key_id), Some(team_id), _, _) => {
                        let pem = std::fs::read(key_file).with_context(|| format!("reading {}", key_file.display()))?;
                        ApnsAuth::Token(Arc::new(TokenSigner::new(&pem, key_id, team_id, Arc::new(SystemClock))?))
                    }
                    (_, _, _, Some(certificate), Some(key)) => ApnsAuth::Certificate {
                        chain_pem: std::fs::read(certificate)
                            .with_context(|| format!("reading {}", certificate.display()))?,
                        key_pem: std::fs::read(key).with_context(|| format!("reading {}", key.display()))?,
                    },
                    _ => anyhow::bail!("apps.apns: no authentication configured"),
                };
            let extra_ca_pem =
                apns.ca_file.as_ref().map(std::fs::read).transpose().context("reading apps.apns.ca_file")?;
            let client = |default_endpoint: &str| -> anyhow::Result<Arc<ApnsClient>> {
                // An endpoint override (a fake, a proxy) serves both environments.
                let endpoint = match &apns.endpoint {
                    Some(endpoint) => endpoint.clone(),
                    None => default_endpoint.parse()?,
                };
                let mut config = ApnsClientConfig::new(endpoint, auth.clone());
                config.extra_ca_pem.clone_from(&extra_ca_pem);
                config.connections = apns.connections;
                Ok(Arc::new(ApnsClient::new(config)?))
            };
            providers.apns_production = Some(client(pushgate_providers::apns::PRODUCTION_ENDPOINT)?);
            providers.apns_sandbox = Some(client(pushgate_providers::apns::SANDBOX_ENDPOINT)?);
            providers.apns_rate = apns.rate_per_second.and_then(rate_limiter);
            providers.topic.clone_from(&apns.topic);
            providers.default_environment = apns.environment;
        }
        if let Some(fcm) = &app.fcm {
            let text = std::fs::read_to_string(&fcm.service_account_file)
                .with_context(|| format!("reading {}", fcm.service_account_file.display()))?;
            let account: ServiceAccount = serde_json::from_str(&text).context("parsing the service account")?;
            let mut config = FcmClientConfig::new(account)?;
            if let Some(endpoint) = &fcm.endpoint {
                config.endpoint = endpoint.clone();
            }
            config.extra_ca_pem =
                fcm.ca_file.as_ref().map(std::fs::read).transpose().context("reading apps.fcm.ca_file")?;
            providers.fcm = Some(Arc::new(FcmClient::new(config, Arc::new(SystemClock))?));
            providers.fcm_rate = rate_limiter(fcm.rate_per_second);
        }
        Ok(providers)
    }
}

/// Claims and delivers, until its task is stopped.
#[derive(Debug)]
pub struct Worker {
    store: Arc<dyn Store>,
    apps: HashMap<AppId, AppProviders>,
    settings: DeliveryConfig,
    handle: Arc<DeliveryHandle>,
    metrics: Arc<Metrics>,
}

impl Worker {
    /// A worker over the store with each app's providers.
    pub fn new(
        store: Arc<dyn Store>,
        apps: HashMap<AppId, AppProviders>,
        settings: DeliveryConfig,
        handle: Arc<DeliveryHandle>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self { store, apps, settings, handle, metrics }
    }

    /// Starts the worker on its own task. `worker_running` goes up before
    /// this returns (so readiness never races the task's first poll) and down
    /// when the task ends for any reason.
    pub fn spawn(self: Arc<Self>) -> tokio::task::JoinHandle<()> {
        let running = RunningFlag::raise(Arc::clone(&self.handle));
        tokio::spawn(async move {
            let _running = running;
            self.run().await;
        })
    }

    /// Runs until its task is stopped: releases the leases a previous process
    /// left, then claims due deliveries in batches and sends them with bounded
    /// concurrency (a batch is claimed once every delivery of the previous one
    /// holds a send slot). Sleeps until woken by an accepted push, until the next
    /// delivery is due, or at most the poll interval.
    async fn run(self: Arc<Self>) {
        match self.store.release_all_leases().await {
            Ok(0) => {}
            Ok(released) => {
                tracing::info!(deliveries = released, "resuming deliveries a previous run had not finished")
            }
            Err(error) => tracing::error!(error = %error, "cannot release old leases; they will run out by themselves"),
        }
        let poll = i64::try_from(self.settings.poll_interval_ms).unwrap_or(1000);
        let semaphore = Arc::new(tokio::sync::Semaphore::new(self.settings.concurrency));
        // Sends outlive the batch that claimed them: the next batch is claimed
        // as soon as the last one is under way, not when its slowest send ends.
        let mut running = tokio::task::JoinSet::new();
        let mut next_housekeeping = now_ms();
        loop {
            while running.try_join_next().is_some() {}
            let now = now_ms();
            if now >= next_housekeeping {
                self.forget_old_history(now).await;
                next_housekeeping = now + HOUSEKEEPING_INTERVAL_MS;
            }
            let lease_ms = i64::try_from(self.settings.lease_ms).unwrap_or(60_000);
            match self.store.claim_due_deliveries(now, self.settings.batch, lease_ms).await {
                Ok(batch) if !batch.is_empty() => {
                    // Each push is parsed once for all its deliveries in the
                    // batch (twice if only some of them carry its experiment).
                    let mut parsed: HashMap<(String, bool), Arc<Option<StoredPush>>> = HashMap::new();
                    for delivery in batch {
                        let push = Arc::clone(
                            parsed
                                .entry((delivery.push_id.clone(), delivery.experiment.is_some()))
                                .or_insert_with(|| Arc::new(StoredPush::parse(&delivery))),
                        );
                        let Ok(permit) = Arc::clone(&semaphore).acquire_owned().await else { return };
                        let worker = Arc::clone(&self);
                        running.spawn(async move {
                            worker.deliver(delivery, push.as_ref().as_ref()).await;
                            drop(permit);
                        });
                    }
                    continue;
                }
                Ok(_) => {}
                Err(error) => tracing::error!(error = %error, "cannot claim deliveries; trying again shortly"),
            }
            if let Ok((queued, retrying)) = self.store.queue_depth().await {
                self.metrics.queue_depth(queued, retrying);
            }
            let wait = match self.store.next_due_at().await {
                Ok(Some(due)) => (due - now).clamp(0, poll),
                _ => poll,
            };
            let wait = Duration::from_millis(u64::try_from(wait).unwrap_or_default());
            tokio::select! {
                () = self.handle.wake.notified() => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Forgets finished pushes and callback ids older than the retention, a
    /// bounded batch per transaction so the writer is never held long.
    async fn forget_old_history(&self, now: i64) {
        let retention_ms = i64::try_from(self.settings.retention_hours.saturating_mul(3_600_000)).unwrap_or(i64::MAX);
        let before = now.saturating_sub(retention_ms);
        let (mut pushes, mut callbacks) = (0, 0);
        loop {
            match self.store.forget_before(before, HOUSEKEEPING_BATCH).await {
                Ok((more_pushes, more_callbacks)) => {
                    pushes += more_pushes;
                    callbacks += more_callbacks;
                    if more_pushes < u64::from(HOUSEKEEPING_BATCH) && more_callbacks < u64::from(HOUSEKEEPING_BATCH) {
                        break;
                    }
                }
                Err(error) => {
                    tracing::warn!(error = %error, "cannot forget old pushes now; trying again later");
                    break;
                }
            }
        }
        if pushes + callbacks > 0 {
            tracing::info!(pushes, callbacks, "forgot finished pushes and callback ids past the retention");
        }
    }

    async fn deliver(&self, delivery: ClaimedDelivery, push: Option<&StoredPush>) {
        let now = now_ms();
        let (provider, update) = self.attempt(&delivery, push, now).await;
        // The metric's reason label is the provider's short code (never the
        // free text a provider may add), so the number of series stays bounded.
        let (update, label_reason) = match update {
            Ok(update) => {
                let label =
                    update.reason.as_deref().unwrap_or_default().split(':').next().unwrap_or_default().to_owned();
                (update, label)
            }
            Err(outcome) => {
                let label = outcome.reason().split(':').next().unwrap_or_default().to_owned();
                // A retry's delay (a `Retry-After` above all) counts from the
                // answer, not from the start of the attempt: time spent on the
                // rate limiter or on the send itself must not shorten it.
                let answered = now_ms();
                (self.settle(&delivery, provider, &outcome, answered).await, label)
            }
        };
        let result = match update.status {
            DeliveryStatus::Retrying if !update.attempted => "paused",
            DeliveryStatus::Retrying => "retried",
            other => other.as_str(),
        };
        let label_reason = if update.status == DeliveryStatus::Delivered { "" } else { label_reason.as_str() };
        let app = delivery.app_id.as_str();
        self.metrics.delivery(app, provider, result, label_reason);
        if update.status != DeliveryStatus::Retrying {
            let accepted_ms = accepted_at_ms(&delivery.push_id).unwrap_or(now);
            self.metrics.delivery_latency(app, (now_ms() - accepted_ms).max(0) as f64 / 1000.0);
        }
        if let Err(error) = self.store.record_attempt(delivery.id, &update).await {
            // The lease runs out and the delivery is sent again: at-least-once.
            tracing::error!(error = %error, push.id = %delivery.push_id, "cannot record a delivery outcome");
        } else if update.status == DeliveryStatus::Retrying {
            // The claim loop may be asleep until a later time than this retry's.
            self.handle.wake.notify_one();
        }
    }

    /// Sends once. `Ok` is an update decided without the provider (skipped,
    /// expired); `Err` carries the provider's outcome to settle.
    async fn attempt(
        &self,
        delivery: &ClaimedDelivery,
        push: Option<&StoredPush>,
        now: i64,
    ) -> (&'static str, Result<DeliveryUpdate, Outcome>) {
        let final_update = |status, reason: &str| DeliveryUpdate {
            status,
            reason: Some(reason.to_owned()),
            next_attempt_at_ms: None,
            attempted: false,
            now_ms: now,
        };
        if now > delivery.deadline_ms {
            return ("none", Ok(final_update(DeliveryStatus::Failed, "expired before it could be delivered")));
        }
        let Some(app) = self.apps.get(&delivery.app_id) else {
            return ("none", Ok(final_update(DeliveryStatus::Skipped, "the app is no longer configured")));
        };
        let Some(push) = push else {
            return ("none", Ok(final_update(DeliveryStatus::Failed, "the stored push is unreadable")));
        };
        match delivery.device_type {
            DeviceType::Ios | DeviceType::IosVoip => {
                let environment = delivery.environment.unwrap_or(app.default_environment);
                let client = match environment {
                    Environment::Production => &app.apns_production,
                    Environment::Sandbox => &app.apns_sandbox,
                };
                let Some(client) = client else {
                    return ("apns", Ok(final_update(DeliveryStatus::Skipped, "APNs is not configured for this app")));
                };
                let Some(apns) = push.apns(delivery, &app.chat_style) else {
                    return ("apns", Ok(final_update(DeliveryStatus::Skipped, "VoIP devices get no badge updates")));
                };
                let push_type = match (delivery.device_type, apns.silent) {
                    (DeviceType::IosVoip, _) => PushType::Voip,
                    (_, true) => PushType::Background,
                    (_, false) => PushType::Alert,
                };
                if let Some(held) = self.held(delivery, "apns", now) {
                    return ("apns", Ok(held));
                }
                if let Some(rate) = &app.apns_rate {
                    rate.until_ready().await;
                }
                let device_key = format!("{}:{}", delivery.device_type, delivery.device_id);
                let notification = Notification {
                    device_token: delivery.token.as_str(),
                    push_type,
                    topic: apns.topic.as_deref().unwrap_or(&app.topic),
                    apns_id: apns_id(&delivery.push_id, &device_key),
                    expiration: apns.expiration,
                    priority: apns.power_aware.then_some(Priority::PowerAware),
                    collapse_id: apns.collapse_id.as_deref(),
                    payload: &apns.payload,
                };
                ("apns", Err(client.send(&notification).await))
            }
            DeviceType::Android | DeviceType::Fcm => {
                let Some(client) = &app.fcm else {
                    return ("fcm", Ok(final_update(DeliveryStatus::Skipped, "FCM is not configured for this app")));
                };
                if let Some(held) = self.held(delivery, "fcm", now) {
                    return ("fcm", Ok(held));
                }
                if let Some(rate) = &app.fcm_rate {
                    rate.until_ready().await;
                }
                let message = push.fcm(delivery, &app.chat_style, u64::try_from(now / 1000).unwrap_or_default());
                ("fcm", Err(client.send(delivery.token.as_str(), &message).await))
            }
            DeviceType::Web => ("webpush", Ok(final_update(DeliveryStatus::Skipped, "Web Push is not supported yet"))),
        }
    }

    /// `Some(update)` holding the delivery back while its provider is paused
    /// for the app; `None` when it may go (as the probe, or normally).
    fn held(&self, delivery: &ClaimedDelivery, provider: &str, now: i64) -> Option<DeliveryUpdate> {
        match self.handle.pauses.gate(delivery.app_id.as_str(), provider, now) {
            Gate::Open | Gate::Probe => None,
            Gate::Held { until_ms, reason } => {
                Some(retry_at(delivery, format!("paused: {reason}"), until_ms, false, now))
            }
        }
    }

    /// Turns a provider outcome into the delivery's next state, and opens or
    /// closes the provider's pause for the app.
    async fn settle(&self, delivery: &ClaimedDelivery, provider: &str, outcome: &Outcome, now: i64) -> DeliveryUpdate {
        let app = delivery.app_id.as_str();
        if let Outcome::AppRejected { reason } = outcome {
            let base = i64::try_from(self.settings.pause_base_ms).unwrap_or(30_000);
            let max = i64::try_from(self.settings.pause_max_ms).unwrap_or(600_000);
            let until = self.handle.pauses.refused(app, provider, reason, now, base, max);
            self.metrics.provider_paused(app, provider, true);
            tracing::error!(app.id = %app, provider, provider.reason = %reason, "the provider refuses this app's credentials or configuration; paused, tokens kept");
            return retry_at(delivery, reason.clone(), until, true, now);
        }
        if self.handle.pauses.answered(app, provider) {
            self.metrics.provider_paused(app, provider, false);
            tracing::info!(app.id = %app, provider, "the provider accepts this app again; resumed");
        }
        let update = |status, reason: Option<String>, next: Option<i64>| DeliveryUpdate {
            status,
            reason,
            next_attempt_at_ms: next,
            attempted: true,
            now_ms: now,
        };
        match outcome {
            Outcome::Delivered => update(DeliveryStatus::Delivered, None, None),
            Outcome::Rejected { reason } => update(DeliveryStatus::Failed, Some(reason.clone()), None),
            Outcome::InvalidToken { reason, invalid_since_ms } => {
                let pruned = self
                    .store
                    .prune_device(
                        &delivery.app_id,
                        delivery.device_type,
                        &delivery.device_id,
                        &delivery.token,
                        *invalid_since_ms,
                    )
                    .await;
                match pruned {
                    Ok(true) => {
                        tracing::info!(app.id = %delivery.app_id, client.id = %delivery.client_id, device.type = %delivery.device_type, provider.reason = %reason, "pruned a device with an invalid token");
                        update(DeliveryStatus::Pruned, Some(reason.clone()), None)
                    }
                    Ok(false) => update(
                        DeliveryStatus::Failed,
                        Some(format!("{reason}; the device registered again since, so it was kept")),
                        None,
                    ),
                    Err(error) => {
                        tracing::error!(error = %error, "cannot prune a device");
                        update(DeliveryStatus::Failed, Some(reason.clone()), None)
                    }
                }
            }
            Outcome::Retry { reason, after } => self.schedule_retry(delivery, reason, *after, now),
            Outcome::AppRejected { .. } => unreachable!("handled above"),
        }
    }

    fn schedule_retry(
        &self,
        delivery: &ClaimedDelivery,
        reason: &str,
        after: Option<Duration>,
        now: i64,
    ) -> DeliveryUpdate {
        let attempts = delivery.attempts + 1;
        let give_up = |why: String| DeliveryUpdate {
            status: DeliveryStatus::Failed,
            reason: Some(why),
            next_attempt_at_ms: None,
            attempted: true,
            now_ms: now,
        };
        let max_attempts = self.apps.get(&delivery.app_id).map_or(self.settings.max_attempts, |app| app.max_attempts);
        if attempts >= max_attempts {
            return give_up(format!("{reason} (gave up after {attempts} attempts)"));
        }
        let delay = backoff(&self.settings, delivery.id, attempts).max(after.unwrap_or_default());
        let next = now.saturating_add(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX));
        retry_at(delivery, reason.to_owned(), next, true, now)
    }
}

/// A stored push, read back for its attempts: parsed once per claimed batch
/// and shared by the batch's deliveries of it; the provider payloads are
/// built again from it for each (pure functions of what was stored).
enum StoredPush {
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
    fn parse(delivery: &ClaimedDelivery) -> Option<Self> {
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
    fn apns(&self, delivery: &ClaimedDelivery, style: &ChatStyle) -> Option<ApnsPush> {
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
    fn fcm(&self, delivery: &ClaimedDelivery, style: &ChatStyle, now_seconds: u64) -> serde_json::Value {
        match self {
            Self::Custom(push) => push.to_fcm(now_seconds),
            Self::Chat { message, alert, .. } if !routed_silent(delivery) => {
                message.to_fcm(style, &self.recipient(delivery), alert.as_deref())
            }
            Self::Chat { .. } | Self::Badge => badge_update_fcm(delivery.badge.unwrap_or_default()),
        }
    }
}

/// A chat recipient routed to `silent` (muted room, online) gets a badge
/// update instead of the message.
fn routed_silent(delivery: &ClaimedDelivery) -> bool {
    delivery.mode == Some(DeliveryMode::Silent)
}

/// Holds `worker_running` up while the worker's task lives; lowers it when
/// the task ends for any reason (stop, abort, panic).
struct RunningFlag(Arc<DeliveryHandle>);

impl RunningFlag {
    fn raise(handle: Arc<DeliveryHandle>) -> Self {
        handle.worker_running.store(true, std::sync::atomic::Ordering::Relaxed);
        Self(handle)
    }
}

impl Drop for RunningFlag {
    fn drop(&mut self) {
        self.0.worker_running.store(false, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Due again at `next`, or failed for good when that is past the push's deadline.
fn retry_at(delivery: &ClaimedDelivery, reason: String, next: i64, attempted: bool, now: i64) -> DeliveryUpdate {
    let (status, reason, next_attempt_at_ms) = if next > delivery.deadline_ms {
        (DeliveryStatus::Failed, format!("{reason} (gave up: the next try would be past the push's deadline)"), None)
    } else {
        (DeliveryStatus::Retrying, reason, Some(next))
    };
    DeliveryUpdate { status, reason: Some(reason), next_attempt_at_ms, attempted, now_ms: now }
}

/// Exponential backoff with jitter: between half and all of
/// `base × 2^(attempts−1)`, capped at the maximum.
fn backoff(settings: &DeliveryConfig, delivery_id: i64, attempts: u32) -> Duration {
    let exponential = settings.retry_base_ms.saturating_mul(1u64 << attempts.saturating_sub(1).min(30));
    let ceiling = exponential.min(settings.retry_max_ms).max(1);
    // A per-process random hasher gives jitter without a random-number crate.
    let noise = std::collections::hash_map::RandomState::new().hash_one((delivery_id, attempts));
    Duration::from_millis(ceiling / 2 + noise % (ceiling / 2 + 1))
}

/// Push ids are UUIDv7, whose first 48 bits are the acceptance time in ms.
fn accepted_at_ms(push_id: &str) -> Option<i64> {
    let hex: String = push_id.chars().filter(|c| *c != '-').take(12).collect();
    i64::from_str_radix(&hex, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> DeliveryConfig {
        DeliveryConfig { retry_base_ms: 1000, retry_max_ms: 60_000, ..DeliveryConfig::default() }
    }

    #[test]
    fn backoff_doubles_with_jitter_and_stops_at_the_cap() {
        for attempts in 1..=10u32 {
            let ceiling = (1000u64 << (attempts - 1)).min(60_000);
            let delay = backoff(&settings(), 7, attempts).as_millis() as u64;
            assert!(
                (ceiling / 2..=ceiling).contains(&delay),
                "attempt {attempts}: {delay} ms not in [{}, {ceiling}]",
                ceiling / 2
            );
        }
    }
}
