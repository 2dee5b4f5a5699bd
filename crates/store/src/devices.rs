//! Registered devices and [`DeviceStore`]: a push token is bound to at most
//! one device per app and token space; registering it elsewhere moves it.

use crate::StoreError;
use async_trait::async_trait;
use pushgate_domain::{AppId, ClientId, DeviceId, DeviceType, Environment, Locale, PushKey, PushToken, TimeZoneName};

/// A device registration as `/me/subscribe` hands it over, already parsed.
#[derive(Debug, Clone)]
pub struct NewDevice {
    /// The app the device belongs to.
    pub app_id: AppId,
    /// IMKIT's device type.
    pub device_type: DeviceType,
    /// The app-chosen device id; with the app and type it is the key.
    pub device_id: DeviceId,
    /// The client (user) the device is bound to.
    pub client_id: ClientId,
    /// The provider token.
    pub token: PushToken,
    /// The APNs environment, if the caller said; `None` keeps what was stored (or the app default).
    pub environment: Option<Environment>,
    /// Locale for server-rendered text; `None` keeps what was stored.
    pub locale: Option<Locale>,
    /// Time zone for quiet hours; `None` keeps what was stored.
    pub timezone: Option<TimeZoneName>,
    /// The key for private payloads. Unlike the fields above, `None` removes
    /// a stored one: a registration without a key is an app that cannot
    /// decrypt (a reinstall, an older version), and must not get ciphertext.
    pub push_key: Option<PushKey>,
    /// When the registration happened, in Unix milliseconds.
    pub now_ms: i64,
}

/// A registered device as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// IMKIT's device type.
    pub device_type: DeviceType,
    /// The app-chosen device id.
    pub device_id: DeviceId,
    /// The client the device is bound to.
    pub client_id: ClientId,
    /// The provider token.
    pub token: PushToken,
    /// The APNs environment the device asked for, `None` for the app's default.
    pub environment: Option<Environment>,
    /// The device's locale, if it gave one.
    pub locale: Option<Locale>,
    /// The device's time zone, if it gave one.
    pub timezone: Option<TimeZoneName>,
    /// The device's key for private payloads, if it gave one.
    pub push_key: Option<PushKey>,
    /// First registration, Unix milliseconds.
    pub created_at_ms: i64,
    /// Last registration, Unix milliseconds.
    pub updated_at_ms: i64,
}

/// What a subscribe did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpsertOutcome {
    /// Other devices that held the same token and lost it (the token moved here).
    pub token_moved_from: u64,
}

/// Registrations, lookups and pruning of devices.
#[async_trait]
pub trait DeviceStore: Send + Sync {
    /// Registers a device, or updates it when (app, type, device id) is known.
    /// The token is unbound from any other device of the same app and token
    /// space first, all in one transaction.
    async fn upsert_device(&self, device: &NewDevice) -> Result<UpsertOutcome, StoreError>;

    /// Removes the client's device; answers how many rows went (0 or 1).
    async fn remove_device(
        &self,
        app_id: &AppId,
        device_type: DeviceType,
        device_id: &DeviceId,
        client_id: &ClientId,
    ) -> Result<u64, StoreError>;

    /// Every device of one client, oldest registration first.
    async fn client_devices(&self, app_id: &AppId, client_id: &ClientId) -> Result<Vec<Device>, StoreError>;

    /// A page of the app's devices in (type, device id) order, those after
    /// `after`: export reads them all this way without holding one long query.
    async fn app_devices(
        &self,
        app_id: &AppId,
        after: Option<(DeviceType, DeviceId)>,
        limit: u32,
    ) -> Result<Vec<Device>, StoreError>;

    /// Removes a device whose token the provider declared invalid, unless the
    /// device changed token or registered again after `invalid_since_ms`.
    /// Answers whether it was removed.
    async fn prune_device(
        &self,
        app_id: &AppId,
        device_type: DeviceType,
        device_id: &DeviceId,
        token: &PushToken,
        invalid_since_ms: Option<i64>,
    ) -> Result<bool, StoreError>;
}
