//! Each app's provider clients, built from its configuration: the only place
//! that turns `[apps.apns]` and `[apps.fcm]` into clients for the worker.

use crate::config::AppConfig;
use anyhow::Context as _;
use pushgate_delivery::{ApnsProviders, AppProviders, FcmProvider, SendRate};
use pushgate_domain::{AppId, ChatStyle, Locale, ProviderKind};
use pushgate_providers::SystemClock;
use pushgate_providers::apns::{ApnsAuth, ApnsClient, ApnsClientConfig, TokenSigner};
use pushgate_providers::fcm::{FcmClient, FcmClientConfig, ServiceAccount};
use pushgate_store::Store;
use std::sync::Arc;

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
    };
    let mut providers = AppProviders::new(max_attempts, chat_style);
    if let Some(apns) = &app.apns {
        let auth =
            match (&apns.key_file, &apns.key_id, &apns.team_id, &apns.certificate_file, &apns.certificate_key_file) {
                (Some(key_file), Some(key_id), Some(team_id), _, _) => {
                    let pem = std::fs::read(key_file).with_context(|| format!("reading {}", key_file.display()))?;
                    ApnsAuth::Token(Arc::new(TokenSigner::new(&pem, key_id, team_id, Arc::new(SystemClock))?))
                }
                (_, _, _, Some(certificate), Some(key)) => ApnsAuth::Certificate {
                    chain_pem: std::fs::read(certificate)
                        .with_context(|| format!("reading {}", certificate.display()))?,
                    key_pem: std::fs::read(key).with_context(|| format!("reading {}", key.display()))?,
                },
                _ => anyhow::bail!("apps.apns: no authentication configured"),
            };
        let extra_ca_pem = apns.ca_file.as_ref().map(std::fs::read).transpose().context("reading apps.apns.ca_file")?;
        let client = |default_endpoint: &str| -> anyhow::Result<Arc<ApnsClient>> {
            // An endpoint override (a fake, a proxy) serves both environments.
            let endpoint = match &apns.endpoint {
                Some(endpoint) => endpoint.clone(),
                None => default_endpoint.parse()?,
            };
            let mut config = ApnsClientConfig::new(endpoint, auth.clone());
            config.extra_ca_pem.clone_from(&extra_ca_pem);
            config.connections = apns.connections;
            Ok(Arc::new(ApnsClient::new(config)?))
        };
        providers = providers.with_apns(ApnsProviders {
            production: client(pushgate_providers::apns::PRODUCTION_ENDPOINT)?,
            sandbox: client(pushgate_providers::apns::SANDBOX_ENDPOINT)?,
            topic: apns.topic.clone(),
            default_environment: apns.environment,
            rate: apns.rate_per_second.and_then(|per_second| rate(per_second, ProviderKind::Apns)),
        });
    }
    if let Some(fcm) = &app.fcm {
        let text = std::fs::read_to_string(&fcm.service_account_file)
            .with_context(|| format!("reading {}", fcm.service_account_file.display()))?;
        let account: ServiceAccount = serde_json::from_str(&text).context("parsing the service account")?;
        let mut config = FcmClientConfig::new(account)?;
        if let Some(endpoint) = &fcm.endpoint {
            config.endpoint = endpoint.clone();
        }
        config.extra_ca_pem =
            fcm.ca_file.as_ref().map(std::fs::read).transpose().context("reading apps.fcm.ca_file")?;
        providers = providers.with_fcm(FcmProvider {
            client: Arc::new(FcmClient::new(config, Arc::new(SystemClock))?),
            rate: rate(fcm.rate_per_second, ProviderKind::Fcm),
        });
    }
    Ok(providers)
}
