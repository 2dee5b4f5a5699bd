//! A push2clients `payload`: read as the route reads it, validated, and, when
//! valid, built for every provider.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pushgate_domain::CustomPush;

fuzz_target!(|data: &[u8]| {
    let Ok(push) = serde_json::from_slice::<CustomPush>(data) else { return };
    if push.validate().is_err() {
        return;
    }
    let apns = push.to_apns();
    assert!(apns.payload.len() <= pushgate_providers::apns::MAX_PAYLOAD_BYTES, "APNs payload too large");
    let _ = push.to_fcm(1_800_000_000);
    let webpush = push.to_webpush(1_800_000_000, Some("https://chat.example/rooms/{room}"));
    assert!(webpush.payload.len() <= pushgate_domain::MAX_WEBPUSH_BYTES, "Web Push payload too large");
});
