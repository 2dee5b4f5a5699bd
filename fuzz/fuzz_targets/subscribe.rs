//! A `/me/subscribe` body's device fields: the type, the token as a string
//! for every type, and the token as a PushSubscription object.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pushgate_domain::{DeviceId, DeviceType, Environment, Locale, PushToken, TimeZoneName};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    for device_type in ["ios", "ios-voip", "android", "fcm", "web", "unifiedpush"] {
        let device_type = DeviceType::parse(device_type).expect("a known type");
        let _ = PushToken::parse(device_type, text);
    }
    let _ = (DeviceType::parse(text), DeviceId::parse(text), Environment::parse(text));
    let _ = (Locale::parse(text), TimeZoneName::parse(text));
    if let Ok(value) = serde_json::from_str::<serde_json::Value>(text) {
        let _ = PushToken::from_web_subscription(&value);
    }
});
