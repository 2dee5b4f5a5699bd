//! Device registrations, pruning, and generated API keys.

use super::SqliteStore;
use super::writer::Durability;
use crate::{ApiKeyKind, Device, NewDevice, StoreError, StoredApiKey, UpsertOutcome};
use crate::{DeviceStore, KeyStore};
use async_trait::async_trait;
use pushgate_domain::{AppId, ClientId, DeviceId, DeviceType, Environment, Locale, PushKey, PushToken, TimeZoneName};
use rusqlite::{Connection, params};
use sqlx::Row as _;
use sqlx::sqlite::SqliteRow;

/// Registers a device in the open transaction (which holds SQLite's write
/// lock, so two registrations of one token cannot both pass the delete and
/// then collide).
fn upsert_device_in(connection: &Connection, device: &NewDevice) -> Result<UpsertOutcome, StoreError> {
    let token_kind = device.device_type.token_kind().as_str();
    let moved = u64::try_from(
        connection
            .prepare_cached(
                "DELETE FROM devices WHERE app_id = ?1 AND token_kind = ?2 AND token = ?3 \
         AND NOT (device_type = ?4 AND device_id = ?5)",
            )?
            .execute(params![
                device.app_id.as_str(),
                token_kind,
                device.token.as_str(),
                device.device_type.as_str(),
                device.device_id.as_str()
            ])?,
    )
    .unwrap_or(u64::MAX);
    connection
        .prepare_cached(
            "INSERT INTO devices (app_id, device_type, device_id, client_id, token_kind, token, \
                              environment, locale, timezone, created_at_ms, updated_at_ms, push_key) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10, ?11) \
         ON CONFLICT (app_id, device_type, device_id) DO UPDATE SET \
            client_id = excluded.client_id, \
            token_kind = excluded.token_kind, \
            token = excluded.token, \
            environment = COALESCE(excluded.environment, devices.environment), \
            locale = COALESCE(excluded.locale, devices.locale), \
            timezone = COALESCE(excluded.timezone, devices.timezone), \
            push_key = excluded.push_key, \
            updated_at_ms = excluded.updated_at_ms",
        )?
        .execute(params![
            device.app_id.as_str(),
            device.device_type.as_str(),
            device.device_id.as_str(),
            device.client_id.as_str(),
            token_kind,
            device.token.as_str(),
            device.environment.map(Environment::as_str),
            device.locale.as_ref().map(Locale::as_str),
            device.timezone.as_ref().map(TimeZoneName::as_str),
            device.now_ms,
            device.push_key.as_ref().map(PushKey::to_stored),
        ])?;
    Ok(UpsertOutcome { token_moved_from: moved })
}

pub(super) fn device_from_row(row: &SqliteRow) -> Result<Device, StoreError> {
    let corrupt = |what: &str, error: pushgate_domain::ParseError| StoreError::Corrupt(format!("{what}: {error}"));
    let text = |column: &str| row.try_get::<String, _>(column);
    let optional = |column: &str| row.try_get::<Option<String>, _>(column);
    Ok(Device {
        device_type: DeviceType::parse(&text("device_type")?).map_err(|e| corrupt("device_type", e))?,
        device_id: DeviceId::parse(&text("device_id")?).map_err(|e| corrupt("device_id", e))?,
        client_id: ClientId::parse(&text("client_id")?).map_err(|e| corrupt("client_id", e))?,
        token: PushToken::from_trusted_storage(text("token")?),
        environment: optional("environment")?
            .map(|raw| Environment::parse(&raw))
            .transpose()
            .map_err(|e| corrupt("environment", e))?,
        locale: optional("locale")?.map(|raw| Locale::parse(&raw)).transpose().map_err(|e| corrupt("locale", e))?,
        timezone: optional("timezone")?
            .map(|raw| TimeZoneName::parse(&raw))
            .transpose()
            .map_err(|e| corrupt("timezone", e))?,
        push_key: optional("push_key")?
            .map(|raw| PushKey::from_stored(&raw))
            .transpose()
            .map_err(|e| corrupt("push_key", e))?,
        created_at_ms: row.try_get("created_at_ms")?,
        updated_at_ms: row.try_get("updated_at_ms")?,
    })
}

/// Registrations go to the writer thread: concurrent ones share its
/// transaction (one flush), and in a group each sees the ones before it.
pub(super) async fn upsert_device(store: &SqliteStore, device: &NewDevice) -> Result<UpsertOutcome, StoreError> {
    let device = device.clone();
    store.writer.write(Durability::Flushed, move |connection| upsert_device_in(connection, &device)).await
}

pub(super) async fn remove_device(
    store: &SqliteStore,
    app_id: &AppId,
    device_type: DeviceType,
    device_id: &DeviceId,
    client_id: &ClientId,
) -> Result<u64, StoreError> {
    let _writer = store.write_lock.lock().await;
    let result =
        sqlx::query("DELETE FROM devices WHERE app_id = ?1 AND device_type = ?2 AND device_id = ?3 AND client_id = ?4")
            .bind(app_id.as_str())
            .bind(device_type.as_str())
            .bind(device_id.as_str())
            .bind(client_id.as_str())
            .execute(&store.pool)
            .await?;
    Ok(result.rows_affected())
}

pub(super) async fn client_devices(
    store: &SqliteStore,
    app_id: &AppId,
    client_id: &ClientId,
) -> Result<Vec<Device>, StoreError> {
    // `INDEXED BY`: see `routing_states` in `accept.rs` (the accept needs it too).
    let rows = sqlx::query(
        "SELECT device_type, device_id, client_id, token, environment, locale, timezone, push_key, \
                created_at_ms, updated_at_ms \
         FROM devices INDEXED BY devices_client WHERE app_id = ?1 AND client_id = ?2 \
         ORDER BY created_at_ms, device_type, device_id",
    )
    .bind(app_id.as_str())
    .bind(client_id.as_str())
    .fetch_all(&store.pool)
    .await?;
    rows.iter().map(device_from_row).collect()
}

pub(super) async fn app_devices(
    store: &SqliteStore,
    app_id: &AppId,
    after: Option<(DeviceType, DeviceId)>,
    limit: u32,
) -> Result<Vec<Device>, StoreError> {
    let (after_type, after_id) = after.map_or((String::new(), String::new()), |(device_type, device_id)| {
        (device_type.as_str().to_owned(), device_id.as_str().to_owned())
    });
    let rows = sqlx::query(
        "SELECT device_type, device_id, client_id, token, environment, locale, timezone, push_key, \
                created_at_ms, updated_at_ms \
         FROM devices WHERE app_id = ?1 AND (device_type, device_id) > (?2, ?3) \
         ORDER BY device_type, device_id LIMIT ?4",
    )
    .bind(app_id.as_str())
    .bind(after_type)
    .bind(after_id)
    .bind(limit)
    .fetch_all(&store.pool)
    .await?;
    rows.iter().map(device_from_row).collect()
}

pub(super) async fn prune_device(
    store: &SqliteStore,
    app_id: &AppId,
    device_type: DeviceType,
    device_id: &DeviceId,
    token: &PushToken,
    invalid_since_ms: Option<i64>,
) -> Result<bool, StoreError> {
    let _writer = store.write_lock.lock().await;
    let result = sqlx::query(
        "DELETE FROM devices WHERE app_id = ?1 AND device_type = ?2 AND device_id = ?3 AND token = ?4 \
           AND (?5 IS NULL OR updated_at_ms <= ?5)",
    )
    .bind(app_id.as_str())
    .bind(device_type.as_str())
    .bind(device_id.as_str())
    .bind(token.as_str())
    .bind(invalid_since_ms)
    .execute(&store.pool)
    .await?;
    Ok(result.rows_affected() > 0)
}

pub(super) async fn api_keys(store: &SqliteStore) -> Result<Vec<StoredApiKey>, StoreError> {
    let rows = sqlx::query("SELECT app_id, digest, kind, created_at_ms FROM api_keys ORDER BY created_at_ms")
        .fetch_all(&store.pool)
        .await?;
    rows.iter()
        .map(|row| {
            let app_id = AppId::parse(&row.try_get::<String, _>("app_id")?)
                .map_err(|e| StoreError::Corrupt(format!("api_keys.app_id: {e}")))?;
            let digest: Vec<u8> = row.try_get("digest")?;
            let digest =
                digest.try_into().map_err(|_| StoreError::Corrupt("api_keys.digest is not 32 bytes".into()))?;
            let kind = ApiKeyKind::parse(&row.try_get::<String, _>("kind")?)?;
            Ok(StoredApiKey { app_id, digest, kind, created_at_ms: row.try_get("created_at_ms")? })
        })
        .collect()
}

pub(super) async fn create_api_key(store: &SqliteStore, key: &StoredApiKey) -> Result<(), StoreError> {
    let _writer = store.write_lock.lock().await;
    sqlx::query("INSERT INTO api_keys (digest, app_id, kind, created_at_ms) VALUES (?1, ?2, ?3, ?4)")
        .bind(&key.digest[..])
        .bind(key.app_id.as_str())
        .bind(key.kind.as_str())
        .bind(key.created_at_ms)
        .execute(&store.pool)
        .await?;
    Ok(())
}

pub(super) async fn revoke_api_key(store: &SqliteStore, digest: &[u8; 32]) -> Result<bool, StoreError> {
    let _writer = store.write_lock.lock().await;
    let deleted = sqlx::query("DELETE FROM api_keys WHERE digest = ?1").bind(&digest[..]).execute(&store.pool).await?;
    Ok(deleted.rows_affected() > 0)
}

pub(super) async fn insert_api_key(store: &SqliteStore, key: &StoredApiKey) -> Result<bool, StoreError> {
    let _writer = store.write_lock.lock().await;
    let inserted = sqlx::query(
        "INSERT INTO api_keys (digest, app_id, kind, created_at_ms) SELECT ?1, ?2, 'generated', ?3 \
         WHERE NOT EXISTS (SELECT 1 FROM api_keys WHERE app_id = ?2 AND kind = 'generated')",
    )
    .bind(&key.digest[..])
    .bind(key.app_id.as_str())
    .bind(key.created_at_ms)
    .execute(&store.pool)
    .await?
    .rows_affected();
    Ok(inserted == 1)
}

#[async_trait]
impl DeviceStore for SqliteStore {
    async fn upsert_device(&self, device: &NewDevice) -> Result<UpsertOutcome, StoreError> {
        upsert_device(self, device).await
    }

    async fn remove_device(
        &self,
        app_id: &AppId,
        device_type: DeviceType,
        device_id: &DeviceId,
        client_id: &ClientId,
    ) -> Result<u64, StoreError> {
        remove_device(self, app_id, device_type, device_id, client_id).await
    }

    async fn app_devices(
        &self,
        app_id: &AppId,
        after: Option<(DeviceType, DeviceId)>,
        limit: u32,
    ) -> Result<Vec<Device>, StoreError> {
        app_devices(self, app_id, after, limit).await
    }

    async fn client_devices(&self, app_id: &AppId, client_id: &ClientId) -> Result<Vec<Device>, StoreError> {
        client_devices(self, app_id, client_id).await
    }

    async fn prune_device(
        &self,
        app_id: &AppId,
        device_type: DeviceType,
        device_id: &DeviceId,
        token: &PushToken,
        invalid_since_ms: Option<i64>,
    ) -> Result<bool, StoreError> {
        prune_device(self, app_id, device_type, device_id, token, invalid_since_ms).await
    }
}

#[async_trait]
impl KeyStore for SqliteStore {
    async fn api_keys(&self) -> Result<Vec<StoredApiKey>, StoreError> {
        api_keys(self).await
    }

    async fn insert_api_key(&self, key: &StoredApiKey) -> Result<bool, StoreError> {
        insert_api_key(self, key).await
    }

    async fn create_api_key(&self, key: &StoredApiKey) -> Result<(), StoreError> {
        create_api_key(self, key).await
    }

    async fn revoke_api_key(&self, digest: &[u8; 32]) -> Result<bool, StoreError> {
        revoke_api_key(self, digest).await
    }
}
