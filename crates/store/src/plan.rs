//! Accept planning: the business rules of accepting a push, in one place
//! every backend shares, so a backend writes SQL, not rules.
//!
//! A backend reads what it knows of the push's recipients inside its accept
//! transaction (badge totals after the plan's counter change, routing state),
//! hands it to [`plan_recipients`], and stores what comes back: one
//! [`RecipientPlan`] per recipient, which its SQL joins with the recipient's
//! devices (one delivery each) or, for a recipient without devices, stores as
//! one skipped delivery.

use crate::{BadgePlan, Coalescing, DeliveryStatus, DeviceTarget, ExperimentPlan, FanOut, RoutingPlan, StoreError};
use pushgate_domain::{
    AppId, ClientId, DeliveryMode, DeviceId, DeviceType, ExperimentId, OnlinePolicy, PushId, QuietHours, Reason,
    RecipientState, RoomId, RoomNotify, Route, TimeZoneName, TraceParent, route,
};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap};

/// Most journaled pushes fanned out per transaction.
pub const FAN_OUT_PUSHES: u32 = 256;
/// Recipients after which a fan-out transaction takes no further push: it
/// bounds how long the transaction (and, on SQLite, the writer thread's
/// group with the accepts in it) holds the writer.
pub const FAN_OUT_RECIPIENTS: usize = 256;
/// Most recipients of one push a fan-out transaction takes: a larger push
/// (a room of thousands) is fanned out a piece at a time, its journal row
/// counting the recipients done (`journal.done`), so its first deliveries
/// are claimed while the rest is still being planned, and no transaction
/// holds the writer for the whole room (accepts wait behind it).
pub const FAN_OUT_PIECE: usize = 1024;
/// Most deliveries planned in one `sends` row: what one claim leases at once.
pub const SEND_SIZE: i64 = 256;

/// A journaled push as its fan-out reads it back: its row's identity and
/// time, and its journal entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Journaled {
    /// The push.
    pub push_id: PushId,
    /// Its app.
    pub app_id: AppId,
    /// Its acceptance time (quiet hours are judged at it).
    pub now_ms: i64,
    /// What happens for its recipients.
    pub fan_out: FanOut,
    /// The accept's place in a trace, which the fan-out continues.
    pub trace_parent: Option<TraceParent>,
}

impl Journaled {
    /// A journaled push from its row's columns and its journal entry.
    pub fn read(
        push_id: &str,
        app_id: &str,
        now_ms: i64,
        entry: &str,
        trace_parent: Option<&str>,
    ) -> Result<Self, StoreError> {
        let corrupt = |what: &str| StoreError::Corrupt(format!("pushes.{what}"));
        Ok(Self {
            push_id: PushId::parse(push_id).map_err(|_| corrupt("push_id"))?,
            app_id: AppId::parse(app_id).map_err(|_| corrupt("app_id"))?,
            now_ms,
            fan_out: read_journal_entry(entry)?,
            // Only ever written by pushgate; an unreadable one loses the trace, never the push.
            trace_parent: trace_parent.and_then(TraceParent::parse),
        })
    }
}

/// The recipients of a push: each listed client once (a client listed twice
/// is reached, and counted, once), in a stable order.
pub fn recipients(fan_out: &FanOut) -> Vec<&ClientId> {
    fan_out.clients.iter().collect::<BTreeSet<_>>().into_iter().collect()
}

/// The next piece of a push's recipients (in [`recipients`]' order) after
/// the `done` first ones, and whether it is the push's last.
pub fn next_piece<'a, 'b>(recipients: &'b [&'a ClientId], done: usize) -> (&'b [&'a ClientId], bool) {
    let start = done.min(recipients.len());
    let end = start.saturating_add(FAN_OUT_PIECE).min(recipients.len());
    (&recipients[start..end], end == recipients.len())
}

/// The text stored for a recipient without a device.
pub fn no_device() -> String {
    Reason::NoDevice.to_string()
}

/// What a badge plan asks of the recipients' counters, before their totals
/// are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CounterChange<'a> {
    /// Nothing changes.
    None,
    /// One more unread in this room for each recipient.
    CountUnread(&'a RoomId),
    /// This room read for each recipient.
    ClearRoom(&'a RoomId),
}

impl BadgePlan {
    /// The counter change the backend applies for every recipient.
    pub fn counter_change(&self) -> CounterChange<'_> {
        match self {
            Self::None | Self::Given(_) => CounterChange::None,
            Self::CountUnread(room) => CounterChange::CountUnread(room),
            Self::ClearRoom(room) => CounterChange::ClearRoom(room),
        }
    }

    /// Whether the deliveries carry each recipient's badge total, read after
    /// the counter change (and so the backend must read them).
    pub fn carries_totals(&self) -> bool {
        matches!(self, Self::CountUnread(_) | Self::ClearRoom(_))
    }

    /// The badge a recipient's deliveries carry, given its total when
    /// [`BadgePlan::carries_totals`].
    fn badge(&self, total: Option<i64>) -> Option<i64> {
        match self {
            Self::None => None,
            Self::Given(badge) => Some(i64::from(*badge)),
            Self::CountUnread(_) | Self::ClearRoom(_) => total,
        }
    }
}

/// What the accept stores for one recipient: its deliveries' badge, status,
/// route and experiment variant. Serialised (one JSON array per push) for the
/// backend's SQL to join with the recipient's devices.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecipientPlan<'a> {
    /// The recipient.
    pub client: &'a str,
    /// The badge its deliveries carry.
    pub badge: Option<i64>,
    /// `queued`, or `skipped` (with the reason) when it gets nothing.
    pub status: &'static str,
    /// Why it is skipped.
    pub reason: Option<std::borrow::Cow<'a, str>>,
    /// How it is reached, when routed.
    pub mode: Option<&'static str>,
    /// Why routing did not alert it as usual.
    pub route_reason: Option<&'static str>,
    /// The push's experiment, when the recipient has a variant.
    pub experiment: Option<&'a str>,
    /// The recipient's variant.
    pub variant: Option<&'a str>,
    /// Coalescing: whether the recipient's alert goes now and opens its
    /// room's window, or is held until the window's end; its window as it
    /// is after this push.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub window: Option<WindowChange>,
}

/// What is known of a recipient's coalescing window in a room when a
/// message arrives (`None` when it has none).
///
/// A window's end (each backend's `end_windows`, in SQL) queues the message
/// it holds with a summary ([`pushgate_domain::Summary`]) that counts the
/// room's unreads for the recipient when they are counted (the built-in
/// badge) or else the run's messages, whichever is more, and names the
/// run's senders; a new window opens, and the run goes on until a window
/// ends with nothing held or the room is read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Window {
    /// The room's messages are held until then.
    pub until: i64,
    /// Messages since the run of windows began (the alert that opened the
    /// first, and every one held since): what the window's alert counts
    /// when the room's unreads are not counted.
    pub count: u32,
    /// Their senders, the latest first, each once.
    pub senders: Vec<String>,
    /// Whether it holds a message (one whose end has not been sent yet,
    /// though its time may have passed while no worker ran).
    pub holding: bool,
}

/// Most senders a window keeps (the alert names the latest and counts the others).
const MAX_WINDOW_SENDERS: usize = 20;

/// Whether a recipient's alert of a message goes now or waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WindowStep {
    /// The alert goes now and opens a window.
    Open,
    /// The message is held until the window's end.
    Hold,
}

/// A recipient's coalescing window after a message: the backend writes it
/// (`coalescing`) and holds the recipient's deliveries when it is `Hold`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WindowChange {
    /// What the message does.
    pub window: WindowStep,
    /// The window's end.
    pub until: i64,
    /// Messages since the run of windows began, this one included.
    pub count: u32,
    /// Their senders, the latest first.
    pub senders: Vec<String>,
}

impl WindowChange {
    /// Whether the recipient's deliveries are held.
    pub fn holds(&self) -> bool {
        self.window == WindowStep::Hold
    }
}

/// The window a recipient's alert of `fan_out`'s message leaves it in, given
/// its window so far (`None`: none, or one that has ended), or `None` when the
/// message is not coalesced for it (a mention, a routed-silent or skipped
/// recipient, an app that does not coalesce). A message outside any window
/// alerts at once: coalescing never delays the first message of a quiet room.
fn window_change(
    fan_out: &FanOut,
    client: &ClientId,
    alerted: bool,
    now_ms: i64,
    window: Option<Window>,
) -> Option<WindowChange> {
    let coalescing = fan_out.coalescing.as_ref()?;
    if !alerted || fan_out.mentions.contains(client) {
        return None;
    }
    let sender = coalescing.sender.clone().into_iter();
    // A window whose end is past but not yet sent still takes the message:
    // its end, due at once, sends it with the ones held before.
    Some(match window.filter(|window| window.until > now_ms || window.holding) {
        None => WindowChange {
            window: WindowStep::Open,
            until: now_ms.saturating_add(coalescing.window_ms),
            count: 1,
            senders: sender.collect(),
        },
        Some(window) => {
            let previous = window.senders.into_iter().filter(|name| Some(name) != coalescing.sender.as_ref());
            WindowChange {
                window: WindowStep::Hold,
                until: window.until,
                count: window.count.saturating_add(1),
                senders: sender.chain(previous).take(MAX_WINDOW_SENDERS).collect(),
            }
        }
    })
}

/// Decides each recipient's plan, in the order of `clients` (from
/// [`recipients`]): `totals`, the badge totals read after the counter change
/// (when the badge plan carries them), `states`, the routing state of each
/// (when the push is routed), and `windows`, each one's coalescing window in
/// the room (when the push coalesces). Precedence: a push skipped as a whole
/// (`skip_all`) wins over routing; a routing skip wins over delivery; only a
/// recipient alerted (not mentioned) is coalesced.
pub fn plan_recipients<'a>(
    push: &'a Journaled,
    clients: &[&'a ClientId],
    totals: Option<Vec<i64>>,
    states: Option<Vec<RecipientState>>,
    windows: Option<Vec<Option<Window>>>,
) -> Vec<RecipientPlan<'a>> {
    let mut totals = totals.map(Vec::into_iter);
    let mut states = states.map(Vec::into_iter);
    let mut windows = windows.map(Vec::into_iter);
    let fan_out = &push.fan_out;
    let experiment = fan_out.experiment.as_ref();
    let skip_all = fan_out.skip_all.as_ref().map(ToString::to_string);
    clients
        .iter()
        .map(|client| {
            let total = totals.as_mut().and_then(Iterator::next);
            let route: Option<Route> = match (&fan_out.routing, states.as_mut().and_then(Iterator::next)) {
                (Some(plan), Some(state)) => {
                    let state = RecipientState { mentioned: fan_out.mentions.contains(*client), ..state };
                    Some(route(&state, plan.online, push.now_ms))
                }
                _ => None,
            };
            let (status, reason) = match (&skip_all, route) {
                (Some(reason), _) => (DeliveryStatus::Skipped, Some(reason.clone().into())),
                (None, Some(Route::Skip(reason))) => (DeliveryStatus::Skipped, Some(reason.into())),
                (None, _) => (DeliveryStatus::Queued, None),
            };
            let variant = experiment.and_then(|experiment| experiment.variants.get(*client));
            let alerted = status == DeliveryStatus::Queued
                && route.is_none_or(|route| matches!(route, Route::Alert | Route::Quiet));
            let window = windows.as_mut().and_then(Iterator::next).flatten();
            RecipientPlan {
                client: client.as_str(),
                badge: fan_out.badge.badge(total),
                status: status.as_str(),
                reason,
                mode: route.and_then(Route::mode).map(DeliveryMode::as_str),
                route_reason: route.and_then(Route::reason),
                experiment: variant.and(experiment).map(|experiment| experiment.id.as_str()),
                variant: variant.map(String::as_str),
                window: window_change(fan_out, client, alerted, push.now_ms, window),
            }
        })
        .collect()
}

/// The recipients whose message is held (a JSON array of their ids), if any.
pub fn held_clients(plans: &[RecipientPlan<'_>]) -> Option<String> {
    let held: Vec<&str> = plans
        .iter()
        .filter(|plan| plan.window.as_ref().is_some_and(WindowChange::holds))
        .map(|plan| plan.client)
        .collect();
    (!held.is_empty()).then(|| serde_json::Value::from(held).to_string())
}

/// What a push's statements on coalescing windows need of its plans.
pub(crate) struct WindowWork {
    /// The recipients whose message is held (`held_clients`).
    pub(crate) held: Option<String>,
    /// Whether any recipient's window opens or changes.
    pub(crate) windowed: bool,
    /// The plans as JSON when either, else empty (no statement reads them).
    pub(crate) plans: String,
}

impl WindowWork {
    pub(crate) fn of(plans: &[RecipientPlan<'_>]) -> Result<Self, StoreError> {
        let held = held_clients(plans);
        let windowed = plans.iter().any(|plan| plan.window.is_some());
        let plans = if held.is_some() || windowed {
            serde_json::to_string(plans).map_err(|error| StoreError::Corrupt(format!("accept plan: {error}")))?
        } else {
            String::new()
        };
        Ok(Self { held, windowed, plans })
    }
}

/// The windows of `clients` (a JSON array a backend's read answers in their
/// order: per client `[until, count, senders, holding]`, or null when it has none).
pub fn windows(json: &str) -> Result<Vec<Option<Window>>, StoreError> {
    // A struct reads from an array of its fields, in order.
    serde_json::from_str(json).map_err(|error| StoreError::Corrupt(format!("coalescing windows: {error}")))
}

/// The routing state of each recipient, from the JSON array a backend's
/// routing read answers in recipient order: per recipient
/// `[push_enabled, quiet_start, quiet_end, timezone, notify, online]`, the
/// booleans as 0 or 1 (`push_enabled` null when the client set no prefs,
/// `notify` null when it set none for the room or the one it set ran out).
/// Whether the message mentions the recipient is the plan's to say.
pub fn recipient_states(json: &str) -> Result<Vec<RecipientState>, StoreError> {
    let rows: Vec<KnownState> =
        serde_json::from_str(json).map_err(|error| StoreError::Corrupt(format!("routing state: {error}")))?;
    Ok(rows.into_iter().map(recipient_state).collect())
}

/// What a backend's routing read knows of a recipient (see
/// [`recipient_states`]): `(push_enabled, quiet_start, quiet_end, timezone,
/// notify, online)`.
pub(crate) type KnownState = (Option<i64>, Option<String>, Option<String>, Option<String>, Option<String>, i64);

/// A recipient's state from what the routing read knows of it.
pub(crate) fn recipient_state(known: KnownState) -> RecipientState {
    let (push_enabled, quiet_start, quiet_end, timezone, notify, online) = known;
    let quiet_hours = match (quiet_start, quiet_end) {
        (Some(start), Some(end)) => QuietHours::parse(&start, &end).ok(),
        _ => None,
    };
    RecipientState {
        push_disabled: push_enabled == Some(0),
        room_notify: notify.as_deref().and_then(|notify| RoomNotify::parse(notify).ok()).unwrap_or(RoomNotify::All),
        mentioned: false,
        online: online != 0,
        quiet_hours,
        timezone: timezone.and_then(|zone| TimeZoneName::parse(&zone).ok()),
    }
}

/// A [`FanOut`] as the journal stores it (JSON; the form every version wrote).
#[derive(Debug, Serialize, Deserialize)]
struct JournalEntry {
    clients: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    given_badge: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    count_unread: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    clear_room: Option<String>,
    count_muted_rooms: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    routing: Option<(String, String)>,
    #[serde(skip_serializing_if = "Option::is_none")]
    skip_all: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    experiment: Option<(String, HashMap<String, String>)>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    mentions: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    coalescing: Option<(i64, Option<String>)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    except_device: Option<String>,
    /// A push to dedicated tokens: `[device type]` or `[device type, device
    /// id]`; absent: the notification devices.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    target: Vec<String>,
}

/// The journal text of a push: what its fan-out will need.
pub fn journal_entry(fan_out: &FanOut) -> String {
    let (given_badge, count_unread, clear_room) = match &fan_out.badge {
        BadgePlan::None => (None, None, None),
        BadgePlan::Given(badge) => (Some(*badge), None, None),
        BadgePlan::CountUnread(room) => (None, Some(room.as_str().to_owned()), None),
        BadgePlan::ClearRoom(room) => (None, None, Some(room.as_str().to_owned())),
    };
    let entry = JournalEntry {
        clients: recipients(fan_out).into_iter().map(|client| client.as_str().to_owned()).collect(),
        given_badge,
        count_unread,
        clear_room,
        count_muted_rooms: fan_out.count_muted_rooms,
        routing: fan_out.routing.as_ref().map(|plan| (plan.room.as_str().to_owned(), plan.online.as_str().to_owned())),
        skip_all: fan_out.skip_all.as_ref().map(ToString::to_string),
        experiment: fan_out.experiment.as_ref().map(|experiment| {
            let variants = experiment
                .variants
                .iter()
                .map(|(client, variant)| (client.as_str().to_owned(), variant.clone()))
                .collect();
            (experiment.id.as_str().to_owned(), variants)
        }),
        mentions: fan_out.mentions.iter().map(|client| client.as_str().to_owned()).collect(),
        coalescing: fan_out.coalescing.as_ref().map(|coalescing| (coalescing.window_ms, coalescing.sender.clone())),
        except_device: fan_out.except_device.as_ref().map(|device| device.as_str().to_owned()),
        target: match &fan_out.target {
            DeviceTarget::Notifications => Vec::new(),
            DeviceTarget::Dedicated(device_type, device) => std::iter::once(device_type.as_str().to_owned())
                .chain(device.as_ref().map(|id| id.as_str().to_owned()))
                .collect(),
        },
    };
    serde_json::to_string(&entry).unwrap_or_else(|_| unreachable!("a journal entry is plain JSON"))
}

/// Reads a journal entry back: its clients, badge plan, routing, skip and variants.
pub fn read_journal_entry(entry: &str) -> Result<FanOut, StoreError> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("journal.plan: {what}"));
    let entry: JournalEntry = serde_json::from_str(entry).map_err(|error| corrupt(&error.to_string()))?;
    let room = |raw: &str| RoomId::parse(raw).map_err(|_| corrupt("room"));
    Ok(FanOut {
        clients: entry
            .clients
            .iter()
            .map(|client| ClientId::parse(client).map_err(|_| corrupt("client")))
            .collect::<Result<_, _>>()?,
        badge: match (entry.given_badge, entry.count_unread, entry.clear_room) {
            (Some(badge), _, _) => BadgePlan::Given(badge),
            (None, Some(raw), _) => BadgePlan::CountUnread(room(&raw)?),
            (None, None, Some(raw)) => BadgePlan::ClearRoom(room(&raw)?),
            (None, None, None) => BadgePlan::None,
        },
        count_muted_rooms: entry.count_muted_rooms,
        routing: match entry.routing {
            Some((raw_room, online)) => Some(RoutingPlan {
                room: room(&raw_room)?,
                online: OnlinePolicy::parse(&online).map_err(|_| corrupt("online"))?,
            }),
            None => None,
        },
        skip_all: entry.skip_all.as_deref().map(Reason::parse),
        mentions: entry
            .mentions
            .iter()
            .map(|client| ClientId::parse(client).map_err(|_| corrupt("mention")))
            .collect::<Result<_, _>>()?,
        coalescing: entry.coalescing.map(|(window_ms, sender)| Coalescing { window_ms, sender }),
        except_device: entry
            .except_device
            .map(|device| DeviceId::parse(&device).map_err(|_| corrupt("except_device")))
            .transpose()?,
        target: match entry.target.as_slice() {
            [] => DeviceTarget::Notifications,
            [device_type, device @ ..] if device.len() <= 1 => {
                let device_type = DeviceType::parse(device_type)
                    .ok()
                    .filter(|device_type| device_type.is_dedicated())
                    .ok_or_else(|| corrupt("target"))?;
                let device = device.first().map(|id| DeviceId::parse(id).map_err(|_| corrupt("target"))).transpose()?;
                DeviceTarget::Dedicated(device_type, device)
            }
            _ => return Err(corrupt("target")),
        },
        experiment: match entry.experiment {
            Some((id, variants)) => Some(ExperimentPlan {
                id: ExperimentId::parse(&id).map_err(|_| corrupt("experiment"))?,
                variants: variants
                    .into_iter()
                    .map(|(client, variant)| Ok((ClientId::parse(&client).map_err(|_| corrupt("variant"))?, variant)))
                    .collect::<Result<_, StoreError>>()?,
            }),
            None => None,
        },
    })
}

/// One planned delivery of a send (an entry of `send_plans.deliveries`):
/// one per device of a recipient, or one for a recipient without any.
#[derive(Serialize)]
#[serde(untagged)]
enum SendEntry<'a> {
    Device {
        client_id: &'a str,
        device_type: &'a str,
        device_id: &'a str,
        token: &'a str,
        environment: Option<&'a str>,
        locale: Option<&'a str>,
        badge: Option<i64>,
        status: &'a str,
        reason: Option<&'a str>,
        mode: Option<&'a str>,
        route_reason: Option<&'a str>,
        variant: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        push_key: Option<&'a str>,
    },
    NoDevice {
        client_id: &'a str,
        badge: Option<i64>,
        status: &'static str,
        reason: &'a str,
    },
}

/// A device of a recipient, read for the fan-out.
pub(crate) struct RecipientDevice {
    /// The recipient's place in the plan.
    pub(crate) key: usize,
    pub(crate) device_type: String,
    pub(crate) device_id: String,
    pub(crate) token: String,
    pub(crate) environment: Option<String>,
    pub(crate) locale: Option<String>,
    pub(crate) push_key: Option<String>,
}

/// The planned deliveries of some of a push's recipients (`recipients`, in
/// the plan's order) on their `devices` (read by the backend, ordered by
/// recipient, device type and id), as `sends` rows: each `SEND_SIZE`
/// entries as a JSON array, and how many of them are queued. One entry per
/// device (none for the push's excepted device, and only VoIP devices while
/// a recipient's message is held: coalescing), then one `skipped` entry per
/// recipient without a device. Built here, not in SQL: each entry built by
/// the database's JSON functions was the fan-out's largest cost (issue 30).
pub(crate) fn send_chunks(
    push: &Journaled,
    recipients: &[RecipientPlan<'_>],
    devices: &[RecipientDevice],
) -> Result<Vec<(String, i64)>, StoreError> {
    let mut has_device = vec![false; recipients.len()];
    let except = push.fan_out.except_device.as_ref().map(DeviceId::as_str);
    let mut entries = Vec::with_capacity(devices.len());
    for device in devices {
        let Some(plan) = recipients.get(device.key) else { continue };
        has_device[device.key] = true;
        let held = plan.window.as_ref().is_some_and(WindowChange::holds);
        if except == Some(device.device_id.as_str()) || (held && device.device_type != "ios-voip") {
            continue;
        }
        entries.push(SendEntry::Device {
            client_id: plan.client,
            device_type: &device.device_type,
            device_id: &device.device_id,
            token: &device.token,
            environment: device.environment.as_deref(),
            locale: device.locale.as_deref(),
            badge: plan.badge,
            status: plan.status,
            reason: plan.reason.as_deref(),
            mode: plan.mode,
            route_reason: plan.route_reason,
            variant: plan.variant,
            push_key: device.push_key.as_deref(),
        });
    }
    let no_device = no_device();
    entries.extend(recipients.iter().zip(&has_device).filter(|(_, has)| !**has).map(|(plan, _)| SendEntry::NoDevice {
        client_id: plan.client,
        badge: plan.badge,
        status: "skipped",
        reason: &no_device,
    }));
    entries
        .chunks(usize::try_from(SEND_SIZE).unwrap_or(usize::MAX))
        .map(|chunk| {
            let queued =
                chunk.iter().filter(|entry| matches!(entry, SendEntry::Device { status: "queued", .. })).count();
            let deliveries =
                serde_json::to_string(chunk).map_err(|error| StoreError::Corrupt(format!("send plan: {error}")))?;
            Ok((deliveries, i64::try_from(queued).unwrap_or(i64::MAX)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ExperimentPlan, RoutingPlan};
    use pushgate_domain::{AppId, OnlinePolicy};
    use std::collections::HashMap;

    fn client(name: &str) -> ClientId {
        ClientId::parse(name).expect("a client id")
    }

    fn push(badge: BadgePlan, routing: Option<RoutingPlan>) -> Journaled {
        Journaled {
            push_id: PushId::parse("019a1b2c-3d4e-7f00-8000-000000000001").expect("a push id"),
            app_id: AppId::parse("SampleApp").expect("an app id"),
            now_ms: 0,
            fan_out: FanOut {
                clients: vec![client("bob"), client("alice"), client("bob")],
                skip_all: None,
                badge,
                count_muted_rooms: true,
                routing,
                experiment: None,
                mentions: vec![client("alice")],
                coalescing: None,
                except_device: None,
                target: DeviceTarget::Notifications,
            },
            trace_parent: None,
        }
    }

    fn experiment(variants: HashMap<ClientId, String>) -> Option<ExperimentPlan> {
        Some(ExperimentPlan { id: ExperimentId::parse("e1").expect("an id"), variants })
    }

    fn state(online: bool, push_disabled: bool) -> RecipientState {
        RecipientState { push_disabled, online, ..RecipientState::default() }
    }

    #[test]
    fn a_journal_entry_reads_back_as_the_push_it_was_made_of() {
        let mut original = push(
            BadgePlan::CountUnread(RoomId::parse("r").expect("a room")),
            Some(RoutingPlan { room: RoomId::parse("r").expect("a room"), online: OnlinePolicy::Skip }),
        );
        original.fan_out.skip_all = Some(Reason::ExpiredAtAccept);
        original.fan_out.experiment = experiment(HashMap::from([(client("bob"), "A".to_owned())]));
        original.fan_out.coalescing = Some(Coalescing { window_ms: 10_000, sender: Some("Alice".into()) });
        original.fan_out.except_device = Some(DeviceId::parse("laptop").expect("a device id"));
        let read_back = read_journal_entry(&journal_entry(&original.fan_out)).expect("reads back");
        assert_eq!(read_back.clients, vec![client("alice"), client("bob")], "each client once");
        assert_eq!(FanOut { clients: original.fan_out.clients.clone(), ..read_back }, original.fan_out);
        for badge in [BadgePlan::None, BadgePlan::Given(7), BadgePlan::ClearRoom(RoomId::parse("x").expect("a room"))] {
            let original = push(badge.clone(), None);
            assert_eq!(read_journal_entry(&journal_entry(&original.fan_out)).expect("reads back").badge, badge);
        }
    }

    #[test]
    fn a_client_listed_twice_is_one_recipient() {
        let push = push(BadgePlan::None, None);
        assert_eq!(recipients(&push.fan_out), vec![&client("alice"), &client("bob")]);
    }

    #[test]
    fn each_recipient_carries_its_total_its_route_and_its_variant() {
        let room = RoomId::parse("r").expect("a room");
        let mut push = push(
            BadgePlan::CountUnread(room),
            Some(RoutingPlan { room: RoomId::parse("r").expect("a room"), online: OnlinePolicy::Silent }),
        );
        push.fan_out.experiment = experiment(HashMap::from([(client("alice"), "B".to_owned())]));
        let clients = recipients(&push.fan_out);
        let plans = plan_recipients(
            &push,
            &clients,
            Some(vec![3, 7]),
            Some(vec![state(true, false), state(false, true)]),
            None,
        );
        assert_eq!(
            plans,
            vec![
                RecipientPlan {
                    client: "alice",
                    badge: Some(3),
                    status: "queued",
                    reason: None,
                    mode: Some("silent"),
                    route_reason: Some("client online"),
                    experiment: Some("e1"),
                    variant: Some("B"),
                    window: None,
                },
                RecipientPlan {
                    client: "bob",
                    badge: Some(7),
                    status: "skipped",
                    reason: Some("push turned off by the client".into()),
                    mode: None,
                    route_reason: Some("push turned off by the client"),
                    experiment: None,
                    variant: None,
                    window: None,
                },
            ]
        );
    }

    #[test]
    fn a_push_skipped_as_a_whole_wins_over_routing_and_a_given_badge_over_totals() {
        let mut push = push(BadgePlan::Given(4), None);
        push.fan_out.skip_all = Some(Reason::ExpiredAtAccept);
        let clients = recipients(&push.fan_out);
        let plans = plan_recipients(&push, &clients, None, None, None);
        assert!(plans.iter().all(|plan| plan.status == "skipped"
            && plan.reason.as_deref() == Some("expired before it was accepted")
            && plan.badge == Some(4)));
    }

    #[test]
    fn a_quiet_rooms_message_alerts_and_opens_a_window_and_the_next_ones_are_held_except_mentions() {
        let room = RoomId::parse("r").expect("a room");
        let mut push =
            push(BadgePlan::CountUnread(room.clone()), Some(RoutingPlan { room, online: OnlinePolicy::Silent }));
        push.now_ms = 5_000;
        push.fan_out.coalescing = Some(Coalescing { window_ms: 10_000, sender: Some("Carol".into()) });
        let clients = recipients(&push.fan_out); // alice (mentioned), bob
        let window = |until: i64, holding: bool| Window {
            until,
            count: 3,
            senders: vec!["Dave".into(), "Carol".into()],
            holding,
        };
        let plan = |alice: Option<Window>, bob: Option<Window>, states: Vec<RecipientState>| {
            plan_recipients(&push, &clients, None, Some(states), Some(vec![alice, bob]))
                .into_iter()
                .map(|plan| plan.window)
                .collect::<Vec<_>>()
        };
        let alerted = || vec![state(false, false), state(false, false)];
        // No window, or one that ended with nothing held: the alert goes now.
        for bob in [None, Some(window(5_000, false))] {
            let windows = plan(None, bob, alerted());
            assert_eq!(windows[0], None, "a mention is never held, nor opens a window");
            assert_eq!(
                windows[1],
                Some(WindowChange { window: WindowStep::Open, until: 15_000, count: 1, senders: vec!["Carol".into()] })
            );
        }
        // A live window, or one past its end whose held message is not sent yet: held.
        for bob in [window(9_000, false), window(4_000, true)] {
            let until = bob.until;
            let windows = plan(Some(window(9_000, true)), Some(bob), alerted());
            assert_eq!(windows[0], None, "a mention in a busy room alerts at once");
            assert_eq!(
                windows[1],
                Some(WindowChange {
                    window: WindowStep::Hold,
                    until,
                    count: 4,
                    senders: vec!["Carol".into(), "Dave".into()],
                }),
                "the latest sender first, each once"
            );
        }
        // A recipient routed silent (online) gets its badge update at once.
        let windows = plan(None, Some(window(9_000, false)), vec![state(false, false), state(true, false)]);
        assert_eq!(windows[1], None);
        // Without coalescing, nothing changes.
        let mut off = push.clone();
        off.fan_out.coalescing = None;
        let plans =
            plan_recipients(&off, &clients, None, Some(alerted()), Some(vec![None, Some(window(9_000, false))]));
        assert!(plans.iter().all(|plan| plan.window.is_none()));
    }
}
