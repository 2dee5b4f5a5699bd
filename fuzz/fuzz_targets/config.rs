//! A configuration file's text, with every problem it has reported at once.
//! A file naming a device or a kernel file (`/dev/zero`) could make the
//! loader read forever, so inputs naming those are left out: the loader
//! reads the files a configuration names, which only its author writes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if ["/dev", "/proc", "/sys"].iter().any(|special| text.contains(special)) {
        return;
    }
    let _ = pushgate::config::Config::from_text(text, "fuzz.toml", None, Vec::new());
});
