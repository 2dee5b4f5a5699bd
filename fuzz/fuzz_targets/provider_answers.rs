//! An APNs or FCM answer: any status, any body, mapped to an outcome.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&first, body)) = data.split_first() else { return };
    let Some((&second, body)) = body.split_first() else { return };
    let Ok(status) = http::StatusCode::from_u16(100 + (u16::from(first) << 8 | u16::from(second)) % 500) else {
        return;
    };
    let retry_after = (first % 3 == 0).then(|| std::time::Duration::from_secs(u64::from(second)));
    let _ = pushgate_providers::apns::map_answer(status, body, retry_after);
    let _ = pushgate_providers::fcm::map_answer(status, body, retry_after);
});
