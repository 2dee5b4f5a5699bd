//! Validation: every problem of a loaded configuration at once, each named
//! by its key; provider keys are checked with the providers' own parsers.

use super::*;

impl Config {
    /// Every problem, each naming its key; none when the configuration may serve.
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        match (&self.server.tls_cert, &self.server.tls_key) {
            (Some(cert), Some(key)) => {
                check_readable(&mut problems, "server.tls_cert", cert);
                check_readable(&mut problems, "server.tls_key", key);
            }
            (None, None) => {}
            _ => problems.push("server.tls_cert and server.tls_key must be given together".into()),
        }
        if self.server.max_body_bytes < 1024 {
            problems.push("server.max_body_bytes: must be at least 1024".into());
        }
        if StoreKind::of(&self.store.url).is_none() {
            problems.push(format!(
                "store.url: expected sqlite://<path> or postgres://<user>@<host>/<database>, got {:?}",
                self.store.url.split(':').next().unwrap_or_default()
            ));
        }
        if let Some(endpoint) = &self.telemetry.otlp_endpoint
            && (!matches!(endpoint.scheme(), "http" | "https") || endpoint.host().is_none())
        {
            problems.push(format!("telemetry.otlp_endpoint: must be the collector's http(s) URL, got {endpoint}"));
        }
        if !(0.0..=1.0).contains(&self.telemetry.sample_ratio) {
            problems.push(format!("telemetry.sample_ratio: must be from 0 to 1, got {}", self.telemetry.sample_ratio));
        }
        if self.telemetry.service_name.trim().is_empty() {
            problems.push("telemetry.service_name: must not be empty".into());
        }
        let delivery = &self.delivery;
        for (key, value, low, high) in [
            ("concurrency", delivery.concurrency as u64, 1, 10_000),
            ("batch", u64::from(delivery.batch), 1, 10_000),
            ("lease_ms", delivery.lease_ms, 1_000, 3_600_000),
            ("retry_base_ms", delivery.retry_base_ms, 1, 3_600_000),
            ("retry_max_ms", delivery.retry_max_ms, delivery.retry_base_ms, 86_400_000),
            ("max_attempts", u64::from(delivery.max_attempts), 1, 1_000),
            ("max_age_seconds", delivery.max_age_seconds, 1, 30 * 86_400),
            ("poll_interval_ms", delivery.poll_interval_ms, 10, 60_000),
            ("pause_base_ms", delivery.pause_base_ms, 10, 3_600_000),
            ("pause_max_ms", delivery.pause_max_ms, delivery.pause_base_ms, 86_400_000),
            ("retention_hours", delivery.retention_hours, 1, 24 * 366),
        ] {
            if !(low..=high).contains(&value) {
                problems.push(format!("delivery.{key}: must be from {low} to {high}, got {value}"));
            }
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            problems
                .push(format!("log.level: {:?} is not a valid filter such as info or pushgate=debug", self.log.level));
        }
        if self.apps.is_empty() {
            problems.push("apps: at least one app is required".into());
        }
        let mut ids = HashSet::new();
        let mut keys = HashSet::new();
        let mut client_keys = HashSet::new();
        check_keys(&mut problems, "admin", &self.admin.api_keys, &mut keys);
        for (index, app) in self.apps.iter().enumerate() {
            let at = format!("apps[{index}]");
            match AppId::parse(&app.id) {
                Ok(_) if !ids.insert(app.id.as_str()) => {
                    problems.push(format!("{at}.id: {:?} is used by another app", app.id))
                }
                Ok(_) => {}
                Err(error) => problems.push(format!("{at}.id: {error}")),
            }
            check_keys(&mut problems, &at, &app.api_keys, &mut keys);
            if let Some(generic) = &app.generic_push
                && generic
                    .secret
                    .as_ref()
                    .is_some_and(|secret| secret.expose_secret().chars().count() < MIN_API_KEY_LEN)
            {
                problems.push(format!("{at}.generic_push.secret: must be at least {MIN_API_KEY_LEN} characters"));
            }
            if let Err(error) = pushgate_domain::OnlinePolicy::parse(&app.routing.online) {
                problems.push(format!("{at}.routing.online: {error}"));
            }
            if pushgate_domain::PrivacyMode::parse(&app.privacy.mode).is_err() {
                problems.push(format!("{at}.privacy.mode: must be off, encrypt or id_only"));
            }
            if pushgate_domain::PrivacyFallback::parse(&app.privacy.fallback).is_err() {
                problems.push(format!("{at}.privacy.fallback: must be clear or id_only"));
            }
            if app.coalescing.window_seconds > MAX_COALESCING_WINDOW_SECONDS {
                problems.push(format!(
                    "{at}.coalescing.window_seconds: at most {MAX_COALESCING_WINDOW_SECONDS} (0 turns coalescing off)"
                ));
            }
            match pushgate_domain::Locale::parse(&app.chat.locale) {
                Ok(locale) if pushgate_domain::has_text_for(&locale) => {}
                _ => problems.push(format!("{at}.chat.locale: must be en, zh-TW or ja")),
            }
            for (key, value) in [
                ("sound", Some(&app.chat.sound)),
                ("icon", app.chat.icon.as_ref()),
                ("click_action", Some(&app.chat.click_action)),
            ] {
                if value.is_some_and(|value| value.len() > MAX_CHAT_SETTING_BYTES) {
                    problems.push(format!("{at}.chat.{key}: must be at most {MAX_CHAT_SETTING_BYTES} bytes"));
                }
            }
            if let Some(apns) = &app.apns {
                check_apns_auth(&mut problems, &format!("{at}.apns"), apns);
                if !(1..=16).contains(&apns.connections) {
                    problems.push(format!("{at}.apns.connections: must be from 1 to 16"));
                }
                if apns.rate_per_second == Some(0) {
                    problems.push(format!("{at}.apns.rate_per_second: must be at least 1 (leave it out for no limit)"));
                }
                if apns.topic.trim().is_empty() {
                    problems.push(format!("{at}.apns.topic: the app's bundle id is required"));
                }
                check_endpoint(&mut problems, &format!("{at}.apns.endpoint"), apns.endpoint.as_ref());
                if let Some(ca) = &apns.ca_file {
                    check_readable(&mut problems, &format!("{at}.apns.ca_file"), ca);
                }
            }
            if let Some(fcm) = &app.fcm
                && fcm.rate_per_second == 0
            {
                problems.push(format!("{at}.fcm.rate_per_second: must be at least 1"));
            }
            if let Some(fcm) = &app.fcm {
                check_service_account(
                    &mut problems,
                    &format!("{at}.fcm.service_account_file"),
                    &fcm.service_account_file,
                );
                check_endpoint(&mut problems, &format!("{at}.fcm.endpoint"), fcm.endpoint.as_ref());
                if let Some(ca) = &fcm.ca_file {
                    check_readable(&mut problems, &format!("{at}.fcm.ca_file"), ca);
                }
            }
            if let Some(webpush) = &app.webpush {
                check_readable(
                    &mut problems,
                    &format!("{at}.webpush.vapid_private_key_file"),
                    &webpush.vapid_private_key_file,
                );
                if !(webpush.subject.starts_with("mailto:") || webpush.subject.starts_with("https:")) {
                    problems.push(format!("{at}.webpush.subject: must start with mailto: or https:"));
                }
                if let Some(ca) = &webpush.ca_file {
                    check_readable(&mut problems, &format!("{at}.webpush.ca_file"), ca);
                }
                if webpush.rate_per_second == Some(0) {
                    problems
                        .push(format!("{at}.webpush.rate_per_second: must be at least 1 (leave it out for no limit)"));
                }
                if let Some(navigate) = &webpush.navigate
                    && url::Url::parse(&navigate.replace("{room}", "room")).map_or(true, |url| url.scheme() != "https")
                {
                    problems
                        .push(format!("{at}.webpush.navigate: must be an https URL ({{room}} stands for the room id)"));
                }
                for host in &webpush.allowed_hosts {
                    let name = host.strip_prefix("*.").unwrap_or(host);
                    if url::Host::parse(name).is_err() || name.contains(['/', ':', '*']) {
                        problems.push(format!("{at}.webpush.allowed_hosts: {host:?} is not a host name"));
                    }
                }
            }
            for (key, value) in [
                ("requests_per_second", app.limits.requests_per_second),
                ("burst", app.limits.burst),
                ("in_flight", app.limits.in_flight),
            ] {
                if value == 0 {
                    problems.push(format!("{at}.limits.{key}: must be at least 1"));
                }
            }
            if let Some(imkit) = &app.imkit {
                if imkit.url.scheme() != "https" || imkit.url.host().is_none() {
                    problems.push(format!("{at}.imkit.url: must be the chat server's https URL, got {}", imkit.url));
                }
                if imkit.client_key.trim().is_empty() {
                    problems.push(format!("{at}.imkit.client_key: must be the app's IM-CLIENT-KEY"));
                } else if !client_keys.insert(imkit.client_key.as_str()) {
                    problems.push(format!("{at}.imkit.client_key: another app has the same one (it tells apps apart)"));
                }
                if let Some(ca) = &imkit.ca_file {
                    check_readable(&mut problems, &format!("{at}.imkit.ca_file"), ca);
                }
                for (key, value, low, high) in [
                    ("cache_seconds", imkit.cache_seconds, 0, 86_400),
                    ("refused_cache_seconds", imkit.refused_cache_seconds, 0, 3_600),
                    ("timeout_ms", imkit.timeout_ms, 100, 60_000),
                ] {
                    if !(low..=high).contains(&value) {
                        problems.push(format!("{at}.imkit.{key}: must be from {low} to {high}, got {value}"));
                    }
                }
            }
        }
        if problems.is_empty() { Ok(()) } else { Err(ConfigError(problems)) }
    }
}

/// Each key long enough and given once over the whole configuration (an
/// admin key that is also an app's would be both).
fn check_keys<'a>(problems: &mut Vec<String>, at: &str, given: &'a [SecretString], seen: &mut HashSet<&'a str>) {
    for (index, key) in given.iter().enumerate() {
        let key = key.expose_secret();
        if key.chars().count() < MIN_API_KEY_LEN || key.trim() != key {
            problems.push(format!(
                "{at}.api_keys[{index}]: an API key must be at least {MIN_API_KEY_LEN} characters without surrounding space"
            ));
        } else if !seen.insert(key) {
            problems.push(format!("{at}.api_keys[{index}]: the same key is given twice"));
        }
    }
}

fn check_readable(problems: &mut Vec<String>, key: &str, path: &Path) {
    if let Err(error) = std::fs::File::open(path) {
        problems.push(format!("{key}: cannot read {}: {error}", path.display()));
    }
}

/// Apple's key and team ids are 10 upper-case letters and digits (`ABC123DEFG`).
fn check_apple_id(problems: &mut Vec<String>, key: &str, value: &str) {
    if value.len() != 10 || !value.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()) {
        problems.push(format!(
            "{key}: must be Apple's id, 10 upper-case letters and digits such as ABC123DEFG, got {value:?}"
        ));
    }
}

fn check_endpoint(problems: &mut Vec<String>, key: &str, endpoint: Option<&url::Url>) {
    if let Some(url) = endpoint
        && (url.scheme() != "https" || url.host().is_none())
    {
        problems.push(format!("{key}: must be an https URL"));
    }
}

/// Token or certificate authentication, complete, with keys that parse.
fn check_apns_auth(problems: &mut Vec<String>, at: &str, apns: &ApnsConfig) {
    let token = (&apns.key_file, &apns.key_id, &apns.team_id);
    let certificate = (&apns.certificate_file, &apns.certificate_key_file);
    match (token, certificate) {
        ((Some(key_file), Some(key_id), Some(team_id)), (None, None)) => {
            check_apple_id(problems, &format!("{at}.key_id"), key_id);
            check_apple_id(problems, &format!("{at}.team_id"), team_id);
            match std::fs::read(key_file) {
                Err(error) => problems.push(format!("{at}.key_file: cannot read {}: {error}", key_file.display())),
                Ok(pem) => {
                    let clock = std::sync::Arc::new(pushgate_providers::SystemClock);
                    if let Err(error) = pushgate_providers::apns::TokenSigner::new(&pem, key_id, team_id, clock) {
                        problems.push(format!("{at}.key_file: {error}"));
                    }
                }
            }
        }
        ((None, None, None), (Some(certificate_file), Some(key_file))) => {
            match (std::fs::read(certificate_file), std::fs::read(key_file)) {
                (Ok(chain), Ok(key)) => {
                    if let Err(error) = pushgate_providers::client_tls_config(None, &[b"h2"], Some((&chain, &key))) {
                        problems.push(format!("{at}.certificate_file: {error}"));
                    }
                }
                (Err(error), _) => {
                    problems.push(format!("{at}.certificate_file: cannot read {}: {error}", certificate_file.display()));
                }
                (_, Err(error)) => {
                    problems.push(format!("{at}.certificate_key_file: cannot read {}: {error}", key_file.display()));
                }
            }
        }
        _ => problems.push(format!(
            "{at}: give either key_file, key_id and team_id (token authentication) or certificate_file and certificate_key_file (certificate authentication)"
        )),
    }
}

fn check_service_account(problems: &mut Vec<String>, key: &str, path: &Path) {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) => return problems.push(format!("{key}: cannot read {}: {error}", path.display())),
    };
    let client_file = serde_json::from_str::<serde_json::Value>(&text)
        .is_ok_and(|value| value.get("project_info").is_some() && value.get("client").is_some());
    if client_file {
        return problems.push(format!(
            "{key}: {} is a Firebase client file (google-services.json), which apps embed; pushgate needs a service \
             account key (Firebase console: Project settings, Service accounts, Generate new private key)",
            path.display()
        ));
    }
    match serde_json::from_str::<pushgate_providers::fcm::ServiceAccount>(&text) {
        Err(error) => problems.push(format!("{key}: {} is not a service-account JSON file: {error}", path.display())),
        Ok(account) => {
            if let Err(error) = account.check() {
                problems.push(format!("{key}: {error}"));
            }
        }
    }
}
