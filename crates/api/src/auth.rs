//! API keys: which app a presented `IM-API-KEY` opens.

use pushgate_domain::{AppId, Environment};
use sha2::{Digest as _, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use subtle::{ConditionallySelectable as _, ConstantTimeEq as _};

/// What the API needs to know of one configured app.
#[derive(Debug, Clone)]
pub struct AppSettings {
    /// The IMKIT app id.
    pub id: AppId,
    /// The APNs environment for iOS devices that do not name one.
    pub default_environment: Environment,
    /// The longest this app's pushes are retried after acceptance, ms.
    pub max_age_ms: i64,
    /// How this app's IMKIT callbacks prove their origin.
    pub origin: crate::origin::OriginCheck,
    /// What an online recipient of a chat message gets.
    pub online_policy: pushgate_domain::OnlinePolicy,
    /// Whether a muted room's unreads count in the badge.
    pub count_muted_rooms: bool,
    /// The coalescing window of a busy room's alerts, ms; 0: off.
    pub coalescing_window_ms: i64,
    /// Where this app's Web Push subscriptions may point.
    pub webpush_endpoints: pushgate_domain::WebPushEndpoints,
    /// The app's VAPID public key (base64url, uncompressed point), when Web
    /// Push is configured: what browsers take as `applicationServerKey`.
    pub vapid_public_key: Option<String>,
    /// IMKIT's client credentials, when `[apps.imkit]` is configured.
    pub client_auth: Option<Arc<crate::client_auth::ClientAuth>>,
    /// Limits on the app's accept routes.
    pub inbound: Arc<crate::limits::InboundLimits>,
    /// Whether the app holds Apple's Critical Alerts entitlement (`[apps.apns] critical_alerts`).
    pub critical_alerts: bool,
    /// How the app authenticates to APNs; `None`: no `[apps.apns]`.
    pub apns_auth: Option<ApnsAuth>,
    /// The app's APNs broadcast channels (token-based authentication only).
    pub channels: Option<Arc<dyn crate::channels::BroadcastChannels>>,
}

/// How an app authenticates to APNs, which decides what it may send: Apple
/// takes Live Activity pushes with token-based authentication only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApnsAuth {
    /// A `.p8` signing key (`key_file`, `key_id`, `team_id`).
    Token,
    /// A client certificate (`certificate_file`).
    Certificate,
}

/// The configured apps, by id.
pub type Apps = HashMap<AppId, Arc<AppSettings>>;

/// The app a request authenticated as.
#[derive(Debug, Clone)]
pub struct AuthenticatedApp(pub Arc<AppSettings>);

/// Every API key of every app, kept only as SHA-256 digests.
///
/// A presented key is hashed and compared with every digest in constant time,
/// without stopping at the first match, so the time taken says nothing about
/// which key, or how much of one, matched.
///
/// Admin keys (`[admin] api_keys`) open every app: a request with one names
/// the app it acts on in `IM-APP-ID`, and the console's routes take them.
#[derive(Debug, Default)]
pub struct ApiKeyRing {
    keys: RwLock<Vec<(AppId, [u8; 32])>>,
    admin: RwLock<Vec<[u8; 32]>>,
}

/// What a presented key opens.
#[derive(Debug, Clone)]
pub enum Access {
    /// One app: an app's key.
    App(Arc<AppSettings>),
    /// Every app: an admin key.
    Admin,
}

/// SHA-256 of an API key, the only form in which keys are kept.
pub fn api_key_digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

impl ApiKeyRing {
    /// Adds a key, given as its digest, for an app.
    pub fn insert(&self, app_id: AppId, digest: [u8; 32]) {
        self.keys.write().unwrap_or_else(std::sync::PoisonError::into_inner).push((app_id, digest));
    }

    /// Replaces every key at once (a refresh from the configuration and the
    /// store): a key revoked in the store stops opening its app here.
    pub fn replace_all(&self, keys: Vec<(AppId, [u8; 32])>) {
        *self.keys.write().unwrap_or_else(std::sync::PoisonError::into_inner) = keys;
    }

    /// Whether the app has at least one key.
    pub fn has_key_for(&self, app_id: &AppId) -> bool {
        self.keys.read().unwrap_or_else(std::sync::PoisonError::into_inner).iter().any(|(owner, _)| owner == app_id)
    }

    /// Sets the admin keys, given as digests.
    pub fn set_admin_keys(&self, digests: Vec<[u8; 32]>) {
        *self.admin.write().unwrap_or_else(std::sync::PoisonError::into_inner) = digests;
    }

    /// The app the key opens, if it is an app's key.
    pub fn authenticate(&self, presented: &str, apps: &Apps) -> Option<AuthenticatedApp> {
        match self.access(presented, apps)? {
            Access::App(app) => Some(AuthenticatedApp(app)),
            Access::Admin => None,
        }
    }

    /// What the key opens, if anything: every key, app and admin, is
    /// compared, whichever matches.
    pub fn access(&self, presented: &str, apps: &Apps) -> Option<Access> {
        let presented = api_key_digest(presented);
        let keys = self.keys.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        let admin = self.admin.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        // Index of the matching key plus one; 0 means none matched.
        let mut matched: u64 = 0;
        let mut is_admin = subtle::Choice::from(0);
        for (index, (_, digest)) in keys.iter().enumerate() {
            let candidate = u64::try_from(index + 1).unwrap_or(u64::MAX);
            matched = u64::conditional_select(&matched, &candidate, digest.ct_eq(&presented));
        }
        for digest in admin.iter() {
            is_admin |= digest.ct_eq(&presented);
        }
        if bool::from(is_admin) {
            return Some(Access::Admin);
        }
        let index = usize::try_from(matched).ok()?.checked_sub(1)?;
        let (app_id, _) = keys.get(index)?;
        apps.get(app_id).cloned().map(Access::App)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apps() -> Apps {
        ["one", "two"]
            .into_iter()
            .map(|name| {
                let id = AppId::parse(name).expect("app id");
                (
                    id.clone(),
                    Arc::new(AppSettings {
                        id,
                        default_environment: Environment::Production,
                        max_age_ms: 86_400_000,
                        origin: Default::default(),
                        online_policy: Default::default(),
                        count_muted_rooms: true,
                        coalescing_window_ms: 0,
                        webpush_endpoints: Default::default(),
                        vapid_public_key: None,
                        client_auth: None,
                        inbound: Default::default(),
                        critical_alerts: false,
                        apns_auth: None,
                        channels: None,
                    }),
                )
            })
            .collect()
    }

    #[test]
    fn a_key_opens_only_its_own_app() {
        let ring = ApiKeyRing::default();
        ring.insert(AppId::parse("one").expect("id"), api_key_digest("key-of-app-one-0000"));
        ring.insert(AppId::parse("two").expect("id"), api_key_digest("key-of-app-two-0000"));
        let apps = apps();
        let opened = ring.authenticate("key-of-app-two-0000", &apps).expect("known key");
        assert_eq!(opened.0.id.as_str(), "two");
        assert!(ring.authenticate("key-of-app-two-000", &apps).is_none());
        assert!(ring.authenticate("", &apps).is_none());
    }

    #[test]
    fn an_admin_key_opens_every_app_and_is_no_app_key() {
        let ring = ApiKeyRing::default();
        ring.insert(AppId::parse("one").expect("id"), api_key_digest("key-of-app-one-0000"));
        ring.set_admin_keys(vec![api_key_digest("the-admin-key-00000")]);
        let apps = apps();
        assert!(matches!(ring.access("the-admin-key-00000", &apps), Some(Access::Admin)));
        assert!(ring.authenticate("the-admin-key-00000", &apps).is_none(), "names no app by itself");
        assert!(
            matches!(ring.access("key-of-app-one-0000", &apps), Some(Access::App(app)) if app.id.as_str() == "one")
        );
        assert!(ring.access("the-admin-key-0000", &apps).is_none());
    }

    #[test]
    fn a_key_for_an_app_no_longer_configured_opens_nothing() {
        let ring = ApiKeyRing::default();
        ring.insert(AppId::parse("gone").expect("id"), api_key_digest("key-of-a-removed-app"));
        assert!(ring.authenticate("key-of-a-removed-app", &apps()).is_none());
    }
}
