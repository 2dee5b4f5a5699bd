//! Each app's provider clients, built from its configuration: the only place
//! that turns `[apps.apns]`, `[apps.fcm]` and `[apps.webpush]` into clients
//! for the worker.

use crate::config::{ApnsConfig, AppConfig, FcmConfig};
use anyhow::Context as _;
use pushgate_api::channels::{BroadcastChannels, ChannelFailure, ChannelView};
use pushgate_delivery::{ApnsProviders, AppProviders, FcmProvider, SendRate, WebPushProvider};
use pushgate_domain::{AppId, ChatStyle, Environment, Locale, ProviderKind};
use pushgate_providers::apns::{
    ApnsAuth, ApnsClient, ApnsClientConfig, BroadcastHeaders, ChannelError, ChannelInfo, ChannelManager, Notification,
    Priority, PushType, StoragePolicy, TokenSigner, apns_id,
};
use pushgate_providers::fcm::{FcmClient, FcmClientConfig, ServiceAccount};
use pushgate_providers::webpush::{WebPushClient, WebPushClientConfig};
use pushgate_providers::{Outcome, SystemClock};
use pushgate_store::Store;
use std::collections::HashMap;
use std::sync::Arc;

/// The VAPID public key of a P-256 private key in PEM (SEC1 `EC PRIVATE KEY`
/// or PKCS#8 `PRIVATE KEY`): the uncompressed point, base64url without
/// padding, as browsers take it for `applicationServerKey`.
pub fn vapid_public_key(pem: &str) -> anyhow::Result<String> {
    use base64::Engine as _;
    use p256::elliptic_curve::sec1::ToEncodedPoint as _;
    use p256::pkcs8::DecodePrivateKey as _;
    let key = p256::SecretKey::from_sec1_pem(pem)
        .or_else(|_| p256::SecretKey::from_pkcs8_pem(pem))
        .map_err(|_| anyhow::anyhow!("not a P-256 private key in PEM (SEC1 or PKCS#8)"))?;
    let point = key.public_key().to_encoded_point(false);
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(point.as_bytes()))
}

/// The VAPID public key of the app's configured Web Push key file, read now.
pub fn configured_vapid_public_key(webpush: &crate::config::WebPushConfig) -> anyhow::Result<String> {
    let path = &webpush.vapid_private_key_file;
    let pem = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    vapid_public_key(&pem).with_context(|| format!("apps.webpush.vapid_private_key_file {}", path.display()))
}

/// A new VAPID key pair: the private key in PKCS#8 PEM, and its public key
/// as [`vapid_public_key`] gives it.
pub fn generate_vapid_key() -> anyhow::Result<(String, String)> {
    use p256::pkcs8::EncodePrivateKey as _;
    let key = loop {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|error| anyhow::anyhow!("no randomness: {error}"))?;
        // A random 32-byte value is a valid scalar but with odds of 2^-32.
        if let Ok(key) = p256::SecretKey::from_slice(&bytes) {
            break key;
        }
    };
    let pem = key.to_pkcs8_pem(p256::pkcs8::LineEnding::LF).context("encoding the key")?.to_string();
    let public = vapid_public_key(&pem)?;
    Ok((pem, public))
}

/// Builds the clients an app's configuration asks for. No connection is
/// opened until the first send. Rate limits are one budget for every node
/// when `store` is shared.
pub fn app_providers(
    id: &AppId,
    app: &AppConfig,
    max_attempts: u32,
    store: &Arc<dyn Store>,
) -> anyhow::Result<AppProviders> {
    let rate = |per_second: u32, provider: ProviderKind| {
        SendRate::new(per_second).map(|rate| rate.shared_on(store, format!("{id}/{provider}")))
    };
    let chat_style = ChatStyle {
        default_locale: Locale::parse(&app.chat.locale).ok(),
        sound: Some(app.chat.sound.clone()).filter(|sound| !sound.is_empty()),
        icon: app.chat.icon.clone(),
        click_action: app.chat.click_action.clone(),
        web_navigate: app.webpush.as_ref().and_then(|webpush| webpush.navigate.clone()),
        collapse_by_room: app.coalescing.window_seconds > 0,
        // Validated with the configuration.
        privacy: app.privacy.privacy(),
    };
    let mut providers = AppProviders::new(max_attempts, chat_style);
    if let Some(apns) = &app.apns {
        let (production, sandbox) = apns_clients(apns)?;
        providers = providers.with_apns(ApnsProviders {
            production,
            sandbox,
            topic: apns.topic.clone(),
            default_environment: apns.environment,
            rate: apns.rate_per_second.and_then(|per_second| rate(per_second, ProviderKind::Apns)),
        });
    }
    if let Some(fcm) = &app.fcm {
        providers = providers.with_fcm(FcmProvider {
            client: Arc::new(fcm_client(fcm)?),
            rate: rate(fcm.rate_per_second, ProviderKind::Fcm),
        });
    }
    if let Some(webpush) = &app.webpush {
        let pem = std::fs::read(&webpush.vapid_private_key_file)
            .with_context(|| format!("reading {}", webpush.vapid_private_key_file.display()))?;
        let mut config = WebPushClientConfig::new(pem, webpush.subject.clone());
        config.extra_ca_pem =
            webpush.ca_file.as_ref().map(std::fs::read).transpose().context("reading apps.webpush.ca_file")?;
        providers = providers.with_webpush(WebPushProvider {
            client: Arc::new(WebPushClient::new(config, Arc::new(SystemClock))?),
            endpoints: webpush.endpoints(),
            rate: webpush.rate_per_second.and_then(|per_second| rate(per_second, ProviderKind::WebPush)),
        });
    }
    Ok(providers)
}

/// The app's APNs clients: production and sandbox (one endpoint override serves both).
fn apns_clients(apns: &ApnsConfig) -> anyhow::Result<(Arc<ApnsClient>, Arc<ApnsClient>)> {
    let auth = apns_auth(apns)?;
    let client =
        |default_endpoint: &str| apns_client(apns, &auth, apns.endpoint.as_ref(), default_endpoint).map(Arc::new);
    Ok((client(pushgate_providers::apns::PRODUCTION_ENDPOINT)?, client(pushgate_providers::apns::SANDBOX_ENDPOINT)?))
}

/// One APNs client of the app's: `endpoint`, or Apple's `default_endpoint`.
fn apns_client(
    apns: &ApnsConfig,
    auth: &ApnsAuth,
    endpoint: Option<&url::Url>,
    default_endpoint: &str,
) -> anyhow::Result<ApnsClient> {
    let endpoint = match endpoint {
        Some(endpoint) => endpoint.clone(),
        None => default_endpoint.parse()?,
    };
    let mut config = ApnsClientConfig::new(endpoint, auth.clone());
    config.extra_ca_pem = apns.ca_file.as_ref().map(std::fs::read).transpose().context("reading apps.apns.ca_file")?;
    config.connections = apns.connections;
    Ok(ApnsClient::new(config)?)
}

/// The app's APNs broadcast channels, for an app with token-based
/// authentication (Apple takes no certificate for them): per environment, a
/// client of the channel management API and one of the notification
/// endpoint for broadcasts (their own connections, opened on first use).
pub fn apns_channels(apns: &ApnsConfig) -> anyhow::Result<Option<Arc<dyn BroadcastChannels>>> {
    let auth = apns_auth(apns)?;
    if matches!(auth, ApnsAuth::Certificate { .. }) {
        return Ok(None);
    }
    let side = |notifications: &str, management: &str| -> anyhow::Result<ChannelSide> {
        let manager = apns_client(apns, &auth, apns.channels_endpoint.as_ref(), management)?;
        Ok(ChannelSide {
            manager: ChannelManager::new(manager, apns.topic.clone()),
            broadcaster: apns_client(apns, &auth, apns.endpoint.as_ref(), notifications)?,
        })
    };
    use pushgate_providers::apns::{
        PRODUCTION_CHANNELS_ENDPOINT, PRODUCTION_ENDPOINT, SANDBOX_CHANNELS_ENDPOINT, SANDBOX_ENDPOINT,
    };
    Ok(Some(Arc::new(ApnsChannels {
        production: side(PRODUCTION_ENDPOINT, PRODUCTION_CHANNELS_ENDPOINT)?,
        sandbox: side(SANDBOX_ENDPOINT, SANDBOX_CHANNELS_ENDPOINT)?,
        bundle_id: apns.topic.clone(),
        policies: std::sync::Mutex::default(),
    })))
}

/// One environment's channel clients.
#[derive(Debug)]
struct ChannelSide {
    manager: ChannelManager,
    broadcaster: ApnsClient,
}

/// [`BroadcastChannels`] over Apple's APIs.
#[derive(Debug)]
struct ApnsChannels {
    production: ChannelSide,
    sandbox: ChannelSide,
    bundle_id: String,
    /// Each channel's storage policy once known (a channel's never changes;
    /// Apple keeps at most 10,000 per environment): a broadcast to a channel
    /// that stores nothing must say `apns-expiration: 0`.
    policies: std::sync::Mutex<HashMap<(Environment, String), StoragePolicy>>,
}

impl ApnsChannels {
    fn side(&self, environment: Environment) -> &ChannelSide {
        match environment {
            Environment::Production => &self.production,
            Environment::Sandbox => &self.sandbox,
        }
    }

    fn policies(&self) -> std::sync::MutexGuard<'_, HashMap<(Environment, String), StoragePolicy>> {
        self.policies.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The channel's storage policy, from APNs the first time.
    async fn policy(&self, environment: Environment, channel_id: &str) -> Result<StoragePolicy, ChannelFailure> {
        if let Some(policy) = self.policies().get(&(environment, channel_id.to_owned())) {
            return Ok(*policy);
        }
        Ok(self.read_channel(environment, channel_id).await?.storage_policy)
    }

    /// Reads a channel from APNs, and keeps its storage policy.
    async fn read_channel(&self, environment: Environment, channel_id: &str) -> Result<ChannelInfo, ChannelFailure> {
        let channel = self.side(environment).manager.read(channel_id).await.map_err(channel_failure)?;
        self.policies().insert((environment, channel_id.to_owned()), channel.storage_policy);
        Ok(channel)
    }
}

fn channel_failure(error: ChannelError) -> ChannelFailure {
    match error {
        ChannelError::Refused { status, reason } => ChannelFailure::Refused { status, reason },
        ChannelError::Unreachable(reason) => ChannelFailure::Unreachable(reason.to_string()),
        ChannelError::Unexpected(what) => ChannelFailure::Unreachable(what),
    }
}

#[async_trait::async_trait]
impl BroadcastChannels for ApnsChannels {
    async fn create(&self, environment: Environment, storage_policy: u8) -> Result<String, ChannelFailure> {
        let policy = StoragePolicy::from_number(u64::from(storage_policy))
            .ok_or(ChannelFailure::Refused { status: 400, reason: "BadMessageStoragePolicy".into() })?;
        let id = self.side(environment).manager.create(policy).await.map_err(channel_failure)?;
        self.policies().insert((environment, id.clone()), policy);
        Ok(id)
    }

    async fn read(&self, environment: Environment, channel_id: &str) -> Result<ChannelView, ChannelFailure> {
        let channel = self.read_channel(environment, channel_id).await?;
        Ok(ChannelView { storage_policy: channel.storage_policy.number(), push_type: channel.push_type })
    }

    async fn delete(&self, environment: Environment, channel_id: &str) -> Result<(), ChannelFailure> {
        self.policies().remove(&(environment, channel_id.to_owned()));
        self.side(environment).manager.delete(channel_id).await.map_err(channel_failure)
    }

    async fn list(&self, environment: Environment) -> Result<Vec<String>, ChannelFailure> {
        self.side(environment).manager.list().await.map_err(channel_failure)
    }

    async fn broadcast(
        &self,
        environment: Environment,
        channel_id: &str,
        payload: &[u8],
        priority: u8,
        expiration: Option<u64>,
    ) -> Result<(), ChannelFailure> {
        let side = self.side(environment);
        // A channel that stores no message takes `apns-expiration: 0` only.
        let expiration = match expiration {
            Some(expiration) => Some(expiration),
            None => match self.policy(environment, channel_id).await? {
                StoragePolicy::NoMessageStored => Some(0),
                StoragePolicy::MostRecentMessageStored => None,
            },
        };
        let headers = BroadcastHeaders { channel_id, priority, expiration };
        let sent = side.broadcaster.broadcast(&self.bundle_id, headers, payload).await.map_err(channel_failure);
        if let Err(ChannelFailure::Refused { status: 404, .. }) = &sent {
            // Deleted elsewhere (another node, Apple's console).
            self.policies().remove(&(environment, channel_id.to_owned()));
        }
        sent
    }
}

/// The app's APNs authentication: its `.p8` signing key or its certificate.
fn apns_auth(apns: &ApnsConfig) -> anyhow::Result<ApnsAuth> {
    Ok(match (&apns.key_file, &apns.key_id, &apns.team_id, &apns.certificate_file, &apns.certificate_key_file) {
        (Some(key_file), Some(key_id), Some(team_id), _, _) => {
            let pem = std::fs::read(key_file).with_context(|| format!("reading {}", key_file.display()))?;
            ApnsAuth::Token(Arc::new(TokenSigner::new(&pem, key_id, team_id, Arc::new(SystemClock))?))
        }
        (_, _, _, Some(certificate), Some(key)) => ApnsAuth::Certificate {
            chain_pem: std::fs::read(certificate).with_context(|| format!("reading {}", certificate.display()))?,
            key_pem: std::fs::read(key).with_context(|| format!("reading {}", key.display()))?,
        },
        _ => anyhow::bail!("apps.apns: no authentication configured"),
    })
}

/// The app's FCM client.
fn fcm_client(fcm: &FcmConfig) -> anyhow::Result<FcmClient> {
    let text = std::fs::read_to_string(&fcm.service_account_file)
        .with_context(|| format!("reading {}", fcm.service_account_file.display()))?;
    let account: ServiceAccount = serde_json::from_str(&text).context("parsing the service account")?;
    let mut config = FcmClientConfig::new(account)?;
    if let Some(endpoint) = &fcm.endpoint {
        config.endpoint = endpoint.clone();
    }
    config.extra_ca_pem = fcm.ca_file.as_ref().map(std::fs::read).transpose().context("reading apps.fcm.ca_file")?;
    Ok(FcmClient::new(config, Arc::new(SystemClock))?)
}

/// What a probe found for one provider of one app.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ProbeResult {
    /// The app.
    pub app: String,
    /// `apns`, `apns-sandbox`, `fcm` or `webpush`.
    pub provider: String,
    /// `ok`, `refused` (the credentials or configuration) or `unreachable`.
    pub state: ProbeState,
    /// The provider's answer.
    pub detail: String,
}

/// A probe's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProbeState {
    /// The provider accepted the credentials.
    Ok,
    /// The provider refused the credentials or the configuration.
    Refused,
    /// The provider could not be reached or did not say.
    Unreachable,
}

/// A made-up device token: APNs answering `BadDeviceToken` (or accepting it)
/// proves the credentials and topic; refusing them disproves them.
const PROBE_APNS_TOKEN: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// A made-up registration token for FCM's `validate_only` send.
const PROBE_FCM_TOKEN: &str = "pushgate-check-config-probe";

/// Proves each configured credential against its provider without
/// notifying anyone: an APNs request to a made-up token (both environments),
/// an FCM `validate_only` send; a Web Push key can only be loaded (a push
/// service answers for a subscription, and there is none to try).
pub async fn probe(id: &AppId, app: &AppConfig) -> Vec<ProbeResult> {
    let mut results = Vec::new();
    let result = |provider: &str, state, detail: String| ProbeResult {
        app: id.to_string(),
        provider: provider.to_owned(),
        state,
        detail,
    };
    let verdict = |outcome: Outcome| match outcome {
        Outcome::Delivered => (ProbeState::Ok, "accepted".to_owned()),
        Outcome::InvalidToken { reason, .. } => {
            (ProbeState::Ok, format!("credentials accepted ({reason} for a made-up token)"))
        }
        Outcome::Rejected { reason } if matches!(reason.code().as_ref(), "BadDeviceToken" | "INVALID_ARGUMENT") => {
            (ProbeState::Ok, format!("credentials accepted ({reason} for a made-up token)"))
        }
        Outcome::Rejected { reason } | Outcome::AppRejected { reason } => (ProbeState::Refused, reason.to_string()),
        Outcome::Retry { reason, .. } => (ProbeState::Unreachable, reason.to_string()),
    };
    if let Some(apns) = &app.apns {
        match apns_clients(apns) {
            Err(error) => results.push(result("apns", ProbeState::Refused, format!("{error:#}"))),
            Ok((production, sandbox)) => {
                for (name, client) in [("apns", production), ("apns-sandbox", sandbox)] {
                    let notification = Notification {
                        device_token: PROBE_APNS_TOKEN,
                        push_type: PushType::Background,
                        topic: &apns.topic,
                        apns_id: apns_id("check-config", name),
                        expiration: Some(0),
                        priority: Some(Priority::PowerAware),
                        collapse_id: None,
                        payload: br#"{"aps":{"content-available":1}}"#,
                    };
                    let (state, detail) = verdict(client.send(&notification).await);
                    results.push(result(name, state, detail));
                }
            }
        }
    }
    if let Some(fcm) = &app.fcm {
        let (state, detail) = match fcm_client(fcm) {
            Err(error) => (ProbeState::Refused, format!("{error:#}")),
            Ok(client) => {
                verdict(client.validate(PROBE_FCM_TOKEN, &serde_json::json!({ "data": { "probe": "1" } })).await)
            }
        };
        results.push(result("fcm", state, detail));
    }
    if let Some(webpush) = &app.webpush {
        let loaded = std::fs::read_to_string(&webpush.vapid_private_key_file)
            .map_err(anyhow::Error::from)
            .and_then(|pem| vapid_public_key(&pem));
        results.push(match loaded {
            Ok(public_key) => result("webpush", ProbeState::Ok, format!("VAPID key loads (public key {public_key})")),
            Err(error) => result("webpush", ProbeState::Refused, format!("{error:#}")),
        });
    }
    results
}

/// An app's chat server, as the API asks it who holds a client token.
#[derive(Debug)]
struct ChatServerClient(pushgate_providers::imkit::ImkitClient);

#[async_trait::async_trait]
impl pushgate_api::client_auth::ChatServer for ChatServerClient {
    async fn me(&self, client_key: &str, token: &str) -> Result<pushgate_api::client_auth::ChatAnswer, String> {
        use pushgate_api::client_auth::ChatAnswer;
        use pushgate_providers::imkit::MeError;
        match self.0.me(client_key, token).await {
            Ok(client) => Ok(ChatAnswer::Client { client_id: client.client_id, app_id: client.app_id }),
            Err(MeError::Refused) => Ok(ChatAnswer::Refused),
            Err(MeError::Unreachable(why)) => Err(why),
        }
    }
}

/// Most client tokens whose answer an app keeps.
const CLIENT_TOKENS_KEPT: u64 = 100_000;

/// `[apps.imkit]` turned into the API's client-credential check.
pub fn client_auth(imkit: &crate::config::ImkitConfig) -> anyhow::Result<pushgate_api::client_auth::ClientAuth> {
    use pushgate_api::client_auth::{ClientAuth, ClientAuthSettings};
    use std::time::Duration;
    let extra_ca_pem = imkit.ca_file.as_ref().map(std::fs::read).transpose().context("reading apps.imkit.ca_file")?;
    let client = pushgate_providers::imkit::ImkitClient::new(
        &imkit.url,
        extra_ca_pem.as_deref(),
        Duration::from_millis(imkit.timeout_ms),
    )
    .context("apps.imkit")?;
    let settings = ClientAuthSettings {
        cache_for: Duration::from_secs(imkit.cache_seconds),
        refused_for: Duration::from_secs(imkit.refused_cache_seconds),
        capacity: CLIENT_TOKENS_KEPT,
    };
    Ok(ClientAuth::new(imkit.client_key.clone(), Arc::new(ChatServerClient(client)), settings))
}
