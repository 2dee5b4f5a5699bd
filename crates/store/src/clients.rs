//! What pushgate keeps per client besides its devices: badge counters (room
//! unreads, badge sources), preferences, room mutes and presence, and
//! [`ClientStore`]. Every write here first fans out what was journaled
//! before it, so it applies after the messages that arrived before it.

use crate::StoreError;
use async_trait::async_trait;
use pushgate_domain::{AppId, BadgeSource, ClientId, Locale};
use std::collections::BTreeMap;

/// A client's badge: room unreads plus cross-domain sources.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BadgeView {
    /// The total shown on the app icon.
    pub total: u64,
    /// Unread messages per room (rooms with none left out).
    pub rooms: BTreeMap<String, u64>,
    /// Counts per source (sources at zero left out).
    pub sources: BTreeMap<String, u64>,
}

/// A client's preferences.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientPrefs {
    /// Pushes on (the default) or off.
    pub push_enabled: bool,
    /// Quiet hours.
    pub quiet_hours: Option<pushgate_domain::QuietHours>,
    /// Time zone of the quiet hours; else the latest device's, else UTC.
    pub timezone: Option<pushgate_domain::TimeZoneName>,
    /// Locale for server-rendered text; wins over the devices' own.
    pub locale: Option<Locale>,
}

impl Default for ClientPrefs {
    fn default() -> Self {
        Self { push_enabled: true, quiet_hours: None, timezone: None, locale: None }
    }
}

/// How `change_badge_source` changes a count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceChange {
    /// Replace the count.
    Set(u32),
    /// Add to the count (negative subtracts, never below 0).
    Add(i64),
}

/// A client's badge counters, preferences, room mutes and presence.
#[async_trait]
pub trait ClientStore: Send + Sync {
    /// A client's badge: its room unreads and source counts; the total
    /// leaves out rooms muted at `now_ms` unless `count_muted_rooms`.
    async fn badge(
        &self,
        app_id: &AppId,
        client_id: &ClientId,
        count_muted_rooms: bool,
        now_ms: i64,
    ) -> Result<BadgeView, StoreError>;

    /// Marks a room read for a client: its unread count goes to zero.
    async fn mark_room_read(
        &self,
        app_id: &AppId,
        client_id: &ClientId,
        room: &pushgate_domain::RoomId,
        now_ms: i64,
    ) -> Result<(), StoreError>;

    /// Changes a client's count for a badge source: `Set(n)` replaces it,
    /// `Add(n)` adds `n` (which may be negative; the count stays at or above 0).
    async fn change_badge_source(
        &self,
        app_id: &AppId,
        client_id: &ClientId,
        source: &BadgeSource,
        change: SourceChange,
        now_ms: i64,
    ) -> Result<(), StoreError>;

    /// Sets what a client wants from a room (`None` is a mute); a setting
    /// other than `All` may end by itself at `until_ms`.
    async fn set_room_pref(
        &self,
        app_id: &AppId,
        client_id: &ClientId,
        room: &pushgate_domain::RoomId,
        notify: pushgate_domain::RoomNotify,
        until_ms: Option<i64>,
        now_ms: i64,
    ) -> Result<(), StoreError>;

    /// Records a client online until `online_until_ms`, or offline (`None`).
    async fn set_presence(
        &self,
        app_id: &AppId,
        client_id: &ClientId,
        online_until_ms: Option<i64>,
    ) -> Result<(), StoreError>;

    /// A client's preferences (the defaults when it set none).
    async fn client_prefs(&self, app_id: &AppId, client_id: &ClientId) -> Result<ClientPrefs, StoreError>;

    /// Replaces a client's preferences.
    async fn set_client_prefs(
        &self,
        app_id: &AppId,
        client_id: &ClientId,
        prefs: &ClientPrefs,
        now_ms: i64,
    ) -> Result<(), StoreError>;
}
