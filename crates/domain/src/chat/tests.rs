use super::*;
use proptest::prelude::*;

/// The seed's example v2 callback.
fn seed_callback() -> Map<String, Value> {
    let value = json!({
        "_id": "5dd51a4f21841443cfd3090d", "message": "lala", "room": "demo-room", "roomName": "Demo Room",
        "sender": { "_id": "sss", "avatarUrl": "http://loremflickr.com/240/240/style?1574241882", "nickname": "SSS",
                    "description": "description la la #1568192464957", "isRobot": false, "id": "sss",
                    "lastLoginTimeMS": 1568192470942u64 },
        "messageType": "text", "appID": "SampleApp", "id": "5dd51a4f21841443cfd3090d",
        "messageTimeMS": 1574246991222u64, "updatedAtMS": 1574246991223u64, "createdAtMS": 1574246991223u64,
        "pushToClients": ["aaa", "bbb"]
    });
    value.as_object().cloned().expect("an object")
}

fn message_of(message_type: &str, text: Option<&str>) -> ChatMessage {
    let mut body = seed_callback();
    body.insert("messageType".into(), message_type.into());
    match text {
        Some(text) => body.insert("message".into(), text.into()),
        None => body.remove("message"),
    };
    ChatMessage::parse(&body).expect("parses")
}

fn apns_json(push: &ApnsPush) -> Value {
    serde_json::from_slice(&push.payload).expect("JSON")
}

fn locale(tag: &str) -> Locale {
    Locale::parse(tag).expect("a locale")
}

const RECIPIENT: Recipient<'static> =
    Recipient { badge: Some(3), locale: None, quiet: false, variant: None, summary: None };

#[test]
fn the_seed_callback_parses_with_its_recipients_and_keeps_unknown_fields_out_of_the_callback_ones() {
    let callback = GenericCallback::parse(&seed_callback()).expect("parses");
    assert_eq!(callback.recipients.iter().map(ClientId::as_str).collect::<Vec<_>>(), ["aaa", "bbb"]);
    let message = &callback.message;
    assert_eq!(message.id.as_str(), "5dd51a4f21841443cfd3090d");
    assert_eq!(message.room.as_ref().map(RoomId::as_str), Some("demo-room"));
    assert_eq!(message.sender.as_deref(), Some("SSS"));
    let stored = message.fields();
    assert!(stored.get("pushToClients").is_none());
    assert_eq!(stored["sender"]["avatarUrl"], "http://loremflickr.com/240/240/style?1574241882");
    assert_eq!(ChatMessage::parse(stored).expect("parses again"), *message);
}

#[test]
fn the_seed_message_gives_imkits_apns_payload() {
    let message = GenericCallback::parse(&seed_callback()).expect("parses").message;
    let push = message.to_apns(&ChatStyle::default(), &RECIPIENT, None);
    assert!(!push.silent && push.priority.is_none());
    assert_eq!(
        apns_json(&push),
        json!({ "aps": {
            "alert": { "loc-key": "im_loc_text", "loc-args": ["SSS", "lala"], "title": "Demo Room", "body": "SSS: lala" },
            "badge": 3, "sound": "default", "thread-id": "demo-room"
        } })
    );
}

#[test]
fn the_seed_message_gives_imkits_fcm_message() {
    let message = GenericCallback::parse(&seed_callback()).expect("parses").message;
    let style = ChatStyle { icon: Some("ic_chat".into()), ..ChatStyle::default() };
    let fcm = message.to_fcm(&style, &RECIPIENT, None);
    let payload: Value = serde_json::from_str(fcm["data"]["payload"].as_str().expect("a string")).expect("JSON");
    assert_eq!(payload, Value::Object(message.fields().clone()));
    let mut without_payload = fcm.clone();
    without_payload["data"].as_object_mut().expect("data").remove("payload");
    assert_eq!(
        without_payload,
        json!({
            "notification": { "title": "Demo Room", "body": "SSS: lala" },
            "android": { "ttl": "3600s", "priority": "high", "notification": {
                "body_loc_key": "im_loc_text", "body_loc_args": ["SSS", "lala"], "notification_count": 3,
                "click_action": "push_chatroom", "icon": "ic_chat", "sound": "default" } },
            "data": { "type": "chat", "loc-key": "im_loc_text", "loc-args": r#"["SSS","lala"]"#, "badge": "3" }
        })
    );
}

/// Every message type of IMKIT's key table, in every language, on every provider.
#[test]
fn payload_snapshots_for_every_message_type() {
    let types = [
        ("text", Some("lala")),
        ("image", None),
        ("video", None),
        ("audio", None),
        ("sticker", None),
        ("location", None),
        ("file", Some("report.pdf")),
        ("joinRoom", None),
        ("leaveRoom", None),
        ("addMember", Some("Bob")),
        ("addMembers", None),
        ("deleteMember", Some("Bob")),
        ("encrypted", Some("ciphertext")),
    ];
    let style = ChatStyle::default();
    for (message_type, text) in types {
        let message = message_of(message_type, text);
        let bodies: Map<String, Value> = ["en", "zh-TW", "ja"]
            .into_iter()
            .map(|tag| {
                let tag_locale = locale(tag);
                let recipient = Recipient { badge: Some(1), locale: Some(&tag_locale), ..Recipient::default() };
                let apns = apns_json(&message.to_apns(&style, &recipient, None));
                (tag.to_owned(), apns["aps"]["alert"]["body"].clone())
            })
            .collect();
        let mut fcm = message.to_fcm(&style, &RECIPIENT, None);
        fcm["data"].as_object_mut().expect("data").remove("payload");
        let mut webpush = web_json(&message.to_webpush(&web_style(), &RECIPIENT, None));
        webpush.as_object_mut().expect("an object").remove("payload");
        insta::assert_json_snapshot!(
            format!("chat_{message_type}"),
            json!({ "apns": apns_json(&message.to_apns(&style, &RECIPIENT, None)), "fcm": fcm, "webpush": webpush, "bodies": bodies })
        );
    }
}

#[test]
fn an_unknown_message_type_keeps_its_key_and_gets_a_sensible_body() {
    let style = ChatStyle::default();
    let with_text = apns_json(&message_of("poll", Some("Lunch?")).to_apns(&style, &RECIPIENT, None));
    assert_eq!(with_text["aps"]["alert"]["loc-key"], "im_loc_poll");
    assert_eq!(with_text["aps"]["alert"]["body"], "SSS: Lunch?");
    let without_text = apns_json(&message_of("poll", None).to_apns(&style, &RECIPIENT, None));
    assert_eq!(without_text["aps"]["alert"]["body"], "SSS sent a message");
}

#[test]
fn an_encrypted_message_carries_no_content_anywhere() {
    let message = message_of("encrypted", Some("TOP-SECRET-CIPHERTEXT"));
    let style = ChatStyle::default();
    let apns = message.to_apns(&style, &RECIPIENT, None);
    let voip = message.to_apns_voip(&style, &RECIPIENT);
    let fcm = message.to_fcm(&style, &RECIPIENT, None).to_string();
    for payload in
        [String::from_utf8(apns.payload).expect("utf-8"), String::from_utf8(voip.payload).expect("utf-8"), fcm]
    {
        assert!(!payload.contains("TOP-SECRET"), "content leaked: {payload}");
        assert!(payload.contains("im_loc_encrypted"));
    }
}

#[test]
fn the_device_locale_picks_the_language_then_the_apps_default_then_english() {
    let message = message_of("image", None);
    let body = |style: &ChatStyle, tag: Option<&str>| {
        let device_locale = tag.map(locale);
        let recipient = Recipient { badge: None, locale: device_locale.as_ref(), ..Recipient::default() };
        apns_json(&message.to_apns(style, &recipient, None))["aps"]["alert"]["body"].as_str().map(str::to_owned)
    };
    let english_default = ChatStyle::default();
    let japanese_default = ChatStyle { default_locale: Some(locale("ja")), ..ChatStyle::default() };
    assert_eq!(body(&english_default, Some("zh-Hant-HK")).as_deref(), Some("SSS 傳送了一張圖片"));
    assert_eq!(body(&english_default, Some("zh_TW")).as_deref(), Some("SSS 傳送了一張圖片"));
    assert_eq!(body(&english_default, Some("ja-JP")).as_deref(), Some("SSSが画像を送信しました"));
    assert_eq!(body(&japanese_default, Some("fr")).as_deref(), Some("SSSが画像を送信しました"));
    assert_eq!(body(&japanese_default, None).as_deref(), Some("SSSが画像を送信しました"));
    assert_eq!(body(&english_default, Some("zh-CN")).as_deref(), Some("SSS sent a photo"));
}

#[test]
fn without_a_room_name_the_title_is_the_sender() {
    let mut body = seed_callback();
    body.remove("roomName");
    let message = ChatMessage::parse(&body).expect("parses");
    let apns = apns_json(&message.to_apns(&ChatStyle::default(), &RECIPIENT, None));
    assert_eq!(apns["aps"]["alert"]["title"], "SSS");
}

#[test]
fn placeholders_are_filled_once() {
    assert_eq!(render("$1: $2", "a$2b", "$1"), "a$2b: $1");
    assert_eq!(render("cost $5 by $1", "x", "y"), "cost $5 by x");
}

#[test]
fn a_v1_callback_uses_the_given_badge_and_alert() {
    let mut body = seed_callback();
    body.remove("pushToClients");
    body.insert("toClient".into(), "aaa".into());
    body.insert("badge".into(), 7.into());
    body.insert("alert".into(), "SSS: lala (from IMKIT)".into());
    let callback = LegacyCallback::parse(&body).expect("parses");
    assert_eq!((callback.to_client.as_str(), callback.badge), ("aaa", Some(7)));
    let recipient = Recipient { badge: callback.badge, locale: None, ..Recipient::default() };
    let style = ChatStyle::default();
    let apns = apns_json(&callback.message.to_apns(&style, &recipient, callback.alert.as_deref()));
    assert_eq!(apns["aps"]["alert"], "SSS: lala (from IMKIT)");
    assert_eq!(apns["aps"]["badge"], 7);
    let fcm = callback.message.to_fcm(&style, &recipient, callback.alert.as_deref());
    assert_eq!(fcm["notification"]["body"], "SSS: lala (from IMKIT)");
    assert_eq!(fcm["android"]["notification"]["notification_count"], 7);
    assert!(callback.message.fields().get("alert").is_none());
}

#[test]
fn fields_pushgate_uses_are_checked_strictly_and_named() {
    let refused = |change: Value| {
        let mut body = seed_callback();
        body.extend(change.as_object().cloned().expect("object"));
        GenericCallback::parse(&body).expect_err("refused").0
    };
    assert_eq!(refused(json!({ "pushToClients": "aaa" })), "pushToClients must be an array of client ids");
    assert_eq!(refused(json!({ "pushToClients": ["aaa", 7] })), "pushToClients[1] must be a string");
    assert_eq!(refused(json!({ "pushToClients": ["aaa", ""] })), "pushToClients[1]: clientId must not be empty");
    assert_eq!(refused(json!({ "messageType": "no spaces" })).split(' ').next(), Some("messageType"));
    assert_eq!(refused(json!({ "message": 5 })), "message must be a string");
    assert_eq!(refused(json!({ "sender": { "nickname": 5 } })), "sender.nickname must be a string");
    assert_eq!(refused(json!({ "_id": 5 })), "_id must be a string");
    let mut body = seed_callback();
    body.remove("pushToClients");
    assert_eq!(GenericCallback::parse(&body).expect_err("refused").0, "pushToClients is required");
}

#[test]
fn a_long_message_loses_the_fcm_payload_field_before_any_text() {
    let message = message_of("text", Some(&"m".repeat(1000)));
    let fcm = message.to_fcm(&ChatStyle::default(), &RECIPIENT, None);
    assert!(fcm.to_string().len() <= MAX_FCM_BYTES);
    assert!(fcm["data"].get("payload").is_none());
    assert_eq!(fcm["notification"]["body"], format!("SSS: {}", "m".repeat(1000)));
}

#[test]
fn a_huge_message_is_cut_with_an_ellipsis_to_fit() {
    let message = message_of("text", Some(&"長".repeat(5000)));
    let apns = apns_json(&message.to_apns(&ChatStyle::default(), &RECIPIENT, None));
    let body = apns["aps"]["alert"]["body"].as_str().expect("body");
    assert!(body.starts_with("SSS: 長長") && body.ends_with('…'), "{body}");
    let fcm = message.to_fcm(&ChatStyle::default(), &RECIPIENT, None);
    assert!(fcm["notification"]["body"].as_str().expect("body").ends_with('…'));
}

#[test]
fn a_badge_update_is_silent_and_power_aware() {
    let apns = badge_update_apns(4);
    assert!(apns.priority == Some(crate::ApnsPriority::PowerAware) && !apns.silent);
    assert_eq!(apns_json(&apns), json!({ "aps": { "badge": 4 }, "type": "badge" }));
    assert_eq!(badge_update_fcm(4)["data"], json!({ "type": "badge", "badge": "4" }));
    assert!(badge_update_fcm(4).get("notification").is_none());
}

fn any_text(max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(any::<char>(), 0..max).prop_map(String::from_iter)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// Any message, nickname and room name, in any script, gives a valid
    /// payload within each provider's limit.
    #[test]
    fn every_payload_fits_its_provider(
        text in any_text(6000),
        nickname in any_text(600),
        room_name in any_text(600),
        extra in any_text(3000),
        message_type in prop::sample::select(vec!["text", "image", "addMember", "encrypted", "someNewType"]),
        tag in prop::sample::select(vec!["en", "zh-TW", "ja", "de"]),
        badge in any::<u32>(),
        alert in prop::option::of(any_text(5000)),
    ) {
        let mut body = seed_callback();
        body.insert("message".into(), text.into());
        body.insert("roomName".into(), room_name.into());
        body.insert("messageType".into(), message_type.into());
        body.insert("sender".into(), json!({ "nickname": nickname, "bio": extra }));
        let message = ChatMessage::parse(&body).expect("parses");
        let device_locale = locale(tag);
        let recipient = Recipient { badge: Some(badge), locale: Some(&device_locale), ..Recipient::default() };
        let style = ChatStyle::default();
        let apns = message.to_apns(&style, &recipient, alert.as_deref());
        prop_assert!(apns.payload.len() <= MAX_APNS_BYTES);
        let apns = apns_json(&apns);
        prop_assert_eq!(&apns["aps"]["badge"], &json!(badge));
        let voip = message.to_apns_voip(&style, &recipient);
        prop_assert!(voip.payload.len() <= MAX_VOIP_BYTES);
        apns_json(&voip);
        let fcm = message.to_fcm(&style, &recipient, alert.as_deref());
        prop_assert!(fcm.to_string().len() <= MAX_FCM_BYTES);
        let data = fcm["data"].as_object().expect("data");
        prop_assert!(data.values().all(Value::is_string), "FCM data values must be strings: {data:?}");
        prop_assert!(!fcm["notification"]["title"].as_str().expect("title").is_empty());
        let web = message.to_webpush(&web_style(), &recipient, alert.as_deref());
        prop_assert!(web.payload.len() <= MAX_WEBPUSH_BYTES);
        let web: Value = serde_json::from_slice(&web.payload).expect("JSON");
        prop_assert_eq!(&web["app_badge"], &json!(badge));
        prop_assert!(!web["notification"]["title"].as_str().expect("title").is_empty());
        // Private: the clear push to seal is sized so that, sealed (its
        // length plus `aes128gcm`'s fixed overhead) and base64url, the
        // private push still fits.
        let to_seal = message.apns_to_seal(&style, &recipient, alert.as_deref());
        serde_json::from_slice::<Value>(&to_seal).expect("the clear push to seal is JSON");
        let sealed = vec![0u8; to_seal.len() + SEAL_OVERHEAD];
        prop_assert!(message.to_apns_private(&style, &recipient, Some(&sealed)).payload.len() <= MAX_APNS_BYTES);
        let to_seal = message.fcm_to_seal(&style, &recipient, alert.as_deref());
        let sealed = vec![0u8; to_seal.len() + SEAL_OVERHEAD];
        prop_assert!(message.to_fcm_private(&recipient, Some(&sealed)).to_string().len() <= MAX_FCM_BYTES);
    }
}

fn web_style() -> ChatStyle {
    ChatStyle { web_navigate: Some("https://chat.example.com/rooms/{room}".into()), ..ChatStyle::default() }
}

fn web_json(push: &WebPushMessage) -> Value {
    serde_json::from_slice(&push.payload).expect("JSON")
}

/// The seed's message as a browser gets it: Declarative Web Push with
/// IMKIT's fields beside it, and the headers that go with it.
#[test]
fn the_seed_message_gives_a_declarative_web_push() {
    let message = ChatMessage::parse(&seed_callback()).expect("parses");
    let zh = locale("zh-TW");
    let recipient = Recipient { locale: Some(&zh), ..RECIPIENT };
    let web = message.to_webpush(&web_style(), &recipient, None);
    assert_eq!((web.ttl_seconds, web.urgency, web.topic.as_deref()), (3600, Urgency::High, Some("demo-room")));
    let mut payload = web_json(&web);
    assert_eq!(payload["payload"], Value::Object(message.fields().clone()));
    payload.as_object_mut().expect("an object").remove("payload");
    insta::assert_json_snapshot!("webpush_seed", payload);
    // Without a page to open, the same fields for a service worker to show.
    let plain = web_json(&message.to_webpush(&ChatStyle::default(), &recipient, None));
    assert!(plain.get("web_push").is_none() && plain["notification"].get("navigate").is_none());
    assert_eq!(plain["notification"]["title"], "Demo Room");
}

#[test]
fn quiet_hours_make_a_web_push_silent_and_of_normal_urgency() {
    let message = message_of("image", None);
    let web = message.to_webpush(&web_style(), &Recipient { quiet: true, ..RECIPIENT }, None);
    assert_eq!(web.urgency, Urgency::Normal);
    assert_eq!(web_json(&web)["notification"]["silent"], true);
    assert_eq!(web_json(&web)["loc-key"], "im_loc_image");
}

#[test]
fn a_long_message_loses_the_web_push_payload_field_before_any_text() {
    let message = message_of("text", Some(&"m".repeat(1500)));
    let web = message.to_webpush(&web_style(), &RECIPIENT, None);
    assert!(web.payload.len() <= MAX_WEBPUSH_BYTES);
    let web = web_json(&web);
    assert!(web.get("payload").is_none());
    assert_eq!(web["notification"]["body"], format!("SSS: {}", "m".repeat(1500)));
}

#[test]
fn quiet_hours_drop_the_sound_and_make_the_alert_passive() {
    let message = message_of("text", Some("lala"));
    let quiet = Recipient { quiet: true, ..RECIPIENT };
    let apns = apns_json(&message.to_apns(&ChatStyle::default(), &quiet, None));
    assert_eq!(apns["aps"]["interruption-level"], "passive");
    assert!(apns["aps"].get("sound").is_none());
    let fcm = message.to_fcm(&ChatStyle::default(), &quiet, None);
    assert!(fcm["android"]["notification"].get("sound").is_none());
    assert_eq!(fcm["android"]["notification"]["notification_priority"], "PRIORITY_LOW");
}

#[test]
fn an_experiment_variant_replaces_the_copy_and_drops_the_visible_loc_key() {
    let message = message_of("text", Some("lala"));
    let variant = Variant {
        name: "short".into(),
        weight: 1.0,
        title: Some("New in {roomName}".into()),
        body: Some("{sender} wrote: {message}".into()),
    };
    let recipient = Recipient { variant: Some(&variant), ..RECIPIENT };
    let apns = apns_json(&message.to_apns(&ChatStyle::default(), &recipient, None));
    assert_eq!(apns["aps"]["alert"], json!({ "title": "New in Demo Room", "body": "SSS wrote: lala" }));
    let fcm = message.to_fcm(&ChatStyle::default(), &recipient, None);
    assert_eq!(fcm["notification"], json!({ "title": "New in Demo Room", "body": "SSS wrote: lala" }));
    assert!(fcm["android"]["notification"].get("body_loc_key").is_none());
    assert_eq!(fcm["data"]["loc-key"], "im_loc_text", "the data keeps the key for the app's own use");
    let web = web_json(&message.to_webpush(&web_style(), &recipient, None));
    assert_eq!(
        (web["notification"]["title"].clone(), web["notification"]["body"].clone()),
        (json!("New in Demo Room"), json!("SSS wrote: lala"))
    );
    assert!(web.get("loc-key").is_none(), "a service worker would show the key's text instead of the variant's");
    let title_only = Variant { body: None, ..variant };
    let apns = apns_json(&message.to_apns(
        &ChatStyle::default(),
        &Recipient { variant: Some(&title_only), ..RECIPIENT },
        None,
    ));
    assert_eq!(apns["aps"]["alert"]["loc-key"], "im_loc_text");
    assert_eq!(apns["aps"]["alert"]["title"], "New in Demo Room");
    let secret = message_of("encrypted", Some("TOP-SECRET"));
    let with_template =
        secret.to_apns(&ChatStyle::default(), &Recipient { variant: Some(&title_only), ..RECIPIENT }, None);
    assert!(!String::from_utf8(with_template.payload).expect("utf-8").contains("TOP-SECRET"));
}

#[test]
fn a_busy_rooms_alert_counts_its_messages_in_the_recipients_language_and_replaces_the_rooms_last() {
    let message = GenericCallback::parse(&seed_callback()).expect("parses").message;
    let style = ChatStyle { collapse_by_room: true, ..ChatStyle::default() };
    let summary = Summary { count: 5, senders: vec!["Alice".into(), "Bob".into(), "Carol".into()] };
    let (en, ja, zh) = (locale("en"), locale("ja"), locale("zh-TW"));
    let recipient = |locale| Recipient { badge: Some(7), locale: Some(locale), summary: Some(&summary), ..RECIPIENT };
    let push = message.to_apns(&style, &recipient(&en), None);
    assert_eq!(
        apns_json(&push)["aps"],
        json!({ "alert": { "title": "Demo Room", "body": "Alice and 2 others: 5 new messages in Demo Room" },
                "badge": 7, "sound": "default", "thread-id": "demo-room" }),
        "no loc-key: the app's strings would replace the count"
    );
    assert_eq!(push.collapse_id.as_deref(), Some("demo-room"), "it replaces the room's last alert");
    let body = |locale| message.to_fcm(&style, &recipient(locale), None)["notification"]["body"].clone();
    assert_eq!(body(&ja), "Aliceほか2人: Demo Roomに5件の新着メッセージ");
    assert_eq!(body(&zh), "Alice 和其他 2 人:Demo Room 有 5 則新訊息");
    let fcm = message.to_fcm(&style, &recipient(&en), None);
    assert_eq!(fcm["android"]["notification"]["tag"], "demo-room", "it replaces the room's last notification");
    assert!(fcm["android"].get("collapse_key").is_none(), "a chat alert stays non-collapsible: {fcm}");
    let data: Value = serde_json::from_str(fcm["data"]["payload"].as_str().expect("the message")).expect("JSON");
    assert_eq!(data["_id"], "5dd51a4f21841443cfd3090d", "the latest message's fields, so the app opens the room");
    let one = Summary { count: 2, senders: vec!["Alice".into()] };
    let alone = message.to_webpush(&style, &Recipient { summary: Some(&one), ..RECIPIENT }, None);
    let web: Value = serde_json::from_slice(&alone.payload).expect("JSON");
    assert_eq!(web["notification"]["body"], "Alice: 2 new messages in Demo Room", "{web}");
    assert_eq!(alone.topic.as_deref(), Some("demo-room"));
    let plain = message.to_apns(&ChatStyle::default(), &RECIPIENT, None);
    assert_eq!(plain.collapse_id, None, "without coalescing, every message stays on the device");
}

#[test]
fn a_rooms_clear_push_carries_the_room_and_the_badge_on_every_platform() {
    let room = RoomId::parse("demo-room").expect("a room");
    let apns = clear_apns(&room, 4);
    assert!(
        apns.priority == Some(crate::ApnsPriority::PowerAware) && !apns.silent,
        "priority 5, push type alert: the badge is applied, never throttled away"
    );
    assert_eq!(
        apns_json(&apns),
        json!({ "aps": { "badge": 4, "content-available": 1 }, "type": "clear", "room": "demo-room" })
    );
    let fcm = clear_fcm(&room, 4);
    assert_eq!(fcm["data"], json!({ "type": "clear", "room": "demo-room", "badge": "4" }));
    assert!(fcm.get("notification").is_none());
    assert_eq!(fcm["android"]["priority"], "normal");
    let web = clear_webpush(&room, 4);
    let payload: Value = serde_json::from_slice(&web.payload).expect("JSON");
    assert_eq!(payload, json!({ "app_badge": 4, "type": "clear", "room": "demo-room" }));
    let long = RoomId::parse(&"r".repeat(100)).expect("a room");
    assert_eq!(room_collapse_key(&long).len(), 32, "an apns-collapse-id is at most 64 bytes");
}

#[test]
fn a_private_alert_shows_a_neutral_text_and_carries_the_sealed_push_or_the_id_only() {
    let message = GenericCallback::parse(&seed_callback()).expect("parses").message;
    let style = ChatStyle::default();
    let apns = apns_json(&message.to_apns_private(&style, &RECIPIENT, Some(b"ciphertext")));
    assert_eq!(
        apns,
        json!({ "aps": { "alert": { "loc-key": "im_loc_private", "body": "New message" }, "mutable-content": 1,
                         "badge": 3, "sound": "default", "thread-id": "demo-room" },
                "type": "chat", "room": "demo-room", "encrypted": "Y2lwaGVydGV4dA" })
    );
    let ja = locale("ja");
    let id_only = apns_json(&message.to_apns_private(&style, &Recipient { locale: Some(&ja), ..RECIPIENT }, None));
    assert_eq!(id_only["aps"]["alert"]["body"], "新着メッセージ");
    assert_eq!((&id_only["messageId"], &id_only["room"]), (&json!("5dd51a4f21841443cfd3090d"), &json!("demo-room")));
    assert!(id_only.get("encrypted").is_none());
    let fcm = message.to_fcm_private(&RECIPIENT, None);
    assert_eq!(
        fcm,
        json!({ "android": { "ttl": "3600s", "priority": "high" },
                "data": { "type": "chat", "room": "demo-room", "messageId": "5dd51a4f21841443cfd3090d", "badge": "3" } })
    );
    for text in [&apns.to_string(), &id_only.to_string(), &fcm.to_string()] {
        for clear in ["lala", "SSS", "Demo Room"] {
            assert!(!text.contains(clear), "{clear} in {text}");
        }
    }
    // Which form each device gets.
    use crate::{PrivacyFallback as Fallback, PrivacyMode as Mode};
    let form = |mode, fallback, has_key| Privacy { mode, fallback }.form(has_key);
    assert_eq!(form(Mode::Off, Fallback::IdOnly, true), PrivateForm::Clear);
    assert_eq!(form(Mode::Encrypt, Fallback::IdOnly, true), PrivateForm::Sealed);
    assert_eq!(form(Mode::Encrypt, Fallback::IdOnly, false), PrivateForm::IdOnly);
    assert_eq!(form(Mode::Encrypt, Fallback::Clear, false), PrivateForm::Clear);
    assert_eq!(form(Mode::IdOnly, Fallback::Clear, true), PrivateForm::IdOnly);
}
