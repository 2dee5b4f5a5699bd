//! Devices and API keys on PostgreSQL: registrations of one token take
//! turns on an advisory lock named after it.

use super::PgStore;
use crate::{ApiKeyKind, Device, DeviceStore, KeyStore, NewDevice, StoreError, StoredApiKey, UpsertOutcome};
use async_trait::async_trait;
use pushgate_domain::{AppId, ClientId, DeviceId, DeviceType, Environment, Locale, PushKey, PushToken, TimeZoneName};

#[async_trait]
impl DeviceStore for PgStore {
    async fn upsert_device(&self, device: &NewDevice) -> Result<UpsertOutcome, StoreError> {
        let mut transaction = self.pool.begin().await?;
        let token_kind = device.device_type.token_kind().as_str();
        // Registrations of one token (on any node) take turns on an
        // advisory lock named after it, so two cannot both pass the delete
        // and then collide on the insert.
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
            .bind(format!("{}\u{1f}{token_kind}\u{1f}{}", device.app_id.as_str(), device.token.as_str()))
            .execute(&mut *transaction)
            .await?;
        let moved = sqlx::query(
            "DELETE FROM devices WHERE app_id = $1 AND token_kind = $2 AND token = $3 \
             AND NOT (device_type = $4 AND device_id = $5)",
        )
        .bind(device.app_id.as_str())
        .bind(token_kind)
        .bind(device.token.as_str())
        .bind(device.device_type.as_str())
        .bind(device.device_id.as_str())
        .execute(&mut *transaction)
        .await?
        .rows_affected();
        sqlx::query(
            "INSERT INTO devices (app_id, device_type, device_id, client_id, token_kind, token, \
                                  environment, locale, timezone, created_at_ms, updated_at_ms, push_key) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10, $11) \
             ON CONFLICT (app_id, device_type, device_id) DO UPDATE SET \
                client_id = excluded.client_id, token_kind = excluded.token_kind, token = excluded.token, \
                environment = COALESCE(excluded.environment, devices.environment), \
                locale = COALESCE(excluded.locale, devices.locale), \
                timezone = COALESCE(excluded.timezone, devices.timezone), \
                push_key = excluded.push_key, updated_at_ms = excluded.updated_at_ms",
        )
        .bind(device.app_id.as_str())
        .bind(device.device_type.as_str())
        .bind(device.device_id.as_str())
        .bind(device.client_id.as_str())
        .bind(token_kind)
        .bind(device.token.as_str())
        .bind(device.environment.map(Environment::as_str))
        .bind(device.locale.as_ref().map(Locale::as_str))
        .bind(device.timezone.as_ref().map(TimeZoneName::as_str))
        .bind(device.now_ms)
        .bind(device.push_key.as_ref().map(PushKey::to_stored))
        .execute(&mut *transaction)
        .await?;
        transaction.commit().await?;
        Ok(UpsertOutcome { token_moved_from: moved })
    }

    async fn remove_device(
        &self,
        app_id: &AppId,
        device_type: DeviceType,
        device_id: &DeviceId,
        client_id: &ClientId,
    ) -> Result<u64, StoreError> {
        let result = sqlx::query(
            "DELETE FROM devices WHERE app_id = $1 AND device_type = $2 AND device_id = $3 AND client_id = $4",
        )
        .bind(app_id.as_str())
        .bind(device_type.as_str())
        .bind(device_id.as_str())
        .bind(client_id.as_str())
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected())
    }

    async fn app_devices(
        &self,
        app_id: &AppId,
        after: Option<(DeviceType, DeviceId)>,
        limit: u32,
    ) -> Result<Vec<Device>, StoreError> {
        let (after_type, after_id) = after.map_or((String::new(), String::new()), |(device_type, device_id)| {
            (device_type.as_str().to_owned(), device_id.as_str().to_owned())
        });
        let rows = sqlx::query_as::<_, DeviceRow>(
            "SELECT device_type, device_id, client_id, token, environment, locale, timezone, push_key, \
                    created_at_ms, updated_at_ms \
             FROM devices WHERE app_id = $1 AND (device_type, device_id) > ($2, $3) \
             ORDER BY device_type, device_id LIMIT $4",
        )
        .bind(app_id.as_str())
        .bind(after_type)
        .bind(after_id)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(device_from_columns).collect()
    }

    async fn client_devices(&self, app_id: &AppId, client_id: &ClientId) -> Result<Vec<Device>, StoreError> {
        let rows = sqlx::query_as::<_, DeviceRow>(
            "SELECT device_type, device_id, client_id, token, environment, locale, timezone, push_key, \
                    created_at_ms, updated_at_ms \
             FROM devices WHERE app_id = $1 AND client_id = $2 ORDER BY created_at_ms, device_type, device_id",
        )
        .bind(app_id.as_str())
        .bind(client_id.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(device_from_columns).collect()
    }

    async fn prune_device(
        &self,
        app_id: &AppId,
        device_type: DeviceType,
        device_id: &DeviceId,
        token: &PushToken,
        invalid_since_ms: Option<i64>,
    ) -> Result<bool, StoreError> {
        let result = sqlx::query(
            "DELETE FROM devices WHERE app_id = $1 AND device_type = $2 AND device_id = $3 AND token = $4 \
               AND ($5::bigint IS NULL OR updated_at_ms <= $5)",
        )
        .bind(app_id.as_str())
        .bind(device_type.as_str())
        .bind(device_id.as_str())
        .bind(token.as_str())
        .bind(invalid_since_ms)
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected() > 0)
    }
}

#[async_trait]
impl KeyStore for PgStore {
    async fn api_keys(&self) -> Result<Vec<StoredApiKey>, StoreError> {
        let rows = sqlx::query_as::<_, (String, Vec<u8>, String, i64)>(
            "SELECT app_id, digest, kind, created_at_ms FROM api_keys ORDER BY created_at_ms",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(app_id, digest, kind, created_at_ms)| {
                let app_id = AppId::parse(&app_id).map_err(|e| StoreError::Corrupt(format!("api_keys.app_id: {e}")))?;
                let digest =
                    digest.try_into().map_err(|_| StoreError::Corrupt("api_keys.digest is not 32 bytes".into()))?;
                Ok(StoredApiKey { app_id, digest, kind: ApiKeyKind::parse(&kind)?, created_at_ms })
            })
            .collect()
    }

    async fn create_api_key(&self, key: &StoredApiKey) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO api_keys (digest, app_id, kind, created_at_ms) VALUES ($1, $2, $3, $4)")
            .bind(&key.digest[..])
            .bind(key.app_id.as_str())
            .bind(key.kind.as_str())
            .bind(key.created_at_ms)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn revoke_api_key(&self, digest: &[u8; 32]) -> Result<bool, StoreError> {
        let deleted =
            sqlx::query("DELETE FROM api_keys WHERE digest = $1").bind(&digest[..]).execute(&self.pool).await?;
        Ok(deleted.rows_affected() > 0)
    }

    async fn insert_api_key(&self, key: &StoredApiKey) -> Result<bool, StoreError> {
        // Nodes starting at once take turns per app, so one key is kept.
        let mut transaction = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
            .bind(format!("api-key\u{1f}{}", key.app_id.as_str()))
            .execute(&mut *transaction)
            .await?;
        let inserted = sqlx::query(
            "INSERT INTO api_keys (digest, app_id, kind, created_at_ms) SELECT $1, $2, 'generated', $3 \
             WHERE NOT EXISTS (SELECT 1 FROM api_keys WHERE app_id = $2 AND kind = 'generated')",
        )
        .bind(&key.digest[..])
        .bind(key.app_id.as_str())
        .bind(key.created_at_ms)
        .execute(&mut *transaction)
        .await?
        .rows_affected();
        transaction.commit().await?;
        Ok(inserted == 1)
    }
}

fn device_from_columns(
    (device_type, device_id, client_id, token, environment, locale, timezone, push_key, created_at_ms, updated_at_ms): DeviceRow,
) -> Result<Device, StoreError> {
    let corrupt = |what: &str, error: pushgate_domain::ParseError| StoreError::Corrupt(format!("{what}: {error}"));
    Ok(Device {
        device_type: DeviceType::parse(&device_type).map_err(|e| corrupt("device_type", e))?,
        device_id: DeviceId::parse(&device_id).map_err(|e| corrupt("device_id", e))?,
        client_id: ClientId::parse(&client_id).map_err(|e| corrupt("client_id", e))?,
        token: PushToken::from_trusted_storage(token),
        environment: environment
            .map(|raw| Environment::parse(&raw))
            .transpose()
            .map_err(|e| corrupt("environment", e))?,
        locale: locale.map(|raw| Locale::parse(&raw)).transpose().map_err(|e| corrupt("locale", e))?,
        timezone: timezone.map(|raw| TimeZoneName::parse(&raw)).transpose().map_err(|e| corrupt("timezone", e))?,
        push_key: push_key.map(|raw| PushKey::from_stored(&raw)).transpose().map_err(|e| corrupt("push_key", e))?,
        created_at_ms,
        updated_at_ms,
    })
}

type DeviceRow =
    (String, String, String, String, Option<String>, Option<String>, Option<String>, Option<String>, i64, i64);
