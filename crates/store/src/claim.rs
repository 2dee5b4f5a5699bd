//! A claim read back, whatever the backend: a backend leases due rows (a
//! delivery's own) and sends (planned first attempts), answers each as a JSON
//! object, and reads the claimed pushes; this turns them into
//! [`ClaimedDelivery`]s the same way for every backend.

use crate::queue::DeliveryKey;
use crate::{ClaimedDelivery, ClaimedPush, DeliveryRef, StoreError};
use pushgate_domain::{
    AppId, ClientId, DeliveryMode, DeviceId, DeviceType, Environment, Locale, PushId, PushKey, PushKind, PushRequest,
    PushToken, TraceParent,
};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

/// One leased row or send, as the JSON object the backend answered: a row
/// has `id`, `push_id`, `app_id` and the delivery's columns; a send has `id`,
/// `push_id`, `app_id`, `deliveries` (its planned entries, with the same
/// column names) and `settled` (the indexes with an outcome).
pub(crate) type JsonRow = serde_json::Map<String, serde_json::Value>;

/// The claimed pushes by id, each read back once for the claim.
pub(crate) type ClaimedPushes = HashMap<String, Arc<ClaimedPush>>;

/// A JSON array of leased rows or sends.
pub(crate) fn parse_rows(claimed: &str) -> Result<Vec<JsonRow>, StoreError> {
    serde_json::from_str(claimed).map_err(|error| StoreError::Corrupt(format!("claimed deliveries: {error}")))
}

/// The pushes the claimed rows and sends belong to.
pub(crate) fn push_ids<'a>(own: &'a [JsonRow], sends: &'a [JsonRow]) -> BTreeSet<&'a str> {
    own.iter().chain(sends).filter_map(|row| row.get("push_id")?.as_str()).collect()
}

/// A claimed push, from its stored columns, read back once for all its
/// deliveries in the claim. A request (or experiment) that cannot be read
/// back is logged and leaves `request` empty: its deliveries fail, and the
/// rest of the queue goes on.
pub(crate) fn claimed_push(
    push_id: &str,
    kind: &str,
    request: &str,
    deadline_ms: i64,
    experiment: Option<&str>,
    trace_parent: Option<&str>,
) -> Result<(String, Arc<ClaimedPush>), StoreError> {
    let id = PushId::parse(push_id).map_err(|_| StoreError::Corrupt(format!("pushes.push_id {push_id:?}")))?;
    let kind = PushKind::parse(kind).map_err(|error| StoreError::Corrupt(format!("pushes.kind: {error}")))?;
    let experiment = experiment.map(serde_json::from_str).transpose().map_err(|error| error.to_string());
    let read = PushRequest::decode(kind, request).map_err(|error| error.to_string());
    let (request, experiment) = match (read, experiment) {
        (Ok(request), Ok(experiment)) => (Some(request), experiment),
        (Err(error), _) | (_, Err(error)) => {
            tracing::error!(push.id = %id, error = %error, "a stored push is unreadable; its deliveries fail");
            (None, None)
        }
    };
    Ok((
        push_id.to_owned(),
        Arc::new(ClaimedPush {
            push_id: id,
            request,
            experiment,
            deadline_ms,
            trace_parent: trace_parent.and_then(TraceParent::parse),
        }),
    ))
}

/// Every claimed delivery: each own row, and each planned entry of a send
/// that is queued and has no outcome yet.
pub(crate) fn expand(
    own: &[JsonRow],
    sends: &[JsonRow],
    pushes: &ClaimedPushes,
) -> Result<Vec<ClaimedDelivery>, StoreError> {
    let mut claimed = Vec::with_capacity(own.len() + sends.len());
    for row in own {
        let id = row.get("id").and_then(serde_json::Value::as_i64).ok_or_else(|| corrupt("deliveries.id"))?;
        claimed.push(claimed_delivery(DeliveryRef(DeliveryKey::Row(id)), row, row, pushes)?);
    }
    for send in sends {
        let id = send.get("id").and_then(serde_json::Value::as_i64).ok_or_else(|| corrupt("sends.id"))?;
        let settled: BTreeSet<u64> = send
            .get("settled")
            .and_then(serde_json::Value::as_array)
            .map(|indexes| indexes.iter().filter_map(serde_json::Value::as_u64).collect())
            .unwrap_or_default();
        let entries =
            send.get("deliveries").and_then(serde_json::Value::as_array).ok_or_else(|| corrupt("sends.deliveries"))?;
        for (index, entry) in entries.iter().enumerate() {
            let entry = entry.as_object().ok_or_else(|| corrupt("sends.deliveries"))?;
            let queued = entry.get("status").and_then(serde_json::Value::as_str) == Some("queued");
            if !queued || settled.contains(&(index as u64)) {
                continue;
            }
            let index = u32::try_from(index).map_err(|_| corrupt("sends.deliveries"))?;
            claimed.push(claimed_delivery(DeliveryRef(DeliveryKey::Planned { send: id, index }), send, entry, pushes)?);
        }
    }
    Ok(claimed)
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(what.to_owned())
}

/// A claimed delivery: its push and app from `owner` (its own row, or its
/// send), the rest from `fields` (its own row, or its planned entry).
fn claimed_delivery(
    id: DeliveryRef,
    owner: &JsonRow,
    fields: &JsonRow,
    pushes: &ClaimedPushes,
) -> Result<ClaimedDelivery, StoreError> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("deliveries.{what}"));
    let text = |row: &JsonRow, column: &str| row.get(column).and_then(|value| value.as_str()).map(str::to_owned);
    let number = |column: &str| fields.get(column).and_then(serde_json::Value::as_i64);
    let push_id = owner.get("push_id").and_then(|value| value.as_str()).ok_or_else(|| corrupt("push_id"))?;
    let push = pushes.get(push_id).cloned().ok_or_else(|| StoreError::Corrupt(format!("pushes.{push_id}")))?;
    let device_type = text(fields, "device_type").ok_or_else(|| corrupt("device_type"))?;
    Ok(ClaimedDelivery {
        id,
        push,
        app_id: AppId::parse(&text(owner, "app_id").unwrap_or_default()).map_err(|_| corrupt("app_id"))?,
        client_id: ClientId::parse(&text(fields, "client_id").unwrap_or_default()).map_err(|_| corrupt("client_id"))?,
        device_type: DeviceType::parse(&device_type).map_err(|_| corrupt("device_type"))?,
        device_id: DeviceId::parse(&text(fields, "device_id").unwrap_or_default()).map_err(|_| corrupt("device_id"))?,
        token: PushToken::from_trusted_storage(text(fields, "token").ok_or_else(|| corrupt("token"))?),
        environment: text(fields, "environment")
            .map(|raw| Environment::parse(&raw))
            .transpose()
            .map_err(|_| corrupt("environment"))?,
        locale: text(fields, "locale").map(|raw| Locale::parse(&raw)).transpose().map_err(|_| corrupt("locale"))?,
        badge: number("badge").map(|badge| u32::try_from(badge.max(0)).unwrap_or(u32::MAX)),
        attempts: u32::try_from(number("attempts").unwrap_or_default()).unwrap_or(u32::MAX),
        mode: text(fields, "mode").map(|raw| DeliveryMode::parse(&raw)).transpose().map_err(|_| corrupt("mode"))?,
        variant: text(fields, "variant"),
        push_key: text(fields, "push_key")
            .map(|raw| PushKey::from_stored(&raw))
            .transpose()
            .map_err(|_| corrupt("push_key"))?,
        summary: text(fields, "summary")
            .map(|raw| serde_json::from_str(&raw))
            .transpose()
            .map_err(|_| corrupt("summary"))?,
    })
}
