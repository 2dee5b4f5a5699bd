//! A push2clients `payload`: read as the route reads it, validated, and, when
//! valid, built for every provider without a panic, each payload valid JSON.
//! A custom push is not cut to size (a server's own text is sent as given):
//! one over a provider's limit is refused by that provider's client before it
//! is sent (`PayloadTooLarge`, the device kept), so sizes are not asserted
//! here; the chat payloads pushgate fits are (the `callback` target).
#![no_main]

use libfuzzer_sys::fuzz_target;
use pushgate_domain::CustomPush;

fuzz_target!(|data: &[u8]| {
    let Ok(push) = serde_json::from_slice::<CustomPush>(data) else { return };
    if push.validate().is_err() {
        return;
    }
    let apns = push.to_apns();
    assert!(serde_json::from_slice::<serde_json::Value>(&apns.payload).is_ok(), "APNs payload is JSON");
    let _ = push.to_fcm(1_800_000_000);
    let webpush = push.to_webpush(1_800_000_000, Some("https://chat.example/rooms/{room}"));
    assert!(serde_json::from_slice::<serde_json::Value>(&webpush.payload).is_ok(), "Web Push payload is JSON");
});
