//! The behaviour every [`Store`] implementation must show.
//!
//! Each backend's tests call [`run_all`] on a fresh, empty store. The checks
//! use `assert!`, so a failure points at the broken expectation.

use crate::{
    ApiKeyKind, BadgePlan, CallbackKey, ClaimedDelivery, ClientPrefs, Coalescing, CoalescingCounts, DeliveryStatus,
    DeliveryUpdate, DeviceTarget, ExperimentPlan, NewDevice, NewPush, RoutingPlan, SourceChange, Store, StoreError,
    StoredApiKey,
};
use pushgate_domain::{
    AppId, BadgeSource, ChatMessage, ClientId, CustomPush, DeliveryMode, DeviceId, DeviceType, Environment, Experiment,
    ExperimentId, Locale, OnlinePolicy, PushId, PushRequest, PushToken, QuietHours, Reason, RoomId, RoomNotify,
    Summary, TimeZoneName,
};
use std::collections::BTreeSet;
use std::sync::Arc;

const APNS_TOKEN_A: &str = "aa11111111111111111111111111111111111111111111111111111111111111";
const APNS_TOKEN_B: &str = "bb22222222222222222222222222222222222222222222222222222222222222";

fn parse<T, E: std::fmt::Debug>(result: Result<T, E>) -> T {
    result.expect("conformance fixtures are valid")
}

/// A device registration without environment, locale, time zone or key.
pub fn device(
    app: &str,
    device_type: DeviceType,
    device_id: &str,
    client: &str,
    token: &str,
    now_ms: i64,
) -> NewDevice {
    NewDevice {
        app_id: parse(AppId::parse(app)),
        device_type,
        device_id: parse(DeviceId::parse(device_id)),
        client_id: parse(ClientId::parse(client)),
        token: parse(PushToken::parse(device_type, token)),
        environment: None,
        locale: None,
        timezone: None,
        push_key: None,
        now_ms,
    }
}

fn ids(app: &str, client: &str) -> (AppId, ClientId) {
    (parse(AppId::parse(app)), parse(ClientId::parse(client)))
}

/// Runs every check below against an empty store.
pub async fn run_all(store: Arc<dyn Store>) {
    ping_succeeds(&*store).await;
    a_subscribed_device_is_listed_for_its_client(&*store).await;
    subscribing_again_updates_the_same_device(&*store).await;
    optional_fields_are_kept_when_a_later_subscribe_omits_them(&*store).await;
    a_token_registered_by_another_client_moves_to_it(&*store).await;
    android_and_fcm_devices_share_one_token_space(&*store).await;
    removing_a_device_counts_what_went(&*store).await;
    apps_do_not_see_each_others_devices(&*store).await;
    an_apps_devices_are_read_page_by_page(&*store).await;
    api_keys_are_kept_and_listed(&*store).await;
    a_push_is_accepted_with_one_delivery_per_device(&*store).await;
    a_big_room_is_fanned_out_a_piece_at_a_time(&*store).await;
    dedicated_tokens_get_pushes_of_their_type_only(&*store).await;
    a_claimed_delivery_is_not_claimed_again_until_its_lease_ends(&*store).await;
    a_pushs_trace_context_reaches_its_claimed_deliveries(&*store).await;
    recorded_attempts_show_in_the_push_view(&*store).await;
    a_push_taken_up_again_after_its_lease_hands_out_only_what_has_no_outcome(&*store).await;
    pruning_spares_a_device_that_registered_again(&*store).await;
    a_callback_is_accepted_once(&*store).await;
    badges_count_room_unreads_and_sources(&*store).await;
    pushes_fanned_out_together_carry_the_badges_of_one_by_one(&*store).await;
    housekeeping_forgets_old_finished_pushes_and_callbacks_only(&*store).await;
    routed_pushes_record_each_clients_route(&*store).await;
    experiments_count_per_variant_and_opens(&*store).await;
    a_busy_rooms_alerts_are_held_and_end_as_one_per_window(&*store).await;
    an_app_keeps_one_generated_key_whoever_generates_it(Arc::clone(&store)).await;
    concurrent_subscribes_of_one_token_leave_exactly_one_holder(store).await;
}

/// A push id for a test push named `name`: a UUIDv7 whose time is 0 and
/// whose random part is a digest of the name, so a test can name its pushes.
pub fn push_id(name: &str) -> PushId {
    // FNV-1a, 64 bits: stable, and no dependency for it.
    let digest = name
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3));
    parse(PushId::parse(&format!("00000000-0000-7000-8000-{:012x}", digest & 0xffff_ffff_ffff)))
}

/// A push2clients push named `name` to `clients`, accepted at `now_ms`.
pub fn new_push(app: &str, name: &str, clients: &[&str], now_ms: i64) -> NewPush {
    NewPush::new(
        push_id(name),
        parse(AppId::parse(app)),
        PushRequest::Custom(CustomPush::default()),
        clients.iter().map(|client| parse(ClientId::parse(client))).collect(),
        now_ms,
        now_ms + 86_400_000,
    )
}

/// A v2 callback's push named `name`: message `message_id` in `room` to
/// `clients`, counting an unread for each.
pub fn callback_push(app: &str, name: &str, message_id: &str, clients: &[&str], room: &str, now_ms: i64) -> NewPush {
    let body = serde_json::json!({ "_id": message_id, "appID": app, "room": room });
    let message = parse(ChatMessage::parse(body.as_object().expect("an object")));
    NewPush { request: PushRequest::Chat(message), ..new_push(app, name, clients, now_ms) }
        .with_callback(CallbackKey { message_id: message_id.to_owned(), to_client: None })
        .with_badge(BadgePlan::CountUnread(parse(RoomId::parse(room))), true)
}

/// A claim as the worker makes it: what is journaled is fanned out first
/// (the worker's fan-out task), then due deliveries are leased.
async fn claim(store: &dyn Store, now_ms: i64, limit: u32, lease_ms: i64) -> Result<Vec<ClaimedDelivery>, StoreError> {
    while store.fan_out_step().await? {}
    store.claim_due_deliveries(now_ms, limit, lease_ms).await
}

async fn a_callback_is_accepted_once(store: &dyn Store) {
    let first = store.accept_push(&callback_push("once", "c1", "m1", &["alice"], "r", 1)).await.expect("first");
    assert_eq!(first.duplicate_of, None);
    let again = store.accept_push(&callback_push("once", "c2", "m1", &["alice"], "r", 2)).await.expect("again");
    assert_eq!(again.duplicate_of, Some(push_id("c1")), "the earlier push is answered");
    let app = parse(AppId::parse("once"));
    assert!(store.push_view(&app, &push_id("c2")).await.expect("view").is_none(), "nothing stored for the duplicate");
    let badge = store.badge(&app, &parse(ClientId::parse("alice")), true, 0).await.expect("badge");
    assert_eq!(badge.total, 1, "counted once");
    // v1: one callback per recipient, so the recipient is part of the key.
    let v1 = |name: &str, client: &str| {
        new_push("once", name, &[client], 3)
            .with_callback(CallbackKey { message_id: "m2".into(), to_client: Some(parse(ClientId::parse(client))) })
            .with_badge(BadgePlan::Given(5), true)
    };
    assert_eq!(store.accept_push(&v1("v1-a", "alice")).await.expect("a").duplicate_of, None);
    assert_eq!(store.accept_push(&v1("v1-b", "bob")).await.expect("b").duplicate_of, None);
    assert_eq!(store.accept_push(&v1("v1-c", "bob")).await.expect("c").duplicate_of, Some(push_id("v1-b")));
    // Another app's message with the same id is another message.
    assert_eq!(
        store.accept_push(&callback_push("twice", "c3", "m1", &["alice"], "r", 4)).await.expect("b").duplicate_of,
        None
    );
}

async fn routed_pushes_record_each_clients_route(store: &dyn Store) {
    let now = 1_795_357_800_000; // 14:30 UTC
    for (client, token) in [
        ("on", "fcm-r-on"),
        ("off", "fcm-r-off"),
        ("muted", "fcm-r-muted"),
        ("online", "fcm-r-online"),
        ("night", "fcm-r-night"),
        ("quiet-one", "fcm-r-quiet-one"),
        ("named", "fcm-r-named"),
    ] {
        store.upsert_device(&device("route", DeviceType::Fcm, token, client, token, 1)).await.expect("device");
    }
    let (app, off) = ids("route", "off");
    let room = parse(RoomId::parse("r"));
    let client = |name: &str| parse(ClientId::parse(name));
    store
        .set_client_prefs(&app, &off, &ClientPrefs { push_enabled: false, ..ClientPrefs::default() }, 1)
        .await
        .expect("prefs");
    store.set_room_pref(&app, &client("muted"), &room, RoomNotify::None, None, 1).await.expect("mute");
    let ran_out = Some(now - 1);
    store.set_room_pref(&app, &client("on"), &room, RoomNotify::None, ran_out, 1).await.expect("a mute that ran out");
    for mentions_only in ["quiet-one", "named"] {
        store.set_room_pref(&app, &client(mentions_only), &room, RoomNotify::Mentions, None, 1).await.expect("pref");
    }
    store.set_presence(&app, &client("online"), Some(now + 60_000)).await.expect("online");
    store.set_presence(&app, &client("on"), Some(now - 1)).await.expect("presence that ran out");
    let night = ClientPrefs {
        quiet_hours: Some(parse(QuietHours::parse("22:00", "07:00"))),
        timezone: Some(parse(TimeZoneName::parse("Asia/Taipei"))),
        locale: Some(parse(Locale::parse("ja"))),
        ..ClientPrefs::default()
    };
    store.set_client_prefs(&app, &client("night"), &night, 1).await.expect("prefs");
    // Quiet hours without a time zone of its own: its device updated last
    // gives one (Taipei, 22:30 there), not the older one (UTC, 14:30).
    for (id, zone, at) in [("zoned-old", "UTC", 1), ("zoned-new", "Asia/Taipei", 2)] {
        let zoned = NewDevice {
            timezone: Some(parse(TimeZoneName::parse(zone))),
            ..device("route", DeviceType::Fcm, id, "zoned", id, at)
        };
        store.upsert_device(&zoned).await.expect("device");
    }
    let zoned = ClientPrefs { quiet_hours: night.quiet_hours, ..ClientPrefs::default() };
    store.set_client_prefs(&app, &client("zoned"), &zoned, 1).await.expect("prefs");
    assert_eq!(store.client_prefs(&app, &client("night")).await.expect("read"), night);
    assert_eq!(store.client_prefs(&app, &client("nobody")).await.expect("read"), ClientPrefs::default());
    let everyone = ["on", "off", "muted", "online", "night", "quiet-one", "named", "zoned"];
    let push = callback_push("route", "routed", "routed-m", &everyone, "r", now)
        .with_routing(RoutingPlan { room: room.clone(), online: OnlinePolicy::Silent })
        .with_mentions(vec![client("named")]);
    store.accept_push(&push).await.expect("accept");
    let view = store.push_view(&app, &push_id("routed")).await.expect("view").expect("exists");
    let queued = view.deliveries.iter().filter(|d| d.status == DeliveryStatus::Queued).count();
    assert_eq!(queued, 8, "the client with pushes off gets none");
    let route_of = |name: &str| {
        let delivery = view.deliveries.iter().find(|d| d.client_id == name).expect("a delivery");
        let reason = delivery.reason.as_ref().map(ToString::to_string);
        (delivery.status, delivery.mode, delivery.route_reason.clone().or(reason))
    };
    assert_eq!(route_of("on"), (DeliveryStatus::Queued, Some(DeliveryMode::Alert), None));
    assert_eq!(route_of("off"), (DeliveryStatus::Skipped, None, Some("push turned off by the client".into())));
    assert_eq!(route_of("muted"), (DeliveryStatus::Queued, Some(DeliveryMode::Silent), Some("room muted".into())));
    assert_eq!(route_of("online"), (DeliveryStatus::Queued, Some(DeliveryMode::Silent), Some("client online".into())));
    assert_eq!(route_of("night"), (DeliveryStatus::Queued, Some(DeliveryMode::Quiet), Some("quiet hours".into())));
    assert_eq!(route_of("zoned"), (DeliveryStatus::Queued, Some(DeliveryMode::Quiet), Some("quiet hours".into())));
    let mentions_only = Some("mentions only".into());
    assert_eq!(route_of("quiet-one"), (DeliveryStatus::Queued, Some(DeliveryMode::Silent), mentions_only));
    assert_eq!(route_of("named"), (DeliveryStatus::Queued, Some(DeliveryMode::Alert), None), "a mention alerts");
    let claimed = claim(store, now, 100, 60_000).await.expect("claim");
    let night_delivery = claimed.iter().find(|d| d.push_id() == push_id("routed") && d.client_id.as_str() == "night");
    assert_eq!(
        night_delivery.and_then(|d| d.locale.clone()),
        Some(parse(Locale::parse("ja"))),
        "the client's locale wins"
    );
    // A muted room's unreads count in the badge only when the app says so.
    let muted = client("muted");
    assert_eq!(store.badge(&app, &muted, true, now).await.expect("badge").total, 1);
    let without_muted = store.badge(&app, &muted, false, now).await.expect("badge");
    assert_eq!((without_muted.total, without_muted.rooms.get("r")), (0, Some(&1)));
    assert_eq!(store.badge(&app, &client("on"), false, now).await.expect("badge").total, 1, "that mute ran out");
}

/// Coalescing, on one room: the first message alerts, the next ones in its
/// window are held (a newer one merging the one before), a mention and a
/// VoIP device are never held, the window's end (even one that passed while
/// nothing ran) sends the latest with the run's count and senders, and a
/// read cancels what is held.
async fn a_busy_rooms_alerts_are_held_and_end_as_one_per_window(store: &dyn Store) {
    let app = parse(AppId::parse("coal"));
    let room = parse(RoomId::parse("busy"));
    for (kind, id, client, token) in [
        (DeviceType::Ios, "iphone", "alice", APNS_TOKEN_A),
        (DeviceType::IosVoip, "voip", "alice", APNS_TOKEN_B),
        (DeviceType::Fcm, "pixel-a", "alice", "fcm-coal-alice"),
        (DeviceType::Fcm, "pixel-b", "bob", "fcm-coal-bob"),
    ] {
        store.upsert_device(&device("coal", kind, id, client, token, 1)).await.expect("device");
    }
    let t0 = 1_000_000;
    let message = |name: &str, sender: &str, at: i64| {
        callback_push("coal", name, name, &["alice", "bob"], "busy", t0 + at)
            .with_routing(RoutingPlan { room: room.clone(), online: OnlinePolicy::Silent })
            .with_coalescing(Coalescing { window_ms: 10_000, sender: Some(sender.to_owned()) })
    };
    let statuses = async |name: &str| {
        let view = store.push_view(&app, &push_id(name)).await.expect("view").expect("exists");
        let mut statuses: Vec<_> = view
            .deliveries
            .iter()
            .map(|d| (format!("{}/{}", d.client_id, d.device_id.as_deref().unwrap_or("-")), d.status, d.carried_by))
            .collect();
        statuses.sort_by(|a, b| a.0.cmp(&b.0));
        statuses
    };
    let claim = async |at: i64, names: &[&str]| {
        let ids: Vec<_> = names.iter().map(|name| push_id(name)).collect();
        let mut claimed: Vec<_> = claim(store, t0 + at, 1000, 60_000)
            .await
            .expect("claim")
            .into_iter()
            .filter(|d| ids.contains(&d.push_id()))
            .map(|d| (format!("{}/{}", d.client_id, d.device_id), d.summary))
            .collect();
        claimed.sort_by(|a, b| a.0.cmp(&b.0));
        claimed
    };
    use DeliveryStatus::{Coalesced, Held, Queued, Skipped};
    store.accept_push(&message("m1", "Dan", 0)).await.expect("m1");
    let all_queued = |carried| {
        ["alice/iphone", "alice/pixel-a", "alice/voip", "bob/pixel-b"]
            .map(|device| (device.to_owned(), Queued, carried))
    };
    assert_eq!(statuses("m1").await, all_queued(None), "a quiet room's first message alerts at once");
    store
        .accept_push(&message("m2", "Bob", 1_000).with_mentions(vec![parse(ClientId::parse("bob"))]))
        .await
        .expect("m2");
    let m2 = statuses("m2").await;
    assert_eq!(
        m2.iter().map(|(device, status, _)| (device.as_str(), *status)).collect::<Vec<_>>(),
        [("alice/iphone", Held), ("alice/pixel-a", Held), ("alice/voip", Queued), ("bob/pixel-b", Queued)],
        "held in the window, but never a VoIP push nor a mention"
    );
    store.accept_push(&message("m3", "Carol", 2_000)).await.expect("m3");
    assert_eq!(statuses("m2").await[0], ("alice/iphone".into(), Coalesced, Some(push_id("m3"))), "merged");
    assert_eq!(claim(9_999, &["m3"]).await, [("alice/voip".to_owned(), None)], "held: not due before the window ends");
    // The window's end passed while nothing ran: a message then still joins it.
    store.accept_push(&message("m4", "Carol", 15_000)).await.expect("m4");
    assert_eq!(statuses("m2").await[0].2, Some(push_id("m4")), "the last of the run carries the merged ones");
    assert_eq!(store.queue_depth().await.expect("depth").held, 3);
    let summary =
        |count, senders: &[&str]| Some(Summary { count, senders: senders.iter().map(|s| s.to_string()).collect() });
    assert_eq!(
        claim(15_000, &["m3", "m4"]).await,
        [
            ("alice/iphone".to_owned(), summary(4, &["Carol", "Bob", "Dan"])),
            ("alice/pixel-a".to_owned(), summary(4, &["Carol", "Bob", "Dan"])),
            ("alice/voip".to_owned(), None),
            ("bob/pixel-b".to_owned(), summary(4, &["Carol", "Dan"])),
        ],
        "one alert for the run: the room's 4 unreads, the latest sender first"
    );
    // A new window opened at the end: the next message is held, and a read cancels it.
    store.accept_push(&message("m5", "Dan", 16_000)).await.expect("m5");
    store.mark_room_read(&app, &parse(ClientId::parse("alice")), &room, t0 + 17_000).await.expect("read");
    let read = Some(Reason::ReadBeforeSent);
    let view = store.push_view(&app, &push_id("m5")).await.expect("view").expect("exists");
    let alice: Vec<_> =
        view.deliveries.iter().filter(|d| d.client_id == "alice" && d.device_id.as_deref() != Some("voip")).collect();
    assert!(alice.iter().all(|d| d.status == Skipped && d.reason == read), "{alice:?}");
    store.accept_push(&message("m6", "Dan", 18_000)).await.expect("m6");
    let m6 = statuses("m6").await;
    assert_eq!(m6[0], ("alice/iphone".into(), Queued, None), "after a read the room alerts at once");
    assert_eq!(m6[3], ("bob/pixel-b".into(), Held, None));
    // A read through the fan-out (a clear push) ends bob's window too, and
    // leaves the device it was made on out.
    let clear = NewPush::new(
        push_id("clear"),
        app.clone(),
        PushRequest::Clear { room: room.clone() },
        vec![parse(ClientId::parse("bob"))],
        t0 + 19_000,
        t0 + 100_000,
    )
    .with_badge(BadgePlan::ClearRoom(room.clone()), true)
    .except_device(parse(DeviceId::parse("pixel-b")));
    store.accept_push(&clear).await.expect("clear");
    assert_eq!(statuses("m6").await[3].1, Skipped);
    assert!(statuses("clear").await.iter().all(|(device, _, _)| device == "bob/-"), "the reading device gets none");
    assert_eq!(store.queue_depth().await.expect("depth").held, 0);
    assert_eq!(
        store.coalescing_counts(),
        CoalescingCounts { held: 12, merged: 6, cancelled: 3 },
        "m2 held 2; m3 merged 2, held 3; m4 merged 3, held 3; m5 held 3; the read cancelled 2; m6 merged 1, held 1; \
         the clear cancelled 1"
    );
    assert_eq!(store.next_due_at().await.expect("due").map(|due| due > t0 + 19_000), Some(false), "no window left due");
}

async fn experiments_count_per_variant_and_opens(store: &dyn Store) {
    let app = parse(AppId::parse("exp"));
    let id = parse(ExperimentId::parse("copy-1"));
    let experiment =
        |variants: &str| -> Experiment { parse(serde_json::from_str(&format!(r#"{{"variants":[{variants}]}}"#))) };
    let (first, second) = (
        experiment(r#"{"name":"control","weight":1}"#),
        experiment(r#"{"name":"control","weight":1},{"name":"short","weight":1,"title":"{sender}"}"#),
    );
    store.put_experiment(&app, &id, &first, 1).await.expect("put");
    store.put_experiment(&app, &id, &second, 2).await.expect("replace");
    assert_eq!(store.experiments(&app).await.expect("list"), [(id.clone(), second.clone())]);
    for client in ["a1", "a2", "b1"] {
        store
            .upsert_device(&device("exp", DeviceType::Fcm, client, client, &format!("fcm-exp-{client}"), 1))
            .await
            .expect("device");
    }
    let variants = [("a1", "control"), ("a2", "control"), ("b1", "short"), ("nodevice", "short")]
        .into_iter()
        .map(|(client, variant)| (parse(ClientId::parse(client)), variant.to_owned()))
        .collect();
    let push = new_push("exp", "exp-push", &["a1", "a2", "b1", "nodevice"], 10)
        .with_experiment(ExperimentPlan { id: id.clone(), variants }, second.clone());
    store.accept_push(&push).await.expect("accept");
    let claimed = claim(store, i64::MAX / 4, 1000, 60_000).await.expect("claim");
    for delivery in claimed.iter().filter(|d| d.push_id() == push_id("exp-push")) {
        assert_eq!(delivery.push.experiment.as_ref(), Some(&second), "the experiment rides along");
        let variant = delivery.variant().map(|variant| variant.name.clone()).expect("a variant of it");
        let status =
            if delivery.client_id.as_str() == "a2" { DeliveryStatus::Failed } else { DeliveryStatus::Delivered };
        let update = DeliveryUpdate { status, reason: None, next_attempt_at_ms: None, attempted: true, now_ms: 20 };
        store.record_attempt(delivery.id, &update).await.expect("record");
        assert_eq!(variant, if delivery.client_id.as_str() == "b1" { "short" } else { "control" });
    }
    assert!(store.record_open(&app, &push_id("exp-push"), &parse(ClientId::parse("a1")), 30).await.expect("open"));
    assert!(
        store.record_open(&app, &push_id("exp-push"), &parse(ClientId::parse("a1")), 31).await.expect("again"),
        "idempotent"
    );
    assert!(
        !store.record_open(&app, &push_id("no-such-push"), &parse(ClientId::parse("a1")), 31).await.expect("unknown")
    );
    let stats = store.experiment_stats(&app, &id).await.expect("stats");
    let figures: Vec<_> =
        stats.iter().map(|v| (v.variant.as_str(), v.targeted, v.delivered, v.failed, v.opened)).collect();
    assert_eq!(figures, [("control", 2, 1, 1, 1), ("short", 1, 1, 0, 0)], "a client without devices is not targeted");
}

async fn housekeeping_forgets_old_finished_pushes_and_callbacks_only(store: &dyn Store) {
    store.upsert_device(&device("forget", DeviceType::Fcm, "pixel", "alice", "fcm-forget", 1)).await.expect("pixel");
    let app = parse(AppId::parse("forget"));
    // Claim whatever earlier checks left due, so only this check's pushes are in play.
    claim(store, i64::MAX / 2, 10_000, 1).await.expect("claim");
    store.accept_push(&callback_push("forget", "old-done", "old-m", &["alice"], "r", 10)).await.expect("accept");
    store.accept_push(&callback_push("forget", "old-pending", "old-p", &["alice"], "r", 11)).await.expect("accept");
    store.accept_push(&callback_push("forget", "new-done", "new-m", &["alice"], "r", 5_000)).await.expect("accept");
    let claimed = claim(store, i64::MAX / 2 + 1, 100, 60_000).await.expect("claim");
    for delivery in claimed.iter().filter(|delivery| delivery.push_id() != push_id("old-pending")) {
        let update = DeliveryUpdate {
            status: DeliveryStatus::Delivered,
            reason: None,
            next_attempt_at_ms: None,
            attempted: true,
            now_ms: 6_000,
        };
        store.record_attempt(delivery.id, &update).await.expect("record");
    }
    let mut forgotten = (0, 0);
    loop {
        let (pushes, callbacks) = store.forget_before(1_000, 1).await.expect("forget");
        if (pushes, callbacks) == (0, 0) {
            break;
        }
        forgotten = (forgotten.0 + pushes, forgotten.1 + callbacks);
    }
    assert!(forgotten.0 >= 1 && forgotten.1 >= 2, "{forgotten:?}");
    assert!(
        store.push_view(&app, &push_id("old-done")).await.expect("view").is_none(),
        "an old finished push is forgotten"
    );
    assert!(store.push_view(&app, &push_id("old-pending")).await.expect("view").is_some(), "a pending push is kept");
    assert!(store.push_view(&app, &push_id("new-done")).await.expect("view").is_some(), "a recent push is kept");
    let again = store.accept_push(&callback_push("forget", "again", "new-m", &["alice"], "r", 7_000)).await;
    assert_eq!(again.expect("accept").duplicate_of, Some(push_id("new-done")), "recent callback ids are kept");
}

async fn badges_count_room_unreads_and_sources(store: &dyn Store) {
    store.upsert_device(&device("badges", DeviceType::Fcm, "pixel", "alice", "fcm-badges", 1)).await.expect("pixel");
    let (app, alice) = ids("badges", "alice");
    let bob = parse(ClientId::parse("bob"));
    for n in 0..3 {
        let push = callback_push("badges", &format!("b{n}"), &format!("m{n}"), &["alice", "bob"], "r1", 10 + n);
        store.accept_push(&push).await.expect("accept");
    }
    store.accept_push(&callback_push("badges", "b3", "m3", &["alice"], "r2", 20)).await.expect("accept");
    let source = parse(BadgeSource::parse("orders"));
    store.change_badge_source(&app, &alice, &source, SourceChange::Set(2), 21).await.expect("set");
    let badge = store.badge(&app, &alice, true, 0).await.expect("badge");
    assert_eq!(badge.total, 6);
    assert_eq!(badge.rooms.into_iter().collect::<Vec<_>>(), [("r1".to_owned(), 3), ("r2".to_owned(), 1)]);
    assert_eq!(badge.sources.get("orders"), Some(&2));
    assert_eq!(store.badge(&app, &bob, true, 0).await.expect("bob").total, 3);
    // Each delivery carries its client's badge at acceptance.
    let mut claimed = claim(store, 1_000, 100, 60_000).await.expect("claim");
    claimed.retain(|delivery| delivery.app_id == app);
    claimed.sort_by_key(|delivery| delivery.id);
    assert_eq!(claimed.iter().map(|delivery| delivery.badge).collect::<Vec<_>>(), [Some(1), Some(2), Some(3), Some(4)]);
    // A read mark with sync clears the room and carries the new total.
    let read =
        new_push("badges", "read", &["alice"], 30).with_badge(BadgePlan::ClearRoom(parse(RoomId::parse("r1"))), true);
    store.accept_push(&read).await.expect("read");
    let claimed = claim(store, 1_000, 100, 60_000).await.expect("claim");
    assert_eq!(claimed.iter().find(|d| d.push_id() == push_id("read")).map(|d| d.badge), Some(Some(3)));
    store.mark_room_read(&app, &alice, &parse(RoomId::parse("r2")), 31).await.expect("read r2");
    store.change_badge_source(&app, &alice, &source, SourceChange::Add(-5), 32).await.expect("add");
    let badge = store.badge(&app, &alice, true, 0).await.expect("badge");
    assert_eq!((badge.total, badge.rooms.len(), badge.sources.len()), (0, 0, 0), "never below zero");
    store.change_badge_source(&app, &alice, &source, SourceChange::Add(4), 33).await.expect("add");
    assert_eq!(store.badge(&app, &alice, true, 0).await.expect("badge").total, 4);
}

/// Pushes journaled together are fanned out in one batch (on PostgreSQL, a
/// run of them read and written at once): each delivery still carries its
/// client's badge as it was after that push and those before it, a muted
/// room counted or not as that push's app setting says, a read in between
/// clearing what came before it, each push routed on its own.
async fn pushes_fanned_out_together_carry_the_badges_of_one_by_one(store: &dyn Store) {
    for (client, token) in [("alice", "fcm-run-alice"), ("bob", "fcm-run-bob")] {
        store.upsert_device(&device("runs", DeviceType::Fcm, token, client, token, 1)).await.expect("device");
    }
    let (app, alice) = ids("runs", "alice");
    let bob = parse(ClientId::parse("bob"));
    let (loud, quiet) = (parse(RoomId::parse("loud")), parse(RoomId::parse("quiet")));
    store.set_room_pref(&app, &alice, &quiet, RoomNotify::None, None, 1).await.expect("mute");
    store.set_room_pref(&app, &bob, &loud, RoomNotify::Mentions, None, 1).await.expect("mentions only");
    let orders = parse(BadgeSource::parse("orders"));
    store.change_badge_source(&app, &bob, &orders, SourceChange::Set(2), 1).await.expect("source");
    let message = |name: &str, clients: &[&str], room: &RoomId, count_muted: bool| {
        callback_push("runs", name, name, clients, room.as_str(), 10)
            .with_badge(BadgePlan::CountUnread(room.clone()), count_muted)
    };
    let pushes = [
        message("run-1", &["alice", "bob"], &loud, false),
        message("run-2", &["alice", "bob"], &quiet, false),
        message("run-3", &["alice"], &quiet, true),
        new_push("runs", "run-4", &["alice", "bob", "carol"], 10),
        message("run-5", &["alice", "bob", "carol"], &loud, false)
            .with_routing(RoutingPlan { room: loud.clone(), online: OnlinePolicy::Silent }),
        new_push("runs", "run-6", &["alice"], 10).with_badge(BadgePlan::ClearRoom(loud.clone()), false),
        message("run-7", &["alice", "bob"], &loud, false),
    ];
    for push in &pushes {
        store.accept_push(push).await.expect("accept");
    }
    let mut claimed = claim(store, 1_000, 100, 60_000).await.expect("claim");
    claimed.retain(|delivery| delivery.app_id == app);
    let mut badges: Vec<(String, String, Option<u32>, Option<DeliveryMode>)> = claimed
        .iter()
        .map(|delivery| {
            let name = pushes.iter().position(|push| push.push_id == delivery.push_id()).map(|n| n + 1);
            let push = format!("run-{}", name.unwrap_or_default());
            (push, delivery.client_id.to_string(), delivery.badge, delivery.mode)
        })
        .collect();
    badges.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    let (alert, silent) = (Some(DeliveryMode::Alert), Some(DeliveryMode::Silent));
    let expected = [
        ("run-1", "alice", Some(1), None),
        ("run-1", "bob", Some(3), None),
        ("run-2", "alice", Some(1), None),
        ("run-2", "bob", Some(4), None),
        ("run-3", "alice", Some(3), None),
        ("run-4", "alice", None, None),
        ("run-4", "bob", None, None),
        ("run-5", "alice", Some(2), alert),
        ("run-5", "bob", Some(5), silent),
        ("run-6", "alice", Some(0), None),
        ("run-7", "alice", Some(1), None),
        ("run-7", "bob", Some(6), None),
    ];
    assert_eq!(
        badges,
        expected.map(|(push, client, badge, mode)| (push.to_owned(), client.to_owned(), badge, mode)),
        "bob's run-5 is silent (mentions only), carol has no device, alice's muted room counts only in run-3"
    );
    assert_eq!(store.badge(&app, &bob, false, 0).await.expect("bob").total, 6);
    assert_eq!(store.badge(&app, &alice, false, 0).await.expect("alice").total, 1);
}

async fn a_push_is_accepted_with_one_delivery_per_device(store: &dyn Store) {
    store.upsert_device(&device("queue", DeviceType::Ios, "iphone", "alice", APNS_TOKEN_A, 1)).await.expect("iphone");
    store.upsert_device(&device("queue", DeviceType::Fcm, "pixel", "alice", "fcm-a", 1)).await.expect("pixel");
    store.accept_push(&new_push("queue", "p1", &["alice", "nobody", "alice"], 1_000)).await.expect("accept");
    let view = store.push_view(&parse(AppId::parse("queue")), &push_id("p1")).await.expect("view").expect("exists");
    let statuses: Vec<_> = view.deliveries.iter().map(|d| (d.client_id.as_str(), d.status)).collect();
    assert_eq!(statuses.len(), 3);
    assert!(statuses.contains(&("nobody", DeliveryStatus::Skipped)));
    assert_eq!(statuses.iter().filter(|(_, status)| *status == DeliveryStatus::Queued).count(), 2);
    assert!(
        store.push_view(&parse(AppId::parse("other-app")), &push_id("p1")).await.expect("view").is_none(),
        "apps are apart"
    );
}

async fn a_big_room_is_fanned_out_a_piece_at_a_time(store: &dyn Store) {
    // Two pieces and a part of a third; a device in the first piece and one in the last.
    let clients: Vec<String> = (0..2 * crate::plan::FAN_OUT_PIECE + 452).map(|n| format!("c{n:05}")).collect();
    let (first, last) = (clients[0].as_str(), clients[clients.len() - 1].as_str());
    store.upsert_device(&device("room", DeviceType::Fcm, "first", first, "fcm-room-first", 1)).await.expect("first");
    store.upsert_device(&device("room", DeviceType::Fcm, "last", last, "fcm-room-last", 1)).await.expect("last");
    let names: Vec<&str> = clients.iter().map(String::as_str).collect();
    store.accept_push(&callback_push("room", "big", "big-m", &names, "big", 10)).await.expect("accept");
    store.accept_push(&callback_push("room", "after", "after-m", &[first], "big", 11)).await.expect("accept");
    // One step: the first piece is planned and claimable; both pushes stay journaled.
    assert!(store.fan_out_step().await.expect("first piece"), "more to fan out");
    assert_eq!(store.queue_depth().await.expect("depth").journaled, 2);
    let room = parse(AppId::parse("room"));
    let claimed = store.claim_due_deliveries(1_000, 100, 60_000).await.expect("claim");
    let reached: Vec<_> =
        claimed.iter().filter(|d| d.app_id == room).map(|d| (d.push_id(), d.client_id.as_str().to_owned())).collect();
    assert_eq!(reached, [(push_id("big"), first.to_owned())], "the first piece's device, before the rest is planned");
    while store.fan_out_step().await.expect("next piece") {}
    assert_eq!(store.queue_depth().await.expect("depth").journaled, 0);
    let mut reached: Vec<_> = claim(store, 1_000, 100, 60_000)
        .await
        .expect("claim")
        .iter()
        .filter(|d| d.app_id == room)
        .map(|d| (d.push_id(), d.client_id.as_str().to_owned()))
        .collect();
    reached.sort();
    let mut expected = [(push_id("big"), last.to_owned()), (push_id("after"), first.to_owned())];
    expected.sort();
    assert_eq!(reached, expected, "the last piece's device, and the push journaled after the room");
    // Every recipient once: one delivery each, one unread each.
    let view = store.push_view(&room, &push_id("big")).await.expect("view").expect("exists");
    let recipients: BTreeSet<&str> = view.deliveries.iter().map(|d| d.client_id.as_str()).collect();
    assert_eq!((view.deliveries.len(), recipients.len()), (clients.len(), clients.len()));
    let (app, middle) = ids("room", &clients[1500]);
    assert_eq!(store.badge(&app, &middle, true, 0).await.expect("badge").total, 1);
    let first = parse(ClientId::parse(first));
    assert_eq!(store.badge(&app, &first, true, 0).await.expect("badge").total, 2, "the room and the message after it");
}

async fn dedicated_tokens_get_pushes_of_their_type_only(store: &dyn Store) {
    let token = |n: u8| format!("{n:02x}").repeat(32);
    for (device_type, id, n) in [
        (DeviceType::Ios, "iphone", 1),
        (DeviceType::IosPushToStart, "iphone", 2),
        (DeviceType::IosLiveActivity, "order-1", 3),
        (DeviceType::IosLiveActivity, "order-2", 4),
    ] {
        store.upsert_device(&device("activities", device_type, id, "alice", &token(n), 1)).await.expect("device");
    }
    let reached = async |name: &str, target: DeviceTarget| {
        let push = new_push("activities", name, &["alice", "nobody"], 1_000).to_devices(target);
        store.accept_push(&push).await.expect("accept");
        let view = store.push_view(&parse(AppId::parse("activities")), &push_id(name)).await.expect("view");
        let mut reached: Vec<String> = view
            .expect("exists")
            .deliveries
            .iter()
            .map(|d| format!("{}:{}", d.device_type.as_deref().unwrap_or("-"), d.device_id.as_deref().unwrap_or("-")))
            .collect();
        reached.sort();
        reached
    };
    let one = Some(parse(DeviceId::parse("order-2")));
    assert_eq!(reached("la-note", DeviceTarget::Notifications).await, ["-:-", "ios:iphone"]);
    assert_eq!(
        reached("la-start", DeviceTarget::Dedicated(DeviceType::IosPushToStart, None)).await,
        ["-:-", "ios-pushtostart:iphone"]
    );
    assert_eq!(
        reached("la-all", DeviceTarget::Dedicated(DeviceType::IosLiveActivity, None)).await,
        ["-:-", "ios-liveactivity:order-1", "ios-liveactivity:order-2"]
    );
    assert_eq!(
        reached("la-one", DeviceTarget::Dedicated(DeviceType::IosLiveActivity, one)).await,
        ["-:-", "ios-liveactivity:order-2"]
    );
}

async fn a_claimed_delivery_is_not_claimed_again_until_its_lease_ends(store: &dyn Store) {
    store.upsert_device(&device("lease", DeviceType::Ios, "iphone", "bob", APNS_TOKEN_B, 1)).await.expect("device");
    store.accept_push(&new_push("lease", "p2", &["bob"], 2_000)).await.expect("accept");
    let first = claim(store, 2_000, 100, 60_000).await.expect("claim");
    let ours: Vec<_> = first.iter().filter(|d| d.push_id() == push_id("p2")).collect();
    assert_eq!(ours.len(), 1);
    assert_eq!(ours[0].token.as_str(), APNS_TOKEN_B);
    let again = claim(store, 3_000, 100, 60_000).await.expect("claim again");
    assert!(again.iter().all(|d| d.push_id() != push_id("p2")), "leased");
    // A renewed lease holds past its first end; once it is not renewed, the
    // delivery is due again (its worker died).
    let ours: Vec<_> = first.iter().filter(|d| d.push_id() == push_id("p2")).map(|d| d.id).collect();
    store.renew_leases(&ours, 90_000).await.expect("renew");
    let renewed = claim(store, 62_001, 100, 60_000).await.expect("claim within the renewal");
    assert!(renewed.iter().all(|d| d.push_id() != push_id("p2")), "the renewed lease holds");
    let after_lease = claim(store, 90_001, 100, 60_000).await.expect("claim after the lease");
    assert!(after_lease.iter().any(|d| d.push_id() == push_id("p2")), "a dead worker's delivery is due again");
    // A stop that cannot wait gives its leases up: due again at once, no lease left.
    let ours: Vec<_> = after_lease.iter().filter(|d| d.push_id() == push_id("p2")).map(|d| d.id).collect();
    store.release_leases(&ours).await.expect("give up");
    let released = claim(store, 90_002, 100, 60_000).await.expect("claim after the release");
    assert!(released.iter().any(|d| d.push_id() == push_id("p2")), "given up, so due again at once");
    assert!(store.release_all_leases().await.expect("release") >= 1);
}

async fn a_pushs_trace_context_reaches_its_claimed_deliveries(store: &dyn Store) {
    store.upsert_device(&device("traced", DeviceType::Ios, "iphone", "carol", APNS_TOKEN_A, 1)).await.expect("device");
    let parent = pushgate_domain::TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
    let mut traced = new_push("traced", "t1", &["carol"], 4_000);
    traced.trace_parent = parent;
    store.accept_push(&traced).await.expect("accept");
    store.accept_push(&new_push("traced", "t2", &["carol"], 4_000)).await.expect("accept");
    let claimed = claim(store, 4_000, 100, 60_000).await.expect("claim");
    let trace_of = |name: &str| {
        let delivery = claimed.iter().find(|delivery| delivery.push_id() == push_id(name)).expect("claimed");
        delivery.push.trace_parent
    };
    assert_eq!((trace_of("t1"), trace_of("t2")), (parent, None));
    let ours: Vec<_> = claimed.iter().filter(|d| d.app_id.as_str() == "traced").map(|d| d.id).collect();
    store.release_leases(&ours).await.expect("give up");
}

async fn recorded_attempts_show_in_the_push_view(store: &dyn Store) {
    store.upsert_device(&device("record", DeviceType::Fcm, "pixel", "carol", "fcm-c", 1)).await.expect("device");
    store.accept_push(&new_push("record", "p3", &["carol"], 5_000)).await.expect("accept");
    let claimed = claim(store, 5_000, 100, 60_000).await.expect("claim");
    let id = claimed.iter().find(|d| d.push_id() == push_id("p3")).expect("claimed").id;
    let retry = DeliveryUpdate {
        status: DeliveryStatus::Retrying,
        reason: Some(Reason::provider("UNAVAILABLE")),
        next_attempt_at_ms: Some(9_000),
        attempted: true,
        now_ms: 5_100,
    };
    store.record_attempt(id, &retry).await.expect("record retry");
    let view = store.push_view(&parse(AppId::parse("record")), &push_id("p3")).await.expect("view").expect("exists");
    let delivery = &view.deliveries[0];
    assert_eq!(
        (delivery.status, delivery.attempts, delivery.next_attempt_at_ms),
        (DeliveryStatus::Retrying, 1, Some(9_000))
    );
    assert!(claim(store, 8_999, 100, 60_000).await.expect("early").iter().all(|d| d.push_id() != push_id("p3")));
    assert!(store.next_due_at().await.expect("next due").is_some());
    let retrying = store.queue_depth().await.expect("depth").retrying;
    assert!(retrying >= 1, "the retrying delivery is counted");
    let again = claim(store, 9_000, 100, 60_000).await.expect("due");
    let delivered = DeliveryUpdate {
        status: DeliveryStatus::Delivered,
        reason: None,
        next_attempt_at_ms: None,
        attempted: true,
        now_ms: 9_100,
    };
    store
        .record_attempt(again.iter().find(|d| d.push_id() == push_id("p3")).expect("due").id, &delivered)
        .await
        .expect("record");
    let view = store.push_view(&parse(AppId::parse("record")), &push_id("p3")).await.expect("view").expect("exists");
    assert_eq!((view.deliveries[0].status, view.deliveries[0].attempts), (DeliveryStatus::Delivered, 2));
}

/// A worker that dies mid-push leaves some outcomes recorded and some not:
/// after the lease, only the deliveries without an outcome are handed out
/// again (a retry waits for its own time), so the at-least-once window is
/// one delivery's, not the whole push's.
async fn a_push_taken_up_again_after_its_lease_hands_out_only_what_has_no_outcome(store: &dyn Store) {
    for (n, client) in ["dan", "eve", "fay"].into_iter().enumerate() {
        let token = format!("fcm-again-{n}");
        store.upsert_device(&device("again", DeviceType::Fcm, client, client, &token, 1)).await.expect("device");
    }
    store.accept_push(&new_push("again", "p4", &["dan", "eve", "fay"], 10_000)).await.expect("accept");
    let claimed = claim(store, 10_000, 100, 60_000).await.expect("claim");
    let of = |client: &str| {
        claimed.iter().find(|d| d.push_id() == push_id("p4") && d.client_id.as_str() == client).expect("claimed").id
    };
    let outcome = |status, next_attempt_at_ms: Option<i64>| DeliveryUpdate {
        status,
        reason: next_attempt_at_ms.map(|_| Reason::provider("UNAVAILABLE")),
        next_attempt_at_ms,
        attempted: true,
        now_ms: 10_100,
    };
    store.record_attempt(of("dan"), &outcome(DeliveryStatus::Delivered, None)).await.expect("dan");
    store.record_attempt(of("eve"), &outcome(DeliveryStatus::Retrying, Some(80_000))).await.expect("eve");
    // The worker dies before fay's outcome: her delivery alone is due again
    // once the lease runs out; eve's retry at its own time.
    assert!(claim(store, 69_999, 100, 60_000).await.expect("leased").iter().all(|d| d.push_id() != push_id("p4")));
    let after_lease = claim(store, 70_001, 100, 60_000).await.expect("after the lease");
    let again: Vec<_> =
        after_lease.iter().filter(|d| d.push_id() == push_id("p4")).map(|d| d.client_id.as_str()).collect();
    assert_eq!(again, ["fay"]);
    store.record_attempt(after_lease[0].id, &outcome(DeliveryStatus::Delivered, None)).await.expect("fay");
    let retry = claim(store, 80_000, 100, 60_000).await.expect("the retry");
    let retry: Vec<_> = retry.iter().filter(|d| d.push_id() == push_id("p4")).collect();
    assert_eq!(retry.iter().map(|d| (d.client_id.as_str(), d.attempts)).collect::<Vec<_>>(), [("eve", 1)]);
    store.record_attempt(retry[0].id, &outcome(DeliveryStatus::Delivered, None)).await.expect("eve");
    let view = store.push_view(&parse(AppId::parse("again")), &push_id("p4")).await.expect("view").expect("exists");
    let statuses: Vec<_> = view.deliveries.iter().map(|d| (d.client_id.as_str(), d.status, d.attempts)).collect();
    assert_eq!(statuses.len(), 3);
    for (client, attempts) in [("dan", 1), ("eve", 2), ("fay", 1)] {
        assert!(statuses.contains(&(client, DeliveryStatus::Delivered, attempts)), "{client}: {statuses:?}");
    }
}

async fn pruning_spares_a_device_that_registered_again(store: &dyn Store) {
    store
        .upsert_device(&device("prune", DeviceType::Ios, "iphone", "dave", APNS_TOKEN_A, 10_000))
        .await
        .expect("device");
    let (app, dave) = ids("prune", "dave");
    let iphone = parse(DeviceId::parse("iphone"));
    let token = parse(PushToken::parse(DeviceType::Ios, APNS_TOKEN_A));
    assert!(
        !store.prune_device(&app, DeviceType::Ios, &iphone, &token, Some(9_999)).await.expect("prune"),
        "registered after"
    );
    assert_eq!(store.client_devices(&app, &dave).await.expect("list").len(), 1);
    let other = parse(PushToken::parse(DeviceType::Ios, APNS_TOKEN_B));
    assert!(!store.prune_device(&app, DeviceType::Ios, &iphone, &other, None).await.expect("prune"), "another token");
    assert!(store.prune_device(&app, DeviceType::Ios, &iphone, &token, Some(10_000)).await.expect("prune"));
    assert!(store.client_devices(&app, &dave).await.expect("list").is_empty());
}

async fn ping_succeeds(store: &dyn Store) {
    store.ping().await.expect("ping");
}

async fn a_subscribed_device_is_listed_for_its_client(store: &dyn Store) {
    let mut new = device("list", DeviceType::Ios, "iphone", "alice", APNS_TOKEN_A, 1_000);
    new.environment = Some(Environment::Sandbox);
    new.locale = Some(parse(Locale::parse("zh-TW")));
    new.timezone = Some(parse(TimeZoneName::parse("Asia/Taipei")));
    store.upsert_device(&new).await.expect("upsert");
    let (app, alice) = ids("list", "alice");
    let devices = store.client_devices(&app, &alice).await.expect("list");
    assert_eq!(devices.len(), 1);
    let stored = &devices[0];
    assert_eq!(stored.device_type, DeviceType::Ios);
    assert_eq!(stored.device_id.as_str(), "iphone");
    assert_eq!(stored.token.as_str(), APNS_TOKEN_A);
    assert_eq!(stored.environment, Some(Environment::Sandbox));
    assert_eq!(stored.locale.as_ref().map(Locale::as_str), Some("zh-TW"));
    assert_eq!(stored.timezone.as_ref().map(TimeZoneName::as_str), Some("Asia/Taipei"));
    assert_eq!((stored.created_at_ms, stored.updated_at_ms), (1_000, 1_000));
}

async fn subscribing_again_updates_the_same_device(store: &dyn Store) {
    store
        .upsert_device(&device("again", DeviceType::Ios, "iphone", "alice", APNS_TOKEN_A, 1_000))
        .await
        .expect("first");
    let outcome = store
        .upsert_device(&device("again", DeviceType::Ios, "iphone", "alice", APNS_TOKEN_B, 2_000))
        .await
        .expect("second");
    assert_eq!(outcome.token_moved_from, 0);
    let (app, alice) = ids("again", "alice");
    let devices = store.client_devices(&app, &alice).await.expect("list");
    assert_eq!(devices.len(), 1, "the same (type, deviceId) is one device");
    assert_eq!(devices[0].token.as_str(), APNS_TOKEN_B);
    assert_eq!((devices[0].created_at_ms, devices[0].updated_at_ms), (1_000, 2_000));
}

async fn optional_fields_are_kept_when_a_later_subscribe_omits_them(store: &dyn Store) {
    let mut first = device("keep", DeviceType::Fcm, "pixel", "alice", "fcm-token-1", 1_000);
    first.locale = Some(parse(Locale::parse("ja")));
    store.upsert_device(&first).await.expect("first");
    store
        .upsert_device(&device("keep", DeviceType::Fcm, "pixel", "alice", "fcm-token-2", 2_000))
        .await
        .expect("second");
    let (app, alice) = ids("keep", "alice");
    let devices = store.client_devices(&app, &alice).await.expect("list");
    assert_eq!(devices[0].locale.as_ref().map(Locale::as_str), Some("ja"));
}

async fn a_token_registered_by_another_client_moves_to_it(store: &dyn Store) {
    store
        .upsert_device(&device("move", DeviceType::Ios, "old-phone", "alice", APNS_TOKEN_A, 1_000))
        .await
        .expect("alice");
    let outcome = store
        .upsert_device(&device("move", DeviceType::Ios, "new-phone", "bob", APNS_TOKEN_A, 2_000))
        .await
        .expect("bob");
    assert_eq!(outcome.token_moved_from, 1);
    let (app, alice) = ids("move", "alice");
    let (_, bob) = ids("move", "bob");
    assert!(store.client_devices(&app, &alice).await.expect("alice's").is_empty());
    let bobs = store.client_devices(&app, &bob).await.expect("bob's");
    assert_eq!(bobs.len(), 1);
    assert_eq!(bobs[0].token.as_str(), APNS_TOKEN_A);
}

async fn android_and_fcm_devices_share_one_token_space(store: &dyn Store) {
    store
        .upsert_device(&device("share", DeviceType::Android, "d1", "alice", "shared-fcm-token", 1_000))
        .await
        .expect("android");
    store.upsert_device(&device("share", DeviceType::Fcm, "d2", "bob", "shared-fcm-token", 2_000)).await.expect("fcm");
    // The same token as an APNs VoIP token would be a different token space,
    // but it is not valid hex, so only the FCM move is checked here.
    let (app, alice) = ids("share", "alice");
    assert!(store.client_devices(&app, &alice).await.expect("alice's").is_empty());
}

async fn removing_a_device_counts_what_went(store: &dyn Store) {
    store
        .upsert_device(&device("remove", DeviceType::Ios, "iphone", "alice", APNS_TOKEN_A, 1_000))
        .await
        .expect("upsert");
    let (app, alice) = ids("remove", "alice");
    let (_, bob) = ids("remove", "bob");
    let iphone = parse(DeviceId::parse("iphone"));
    assert_eq!(store.remove_device(&app, DeviceType::Ios, &iphone, &bob).await.expect("bob"), 0, "not bob's device");
    assert_eq!(store.remove_device(&app, DeviceType::Android, &iphone, &alice).await.expect("type"), 0);
    assert_eq!(store.remove_device(&app, DeviceType::Ios, &iphone, &alice).await.expect("alice"), 1);
    assert_eq!(store.remove_device(&app, DeviceType::Ios, &iphone, &alice).await.expect("again"), 0);
    assert!(store.client_devices(&app, &alice).await.expect("list").is_empty());
}

async fn apps_do_not_see_each_others_devices(store: &dyn Store) {
    store
        .upsert_device(&device("app-one", DeviceType::Ios, "iphone", "alice", APNS_TOKEN_A, 1_000))
        .await
        .expect("one");
    store
        .upsert_device(&device("app-two", DeviceType::Ios, "iphone", "alice", APNS_TOKEN_A, 1_000))
        .await
        .expect("two: the same token in another app does not move");
    let (one, alice) = ids("app-one", "alice");
    let (two, _) = ids("app-two", "alice");
    assert_eq!(store.client_devices(&one, &alice).await.expect("one").len(), 1);
    assert_eq!(store.client_devices(&two, &alice).await.expect("two").len(), 1);
}

/// Export reads an app's devices in pages, in (type, device id) order, each
/// page after the last one's device, and never another app's.
async fn an_apps_devices_are_read_page_by_page(store: &dyn Store) {
    for (device_id, token) in [("c", "fcm-page-c"), ("a", "fcm-page-a"), ("b", "fcm-page-b")] {
        store.upsert_device(&device("paged", DeviceType::Fcm, device_id, "alice", token, 1)).await.expect("device");
    }
    store.upsert_device(&device("paged", DeviceType::Android, "z", "bob", "fcm-page-z", 1)).await.expect("device");
    store.upsert_device(&device("not-paged", DeviceType::Fcm, "a", "carol", "fcm-page-other", 1)).await.expect("other");
    let app = parse(AppId::parse("paged"));
    let first = store.app_devices(&app, None, 2).await.expect("a page");
    let ids = |page: &[crate::Device]| -> Vec<String> {
        page.iter().map(|device| format!("{}/{}", device.device_type, device.device_id.as_str())).collect()
    };
    assert_eq!(ids(&first), ["android/z", "fcm/a"]);
    let last = first.last().map(|device| (device.device_type, device.device_id.clone()));
    let second = store.app_devices(&app, last, 2).await.expect("a page");
    assert_eq!(ids(&second), ["fcm/b", "fcm/c"]);
    assert_eq!(second[0].token.as_str(), "fcm-page-b", "the whole token, for an export to register again");
    let last = second.last().map(|device| (device.device_type, device.device_id.clone()));
    assert!(store.app_devices(&app, last, 2).await.expect("a page").is_empty());
}

fn stored_key(app: &str, digest: [u8; 32], kind: ApiKeyKind) -> StoredApiKey {
    StoredApiKey { app_id: parse(AppId::parse(app)), digest, kind, created_at_ms: 1_000 }
}

async fn api_keys_are_kept_and_listed(store: &dyn Store) {
    let key = stored_key("keyed", [9u8; 32], ApiKeyKind::Generated);
    assert!(store.insert_api_key(&key).await.expect("insert"));
    // Operators' keys sit beside the generated one, and are revoked one by one.
    let created =
        [stored_key("keyed", [10u8; 32], ApiKeyKind::Created), stored_key("keyed", [11u8; 32], ApiKeyKind::Created)];
    for key in &created {
        store.create_api_key(key).await.expect("create");
    }
    assert!(!store.insert_api_key(&stored_key("keyed", [12u8; 32], ApiKeyKind::Generated)).await.expect("insert"));
    let keys = store.api_keys().await.expect("list");
    assert!(keys.contains(&key) && created.iter().all(|created| keys.contains(created)), "{keys:?}");
    assert!(store.revoke_api_key(&[10u8; 32]).await.expect("revoke"));
    assert!(!store.revoke_api_key(&[10u8; 32]).await.expect("revoke again"));
    let keys = store.api_keys().await.expect("list");
    assert!(!keys.contains(&created[0]) && keys.contains(&created[1]) && keys.contains(&key));
}

/// Processes sharing a store that start at once each generate a key for an
/// app without one: exactly one is kept, whichever came first.
async fn an_app_keeps_one_generated_key_whoever_generates_it(store: Arc<dyn Store>) {
    let tasks: Vec<_> = (0..8u8)
        .map(|n| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                store.insert_api_key(&stored_key("started-at-once", [n; 32], ApiKeyKind::Generated)).await
            })
        })
        .collect();
    let mut kept = 0;
    for task in tasks {
        kept += usize::from(task.await.expect("task").expect("insert"));
    }
    assert_eq!(kept, 1);
    let keys = store.api_keys().await.expect("list");
    assert_eq!(keys.iter().filter(|key| key.app_id.as_str() == "started-at-once").count(), 1);
}

async fn concurrent_subscribes_of_one_token_leave_exactly_one_holder(store: Arc<dyn Store>) {
    let tasks: Vec<_> = (0..16)
        .map(|index| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let client = format!("client-{index}");
                let device_id = format!("device-{index}");
                store
                    .upsert_device(&device("race", DeviceType::Ios, &device_id, &client, APNS_TOKEN_B, 1_000 + index))
                    .await
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("task").expect("upsert");
    }
    let app = parse(AppId::parse("race"));
    let mut holders = 0;
    for index in 0..16 {
        let client = parse(ClientId::parse(&format!("client-{index}")));
        holders += store.client_devices(&app, &client).await.expect("list").len();
    }
    assert_eq!(holders, 1, "a token is bound to exactly one device");
}
