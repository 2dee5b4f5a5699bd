//! An IMKIT callback body (v2 or v1): parsed as the routes parse it, then every
//! payload built from it, for every device kind, as the message's own alert
//! and as a busy room's window alert (a summary naming the input as its
//! sender), and as a private alert (the clear push to seal, and the sealed
//! one, whose length is the plaintext's plus the fixed overhead); nothing may
//! panic, and every payload stays within its provider's size limit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pushgate_domain::{ChatStyle, GenericCallback, LegacyCallback, Locale, Recipient, SEAL_OVERHEAD, Summary};

fuzz_target!(|data: &[u8]| {
    let Ok(object) = serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(data) else { return };
    let locale = Locale::parse("ja").ok();
    let plain = Recipient { badge: Some(7), locale: locale.as_ref(), quiet: data.len() % 2 == 0, ..Recipient::default() };
    let summary = Summary { count: 50, senders: vec![String::from_utf8_lossy(data).into_owned(), "Bob".into()] };
    let window = Recipient { summary: Some(&summary), ..plain };
    let coalescing = ChatStyle { collapse_by_room: true, ..ChatStyle::default() };
    let cases = [(ChatStyle::default(), plain), (coalescing, window)];
    let mut messages = Vec::new();
    if let Ok(callback) = GenericCallback::parse(&object) {
        messages.push((callback.message, None));
    }
    if let Ok(callback) = LegacyCallback::parse(&object) {
        messages.push((callback.message, callback.alert));
    }
    for (message, alert) in messages {
        for (style, recipient) in &cases {
            let apns = message.to_apns(style, recipient, alert.as_deref());
            assert!(apns.payload.len() <= pushgate_providers::apns::MAX_PAYLOAD_BYTES, "APNs payload too large");
            assert!(apns.collapse_id.as_ref().is_none_or(|id| id.len() <= 64), "apns-collapse-id too long");
            let _ = message.to_apns_voip(style, recipient);
            let _ = message.to_fcm(style, recipient, alert.as_deref());
            let webpush = message.to_webpush(style, recipient, alert.as_deref());
            assert!(webpush.payload.len() <= pushgate_domain::MAX_WEBPUSH_BYTES, "Web Push payload too large");
            let sealed = vec![0; message.apns_to_seal(style, recipient, alert.as_deref()).len() + SEAL_OVERHEAD];
            let private = message.to_apns_private(style, recipient, Some(&sealed));
            assert!(private.payload.len() <= pushgate_providers::apns::MAX_PAYLOAD_BYTES, "private APNs too large");
            let sealed = vec![0; message.fcm_to_seal(style, recipient, alert.as_deref()).len() + SEAL_OVERHEAD];
            let private = message.to_fcm_private(recipient, Some(&sealed));
            assert!(private.to_string().len() <= pushgate_domain::MAX_FCM_BYTES, "private FCM too large");
        }
    }
});
