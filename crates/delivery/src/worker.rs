//! The delivery worker: claims due deliveries, sends each through its
//! provider, and records what became of it.
//!
//! At-least-once: a delivery is leased while it is sent, the lease renewed
//! while it waits; if the process dies before the outcome is recorded, the
//! lease runs out (or, on the embedded store, is released at the next start)
//! and the delivery is sent again with the same `apns-id`. That window, between the provider's answer and the
//! outcome's commit, is where a duplicate can happen.

use crate::metrics::DeliveryMetrics;
use crate::pauses::Gate;
use crate::provider::{Provider, Sent, provider_kind_of};
use crate::retry::{retry_at, schedule_retry};
use crate::{ApnsProviders, DeliveryConfig, DeliveryHandle, FcmProvider, WebPushProvider};
use pushgate_domain::{AppId, ChatStyle, DeviceType, LiveActivityEvent, ProviderKind, PushRequest, Reason};
use pushgate_providers::{Clock, Outcome};
use pushgate_store::{
    ClaimedDelivery, Cluster, DeliveryRef, DeliveryStatus, DeliveryUpdate, SharedPause, Store, StoreError,
};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument as _;

/// How often finished pushes past the retention are forgotten.
const HOUSEKEEPING_INTERVAL_MS: i64 = 3_600_000;
/// Pushes (and callback ids) forgotten per transaction.
const HOUSEKEEPING_BATCH: u32 = 1000;
/// How often a node on a shared store takes on the other nodes' provider
/// pauses: at most this long after one node is refused, every node holds.
const PAUSE_SYNC_INTERVAL: Duration = Duration::from_secs(1);

/// The providers of one app, and how its deliveries are sent.
#[derive(Debug)]
pub struct AppProviders {
    providers: HashMap<ProviderKind, Box<dyn Provider>>,
    /// Attempts before a delivery fails for good.
    max_attempts: u32,
    /// How chat pushes look for this app.
    chat_style: ChatStyle,
}

impl AppProviders {
    /// An app with no provider yet: every delivery is skipped with a reason.
    pub fn new(max_attempts: u32, chat_style: ChatStyle) -> Self {
        Self { providers: HashMap::new(), max_attempts, chat_style }
    }

    /// Sends the app's Apple devices through APNs.
    pub fn with_apns(self, apns: ApnsProviders) -> Self {
        self.with(Box::new(apns))
    }

    /// Sends the app's Android devices through FCM.
    pub fn with_fcm(self, fcm: FcmProvider) -> Self {
        self.with(Box::new(fcm))
    }

    /// Sends the app's browsers and UnifiedPush distributors through Web Push.
    pub fn with_webpush(self, webpush: WebPushProvider) -> Self {
        self.with(Box::new(webpush))
    }

    fn with(mut self, provider: Box<dyn Provider>) -> Self {
        self.providers.insert(provider.kind(), provider);
        self
    }
}

/// Claims and delivers: in the background ([`Worker::spawn`]) or, for tests
/// and tools, on demand ([`Worker::run_pending`]).
#[derive(Debug)]
pub struct Worker {
    store: Arc<dyn Store>,
    /// Each app's providers; replaced whole when credentials are reloaded
    /// (a send under way keeps the ones it started with).
    apps: std::sync::RwLock<Arc<HashMap<AppId, Arc<AppProviders>>>>,
    settings: DeliveryConfig,
    handle: Arc<DeliveryHandle>,
    metrics: DeliveryMetrics,
    clock: Arc<dyn Clock>,
    /// Claimed deliveries whose outcome is not recorded yet: their leases
    /// are renewed while they wait (rate limiter, paused provider, slow answer).
    in_flight: std::sync::Mutex<HashSet<DeliveryRef>>,
}

impl Worker {
    /// A worker over the store with each app's providers, on `clock`'s time.
    pub fn new(
        store: Arc<dyn Store>,
        apps: HashMap<AppId, AppProviders>,
        settings: DeliveryConfig,
        handle: Arc<DeliveryHandle>,
        metrics: DeliveryMetrics,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let apps = apps.into_iter().map(|(id, app)| (id, Arc::new(app))).collect();
        Self {
            store,
            apps: std::sync::RwLock::new(Arc::new(apps)),
            settings,
            handle,
            metrics,
            clock,
            in_flight: std::sync::Mutex::default(),
        }
    }

    /// An app's providers, as they are now.
    fn app(&self, id: &AppId) -> Option<Arc<AppProviders>> {
        self.apps.read().unwrap_or_else(std::sync::PoisonError::into_inner).get(id).cloned()
    }

    /// Replaces the providers of the apps in `apps` (new credentials): the
    /// next sends use them; sends under way finish with the old ones.
    pub fn replace_providers(&self, apps: HashMap<AppId, AppProviders>) {
        let mut current = self.apps.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut next: HashMap<AppId, Arc<AppProviders>> = current.as_ref().clone();
        next.extend(apps.into_iter().map(|(id, app)| (id, Arc::new(app))));
        *current = Arc::new(next);
    }

    fn now_ms(&self) -> i64 {
        self.clock.unix_ms()
    }

    fn lease_ms(&self) -> i64 {
        i64::try_from(self.settings.lease_ms).unwrap_or(60_000)
    }

    /// Starts the worker on its own task. The handle's running flag goes up
    /// before this returns (so readiness never races the task's first poll)
    /// and down when the task ends for any reason.
    pub fn spawn(self: Arc<Self>) -> tokio::task::JoinHandle<()> {
        let running = RunningFlag::raise(Arc::clone(&self.handle));
        tokio::spawn(async move {
            let _running = running;
            self.run().await;
        })
    }

    /// Delivers what is due now and records every outcome, batch after batch,
    /// until nothing is due at the clock's current time (a retry scheduled
    /// for later waits for a later call), then sets the queue-depth gauges as
    /// the loop does when it runs out of work; answers how many deliveries
    /// were attempted or settled. The deterministic way to drive the queue,
    /// for tests and tools: no background task, no polling.
    pub async fn run_pending(self: &Arc<Self>) -> usize {
        let mut handled = 0;
        loop {
            loop {
                match self.store.fan_out_step().await {
                    Ok(true) => {}
                    Ok(false) => break,
                    Err(error) => {
                        tracing::error!(error = %error, "cannot fan out the journal");
                        return handled;
                    }
                }
            }
            let now = self.now_ms();
            let batch = match self.claim(now).await {
                Ok(batch) if !batch.is_empty() => batch,
                Ok(_) => {
                    self.report_queue_depth().await;
                    return handled;
                }
                Err(error) => {
                    tracing::error!(error = %error, "cannot claim deliveries");
                    return handled;
                }
            };
            handled += batch.len();
            let mut sends = tokio::task::JoinSet::new();
            for delivery in batch {
                let worker = Arc::clone(self);
                sends.spawn(async move { worker.deliver(delivery, Slot::default()).await });
            }
            while sends.join_next().await.is_some() {}
        }
    }

    /// Runs until its task is stopped: releases the leases a previous process
    /// left, then claims due deliveries in batches and sends them with bounded
    /// concurrency (a batch is claimed once every delivery of the previous one
    /// holds a send slot). Sleeps until woken by an accepted push, until the next
    /// delivery is due, or at most the poll interval.
    async fn run(self: Arc<Self>) {
        // On a store several processes share, another one's leases are its
        // own: they run out by themselves if it died.
        let released = if self.store.is_shared() { Ok(0) } else { self.store.release_all_leases().await };
        match released {
            Ok(0) => {}
            Ok(released) => {
                tracing::info!(deliveries = released, "resuming deliveries a previous run had not finished")
            }
            Err(error) => tracing::error!(error = %error, "cannot release old leases; they will run out by themselves"),
        }
        let poll = i64::try_from(self.settings.poll_interval_ms).unwrap_or(1000);
        let heartbeat = tokio::spawn(Arc::clone(&self).renew_leases());
        let _heartbeat = AbortOnDrop(heartbeat);
        let _fan_out = AbortOnDrop(tokio::spawn(Arc::clone(&self).fan_out_journal()));
        let _pauses = self.store.is_shared().then(|| AbortOnDrop(tokio::spawn(Arc::clone(&self).share_pauses())));
        let _listener = self.store.is_shared().then(|| AbortOnDrop(tokio::spawn(Arc::clone(&self).listen_for_work())));
        let slots = SendSlots::new(self.settings.concurrency);
        // Sends outlive the batch that claimed them: the next batch is claimed
        // as soon as the last one is under way, not when its slowest send ends.
        let mut running = tokio::task::JoinSet::new();
        let mut next_housekeeping = self.now_ms();
        loop {
            while running.try_join_next().is_some() {}
            if self.handle.is_draining() {
                // What is under way finishes and is recorded; nothing new is claimed.
                while running.join_next().await.is_some() {}
                tracing::info!("delivery worker drained: every send under way finished and was recorded");
                return;
            }
            let now = self.now_ms();
            if now >= next_housekeeping {
                self.forget_old_history(now).await;
                next_housekeeping = now + HOUSEKEEPING_INTERVAL_MS;
            }
            match self.claim(now).await {
                Ok(batch) if !batch.is_empty() => {
                    self.track(&batch);
                    self.refresh_pauses_for(&batch).await;
                    for delivery in batch {
                        let Ok(slot) = slots.take().await else { return };
                        let worker = Arc::clone(&self);
                        running.spawn(async move { worker.deliver(delivery, slot).await });
                    }
                    continue;
                }
                Ok(_) => {}
                Err(error) => tracing::error!(error = %error, "cannot claim deliveries; trying again shortly"),
            }
            self.report_queue_depth().await;
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

    /// Fans out the journal as pushes are journaled, a bounded batch at a
    /// time, on a task of its own: a claim never waits for the fan-out (it
    /// leases what is planned so far, woken after each batch), and the
    /// fan-out of a big room goes on while its first pieces are being sent.
    async fn fan_out_journal(self: Arc<Self>) {
        let poll = Duration::from_millis(self.settings.poll_interval_ms);
        loop {
            match self.store.fan_out_step().await {
                Ok(more) => {
                    self.handle.wake_claims();
                    if more {
                        continue;
                    }
                }
                Err(error) => tracing::error!(error = %error, "cannot fan out the journal; trying again shortly"),
            }
            tokio::select! {
                () = self.handle.journaled.notified() => {}
                () = tokio::time::sleep(poll) => {}
            }
        }
    }

    /// Leases a batch of due deliveries, in a `claim` span.
    #[tracing::instrument(level = "debug", name = "claim", skip(self))]
    async fn claim(&self, now: i64) -> Result<Vec<ClaimedDelivery>, pushgate_store::StoreError> {
        let claimed = self.store.claim_due_deliveries(now, self.settings.batch, self.lease_ms()).await;
        if let Ok(batch) = &claimed
            && !batch.is_empty()
        {
            tracing::debug!(deliveries = batch.len(), "claimed");
        }
        claimed
    }

    async fn report_queue_depth(&self) {
        self.metrics.coalesced(self.store.coalescing_counts());
        if let Ok(depth) = self.store.queue_depth().await {
            self.metrics.queue_depth(depth);
        }
    }

    /// Releases what this worker has claimed and not recorded (a stop that
    /// could not wait for it): due again at once, here or on another node.
    /// Answers how many.
    pub async fn release_in_flight(&self) -> usize {
        let held: Vec<DeliveryRef> = self.lock_in_flight().iter().copied().collect();
        if held.is_empty() {
            return 0;
        }
        if let Err(error) = self.store.release_leases(&held).await {
            tracing::warn!(error = %error, "cannot release the deliveries under way; their leases run out by themselves");
        }
        held.len()
    }

    fn lock_in_flight(&self) -> std::sync::MutexGuard<'_, HashSet<DeliveryRef>> {
        self.in_flight.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn track(&self, batch: &[ClaimedDelivery]) {
        self.lock_in_flight().extend(batch.iter().map(|delivery| delivery.id));
    }

    /// Every third of a lease, extends the leases of what is claimed and not
    /// recorded yet, so a send that waits (rate limiter, paused provider,
    /// slow provider) is never taken up again while it is still on its way.
    async fn renew_leases(self: Arc<Self>) {
        let period = Duration::from_millis((self.settings.lease_ms / 3).max(1));
        loop {
            tokio::time::sleep(period).await;
            let held: Vec<DeliveryRef> = self.lock_in_flight().iter().copied().collect();
            if held.is_empty() {
                continue;
            }
            let until = self.now_ms() + self.lease_ms();
            if let Err(error) = self.store.renew_leases(&held, until).await {
                tracing::warn!(error = %error, deliveries = held.len(), "cannot renew leases; trying again shortly");
            }
        }
    }

    /// Wakes the claim loop whenever another node sharing the store
    /// announces work (an API node accepted a push), so a worker node does
    /// not wait for its next poll.
    async fn listen_for_work(self: Arc<Self>) {
        let Some(cluster) = self.store.cluster() else { return };
        let wake = || self.handle.wake();
        loop {
            if let Err(error) = cluster.wait_for_work(&wake).await {
                tracing::warn!(error = %error, "stopped hearing of other nodes' work; polling until listening again");
            }
            tokio::time::sleep(PAUSE_SYNC_INTERVAL).await;
        }
    }

    /// Every second, takes on the provider pauses other nodes sharing the
    /// store opened or closed.
    async fn share_pauses(self: Arc<Self>) {
        let Some(cluster) = self.store.cluster() else { return };
        loop {
            tokio::time::sleep(PAUSE_SYNC_INTERVAL).await;
            self.adopt_shared_pauses(cluster).await;
        }
    }

    /// Takes on the provider pauses of the store every node shares, as they
    /// are now.
    async fn adopt_shared_pauses(&self, cluster: &dyn Cluster) {
        let read_at = self.now_ms();
        let shared = match cluster.provider_pauses().await {
            Ok(shared) => shared,
            Err(error) => {
                tracing::warn!(error = %error, "cannot read the other nodes' provider pauses; trying again shortly");
                return;
            }
        };
        let adopted = self.handle.pauses.adopt(&shared, read_at);
        for (app, provider, reason) in adopted.paused {
            self.metrics.provider_paused(&app, provider, true);
            tracing::warn!(app.id = %app, %provider, provider.reason = %reason, "another node found the provider refusing this app; paused here too");
        }
        for (app, provider) in adopted.resumed {
            self.metrics.provider_paused(&app, provider, false);
            tracing::info!(app.id = %app, %provider, "another node found the provider accepting this app again; resumed here too");
        }
    }

    /// Before a batch that a pause of this node would hold, on a store
    /// several nodes share: reads the shared pauses again. An operator's
    /// resume on another node ends the shared pause before it makes the held
    /// deliveries due, so a batch that claimed them finds the pause gone
    /// instead of holding them again for the pause's remainder (this node
    /// would otherwise learn of the resume only at its next poll).
    async fn refresh_pauses_for(&self, batch: &[ClaimedDelivery]) {
        let Some(cluster) = self.store.cluster() else { return };
        let pauses = &self.handle.pauses;
        if batch.iter().any(|delivery| pauses.is_paused(&delivery.app_id, provider_kind_of(delivery.device_type))) {
            self.adopt_shared_pauses(cluster).await;
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

    /// One attempt of one delivery, in a `deliver` span naming the app, the
    /// push and the device (its steps: `build` and `send` in the provider,
    /// `settle` here), so a trace or a debug log follows a push end to end.
    /// Each attempt continues the trace its push's accept began
    /// ([`pushgate_domain::trace`]), on whichever node it runs.
    async fn deliver(&self, delivery: ClaimedDelivery, slot: Slot) {
        let span = tracing::debug_span!(
            "deliver",
            app.id = %delivery.app_id,
            push.id = %delivery.push_id(),
            device.type = %delivery.device_type
        );
        pushgate_domain::trace::continue_from(&span, delivery.push.trace_parent.as_ref());
        async {
            let now = self.now_ms();
            let (provider, update) = self.attempt(&delivery, now).await;
            // Answered: the send's slot goes to the next delivery while this
            // outcome waits for its group's commit.
            let Slot { send, unrecorded: _unrecorded } = slot;
            drop(send);
            self.conclude(&delivery, provider, update, now).instrument(tracing::debug_span!("settle")).await;
        }
        .instrument(span)
        .await;
    }

    /// Settles an attempt: the provider's outcome turned into the delivery's
    /// next state (pausing or resuming the provider, pruning the device),
    /// counted, and recorded.
    async fn conclude(
        &self,
        delivery: &ClaimedDelivery,
        provider: Option<ProviderKind>,
        update: Result<DeliveryUpdate, (ProviderKind, Outcome)>,
        now: i64,
    ) {
        let update = match update {
            Ok(update) => update,
            Err((provider, outcome)) => {
                self.handle.reach.record(&delivery.app_id, provider, &outcome, now);
                // A retry's delay (a `Retry-After` above all) counts from the
                // answer, not from the start of the attempt: time spent on the
                // rate limiter or on the send itself must not shorten it.
                let answered = self.now_ms();
                self.settle(delivery, provider, &outcome, answered).await
            }
        };
        // The metric's reason label is the reason's short code (the
        // provider's own, never the free text it may add), so the number of
        // series stays bounded.
        let label_reason = update.reason.as_ref().map(|reason| reason.code().into_owned()).unwrap_or_default();
        let result = match update.status {
            DeliveryStatus::Retrying if !update.attempted => "paused",
            DeliveryStatus::Retrying => "retried",
            other => other.as_str(),
        };
        let label_reason = if update.status == DeliveryStatus::Delivered { "" } else { label_reason.as_str() };
        self.metrics.attempt(&delivery.app_id, provider, result, label_reason);
        if update.status == DeliveryStatus::Delivered && delivery.is_chat_alert() {
            self.metrics.chat_alert(&delivery.app_id, delivery.summary.is_some());
        }
        if update.status != DeliveryStatus::Retrying {
            let accepted_ms = delivery.push_id().accepted_at_ms().unwrap_or(now);
            self.metrics.latency(&delivery.app_id, (self.now_ms() - accepted_ms).max(0) as f64 / 1000.0);
        }
        let recorded = self.store.record_attempt(delivery.id, &update).await;
        tracing::debug!(status = update.status.as_str(), reason = ?update.reason.as_ref().map(ToString::to_string), "recorded");
        // Recorded, or not (its lease then runs out and it is sent again):
        // either way this worker no longer holds it.
        self.lock_in_flight().remove(&delivery.id);
        if let Err(error) = recorded {
            // The lease runs out and the delivery is sent again: at-least-once.
            tracing::error!(error = %error, "cannot record a delivery outcome");
        } else if update.status == DeliveryStatus::Retrying {
            // The claim loop may be asleep until a later time than this retry's.
            self.handle.wake_claims();
        }
    }

    /// Sends once, through the provider of the delivery's device type. `Ok`
    /// is an update decided without the provider's answer (skipped, expired,
    /// held); `Err` carries the provider's outcome to settle.
    async fn attempt(
        &self,
        delivery: &ClaimedDelivery,
        now: i64,
    ) -> (Option<ProviderKind>, Result<DeliveryUpdate, (ProviderKind, Outcome)>) {
        let final_update = |status, reason: Reason| DeliveryUpdate {
            status,
            reason: Some(reason),
            next_attempt_at_ms: None,
            attempted: false,
            now_ms: now,
        };
        if now > delivery.push.deadline_ms {
            return (None, Ok(final_update(DeliveryStatus::Failed, Reason::Expired)));
        }
        let Some(app) = self.app(&delivery.app_id) else {
            return (None, Ok(final_update(DeliveryStatus::Skipped, Reason::AppNotConfigured)));
        };
        let Some(request) = &delivery.push.request else {
            return (None, Ok(final_update(DeliveryStatus::Failed, Reason::UnreadablePush)));
        };
        let device_type = delivery.device_type;
        if request.dedicated_device() != device_type.is_dedicated().then_some(device_type) {
            return (None, Ok(final_update(DeliveryStatus::Skipped, Reason::NotForDeviceType)));
        }
        let kind = provider_kind_of(delivery.device_type);
        let Some(provider) = app.providers.get(&kind) else {
            let reason = Reason::ProviderNotConfigured(kind);
            tracing::info!(%reason, "skipped a delivery");
            return (Some(kind), Ok(final_update(DeliveryStatus::Skipped, reason)));
        };
        let admit = || self.held(delivery, kind, now);
        match provider.send(delivery, request, &app.chat_style, now, &admit).await {
            Sent::Answered(outcome) => (Some(kind), Err((kind, outcome))),
            Sent::Skipped(reason) => (Some(kind), Ok(final_update(DeliveryStatus::Skipped, reason))),
            Sent::Held(update) => (Some(kind), Ok(update)),
        }
    }

    /// `Some(update)` holding the delivery back while its provider is paused
    /// for the app; `None` when it may go (as the probe, or normally).
    fn held(&self, delivery: &ClaimedDelivery, provider: ProviderKind, now: i64) -> Option<DeliveryUpdate> {
        match self.handle.pauses.gate(&delivery.app_id, provider, now) {
            Gate::Open | Gate::Probe => None,
            Gate::Held { until_ms, reason } => {
                Some(retry_at(delivery, Reason::Paused(Box::new(Reason::parse(&reason))), until_ms, false, now))
            }
        }
    }

    /// Removes the delivery's device, unless it changed token or registered
    /// again after `invalid_since_ms`; answers whether it went.
    async fn prune(&self, delivery: &ClaimedDelivery, invalid_since_ms: Option<i64>) -> Result<bool, StoreError> {
        let (app, device_type, device, token) =
            (&delivery.app_id, delivery.device_type, &delivery.device_id, &delivery.token);
        self.store.prune_device(app, device_type, device, token, invalid_since_ms).await
    }

    /// Turns a provider outcome into the delivery's next state, and opens or
    /// closes the provider's pause for the app.
    async fn settle(
        &self,
        delivery: &ClaimedDelivery,
        provider: ProviderKind,
        outcome: &Outcome,
        now: i64,
    ) -> DeliveryUpdate {
        let app = &delivery.app_id;
        if let Outcome::AppRejected { reason } = outcome {
            let reason_text = reason.to_string();
            let base = i64::try_from(self.settings.pause_base_ms).unwrap_or(30_000);
            let max = i64::try_from(self.settings.pause_max_ms).unwrap_or(600_000);
            let until = match self.store.cluster() {
                None => self.handle.pauses.refused(app, provider, &reason_text, now, base, max),
                Some(cluster) => {
                    let pause = SharedPause { app_id: app.clone(), provider, reason: reason_text.clone(), until_ms: 0 };
                    match cluster.pause_provider(&pause, now, base, max).await {
                        Ok(until) => {
                            self.handle.pauses.hold(app, provider, &reason_text, until, now);
                            until
                        }
                        Err(error) => {
                            tracing::warn!(error = %error, "cannot pause the provider for the other nodes; pausing it here");
                            self.handle.pauses.refused(app, provider, &reason_text, now, base, max)
                        }
                    }
                }
            };
            self.metrics.provider_paused(app, provider, true);
            tracing::error!(app.id = %app, %provider, provider.reason = %reason, "the provider refuses this app's credentials or configuration; paused, tokens kept");
            return retry_at(delivery, reason.clone(), until, true, now);
        }
        if self.handle.pauses.answered(app, provider) {
            if let Some(cluster) = self.store.cluster()
                && let Err(error) = cluster.resume_provider(app, provider).await
            {
                // The other nodes probe for themselves when their pause ends.
                tracing::warn!(error = %error, "cannot resume the provider for the other nodes");
            }
            self.metrics.provider_paused(app, provider, false);
            tracing::info!(app.id = %app, %provider, "the provider accepts this app again; resumed");
        }
        let update = |status, reason: Option<Reason>, next: Option<i64>| DeliveryUpdate {
            status,
            reason,
            next_attempt_at_ms: next,
            attempted: true,
            now_ms: now,
        };
        match outcome {
            Outcome::Delivered => {
                if ends_an_activity(delivery) {
                    // An ended activity takes no more pushes: its token goes
                    // (as a pruned one would), so "every activity" stays the live ones.
                    if let Err(error) = self.prune(delivery, None).await {
                        tracing::warn!(error = %error, "cannot forget an ended Live Activity's token");
                    }
                }
                update(DeliveryStatus::Delivered, None, None)
            }
            Outcome::Rejected { reason } => update(DeliveryStatus::Failed, Some(reason.clone()), None),
            Outcome::InvalidToken { reason, invalid_since_ms } => match self.prune(delivery, *invalid_since_ms).await {
                Ok(true) => {
                    tracing::info!(client.id = %delivery.client_id, provider.reason = %reason, "pruned a device with an invalid token");
                    update(DeliveryStatus::Pruned, Some(reason.clone()), None)
                }
                Ok(false) => {
                    update(DeliveryStatus::Failed, Some(Reason::KeptRegisteredAgain(Box::new(reason.clone()))), None)
                }
                Err(error) => {
                    tracing::error!(error = %error, "cannot prune a device");
                    update(DeliveryStatus::Failed, Some(reason.clone()), None)
                }
            },
            Outcome::Retry { reason, after } => {
                let max_attempts =
                    self.app(&delivery.app_id).map_or(self.settings.max_attempts, |app| app.max_attempts);
                schedule_retry(&self.settings, max_attempts, delivery, reason, *after, now)
            }
            Outcome::AppRejected { .. } => unreachable!("handled above"),
        }
    }
}

/// Whether the delivery is the `end` of the Live Activity its device is.
fn ends_an_activity(delivery: &ClaimedDelivery) -> bool {
    delivery.device_type == DeviceType::IosLiveActivity
        && matches!(&delivery.push.request, Some(PushRequest::LiveActivity(push)) if push.event == LiveActivityEvent::End)
}

/// How many deliveries the loop has under way: `send` bounds the requests
/// in flight (released when the provider answers), `unrecorded` the
/// deliveries whose outcome is not committed yet (released once it is), so
/// a send never waits for the commit of the one before it, and the
/// outcomes waiting for the store stay bounded.
struct SendSlots {
    send: Arc<tokio::sync::Semaphore>,
    unrecorded: Arc<tokio::sync::Semaphore>,
}

/// Outcomes waiting for their commit, per send slot.
const UNRECORDED_PER_SLOT: usize = 4;

impl SendSlots {
    fn new(concurrency: usize) -> Self {
        let semaphore = |permits| Arc::new(tokio::sync::Semaphore::new(permits));
        Self { send: semaphore(concurrency), unrecorded: semaphore(concurrency * UNRECORDED_PER_SLOT) }
    }

    async fn take(&self) -> Result<Slot, tokio::sync::AcquireError> {
        let unrecorded = Some(Arc::clone(&self.unrecorded).acquire_owned().await?);
        let send = Some(Arc::clone(&self.send).acquire_owned().await?);
        Ok(Slot { send, unrecorded })
    }
}

/// One delivery's share of [`SendSlots`] (none when driven by `run_pending`).
#[derive(Default)]
struct Slot {
    send: Option<tokio::sync::OwnedSemaphorePermit>,
    unrecorded: Option<tokio::sync::OwnedSemaphorePermit>,
}

/// Aborts a task when dropped: the heartbeat ends with the worker's loop.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Holds the handle's running flag up while the worker's task lives; lowers
/// it when the task ends for any reason (stop, abort, panic).
struct RunningFlag(Arc<DeliveryHandle>);

impl RunningFlag {
    fn raise(handle: Arc<DeliveryHandle>) -> Self {
        handle.set_running(true);
        Self(handle)
    }
}

impl Drop for RunningFlag {
    fn drop(&mut self) {
        self.0.set_running(false);
    }
}
