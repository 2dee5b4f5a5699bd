//! A claim read back, whatever the backend: a backend leases due rows (a
//! delivery's own) and sends (planned first attempts), answers each as a JSON
//! object ([`LeasedRow`], [`LeasedSend`]), and reads the claimed pushes; this turns them into
//! [`ClaimedDelivery`]s the same way for every backend.

use crate::queue::DeliveryKey;
use crate::{ClaimedDelivery, ClaimedPush, DeliveryRef, StoreError};
use pushgate_domain::{
    AppId, ClientId, DeliveryMode, DeviceId, DeviceType, Environment, Locale, PushId, PushKey, PushKind, PushRequest,
    PushToken, TraceParent,
};
use serde::Deserialize;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

/// A leased delivery with a row of its own (a retry), as the JSON object
/// the backend answered: its push and app, and the delivery's columns.
#[derive(Debug, Deserialize)]
pub(crate) struct LeasedRow {
    pub(crate) id: i64,
    push_id: String,
    app_id: String,
    #[serde(flatten)]
    fields: Entry,
}

/// A leased send: its push and app, its planned entries (the deliveries'
/// columns each) and the indexes that already have an outcome.
#[derive(Debug, Deserialize)]
pub(crate) struct LeasedSend {
    pub(crate) id: i64,
    push_id: String,
    app_id: String,
    deliveries: Vec<Entry>,
    /// Absent or null before the first outcome on some backends.
    #[serde(default)]
    settled: Option<Vec<u64>>,
}

/// One delivery's columns, in a row of its own or a send's entry; parsed
/// straight into these fields (a claim reads thousands: a map per entry was
/// a measurable share of the worker's CPU, issue 30). A skipped entry has no
/// device; only the columns a claim hands out are read.
#[derive(Debug, Deserialize)]
struct Entry {
    client_id: Option<String>,
    device_type: Option<String>,
    device_id: Option<String>,
    token: Option<String>,
    environment: Option<String>,
    locale: Option<String>,
    badge: Option<i64>,
    #[serde(default)]
    attempts: Option<i64>,
    /// `queued` or `skipped` in a send's entry; absent in a row of its own.
    #[serde(default)]
    status: Option<String>,
    mode: Option<String>,
    variant: Option<String>,
    #[serde(default)]
    push_key: Option<String>,
    #[serde(default)]
    summary: Option<String>,
}

/// The claimed pushes by id, each read back once for the claim.
pub(crate) type ClaimedPushes = HashMap<String, Arc<ClaimedPush>>;

/// A JSON array of leased rows or sends.
pub(crate) fn parse_rows<T: serde::de::DeserializeOwned>(claimed: &str) -> Result<Vec<T>, StoreError> {
    serde_json::from_str(claimed).map_err(|error| StoreError::Corrupt(format!("claimed deliveries: {error}")))
}

/// The pushes the claimed rows and sends belong to.
pub(crate) fn push_ids<'a>(own: &'a [LeasedRow], sends: &'a [LeasedSend]) -> BTreeSet<&'a str> {
    own.iter().map(|row| row.push_id.as_str()).chain(sends.iter().map(|send| send.push_id.as_str())).collect()
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
    own: &[LeasedRow],
    sends: &[LeasedSend],
    pushes: &ClaimedPushes,
) -> Result<Vec<ClaimedDelivery>, StoreError> {
    let mut claimed = Vec::with_capacity(own.len() + sends.iter().map(|send| send.deliveries.len()).sum::<usize>());
    for row in own {
        let id = DeliveryRef(DeliveryKey::Row(row.id));
        claimed.push(claimed_delivery(id, &row.push_id, &row.app_id, &row.fields, pushes)?);
    }
    for send in sends {
        let settled: BTreeSet<u64> = send.settled.iter().flatten().copied().collect();
        for (index, entry) in send.deliveries.iter().enumerate() {
            if entry.status.as_deref() != Some("queued") || settled.contains(&(index as u64)) {
                continue;
            }
            let index = u32::try_from(index).map_err(|_| StoreError::Corrupt("sends.deliveries".into()))?;
            let id = DeliveryRef(DeliveryKey::Planned { send: send.id, index });
            claimed.push(claimed_delivery(id, &send.push_id, &send.app_id, entry, pushes)?);
        }
    }
    Ok(claimed)
}

/// A claimed delivery: its push and app from its own row or its send, the
/// rest from `fields` (its own row, or its planned entry).
fn claimed_delivery(
    id: DeliveryRef,
    push_id: &str,
    app_id: &str,
    fields: &Entry,
    pushes: &ClaimedPushes,
) -> Result<ClaimedDelivery, StoreError> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("deliveries.{what}"));
    let push = pushes.get(push_id).cloned().ok_or_else(|| StoreError::Corrupt(format!("pushes.{push_id}")))?;
    Ok(ClaimedDelivery {
        id,
        push,
        app_id: AppId::parse(app_id).map_err(|_| corrupt("app_id"))?,
        client_id: ClientId::parse(fields.client_id.as_deref().unwrap_or_default())
            .map_err(|_| corrupt("client_id"))?,
        device_type: DeviceType::parse(fields.device_type.as_deref().ok_or_else(|| corrupt("device_type"))?)
            .map_err(|_| corrupt("device_type"))?,
        device_id: DeviceId::parse(fields.device_id.as_deref().unwrap_or_default())
            .map_err(|_| corrupt("device_id"))?,
        token: PushToken::from_trusted_storage(fields.token.clone().ok_or_else(|| corrupt("token"))?),
        environment: fields
            .environment
            .as_deref()
            .map(Environment::parse)
            .transpose()
            .map_err(|_| corrupt("environment"))?,
        locale: fields.locale.as_deref().map(Locale::parse).transpose().map_err(|_| corrupt("locale"))?,
        badge: fields.badge.map(|badge| u32::try_from(badge.max(0)).unwrap_or(u32::MAX)),
        attempts: u32::try_from(fields.attempts.unwrap_or_default()).unwrap_or(u32::MAX),
        mode: fields.mode.as_deref().map(DeliveryMode::parse).transpose().map_err(|_| corrupt("mode"))?,
        variant: fields.variant.clone(),
        push_key: fields.push_key.as_deref().map(PushKey::from_stored).transpose().map_err(|_| corrupt("push_key"))?,
        summary: fields.summary.as_deref().map(serde_json::from_str).transpose().map_err(|_| corrupt("summary"))?,
    })
}
