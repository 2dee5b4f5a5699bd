//! Outcome batching, for every backend: attempt outcomes recorded at the
//! same time are stored as one write (a [`crate::grouped::WriteGroup`]: one
//! transaction, a few statements whatever their number: a send's settlements
//! are one `UPDATE` of its row, not one each).

use crate::grouped::Grouped;
use crate::queue::DeliveryKey;
use crate::{DeliveryRef, DeliveryStatus, DeliveryUpdate};

/// Most outcomes stored in one write.
pub(crate) const MAX_GROUP: usize = 1024;

pub(crate) type Outcome = (DeliveryRef, DeliveryUpdate);

/// The outcomes waiting for their group's commit.
pub(crate) type Outcomes = Grouped<Outcome, ()>;

/// A group of attempt outcomes sorted for storing, the same for every
/// backend (each writes each part in one statement, as JSON arrays).
#[derive(Debug)]
pub(crate) struct OutcomeGroup {
    /// Outcomes of deliveries with a row of their own, a JSON array (`id`
    /// and the outcome each); `None` when there are none.
    pub(crate) rows: Option<String>,
    /// First-attempt outcomes that need a row of their own (all but a
    /// success), a JSON array (`send`, `index` and the outcome each).
    pub(crate) own_rows: Option<String>,
    /// Per send, the entries now settled and the latest outcome's time.
    pub(crate) settled: std::collections::BTreeMap<i64, (Vec<u32>, i64)>,
}

impl OutcomeGroup {
    /// Sorts `updates`; each outcome is `{status, reason, next, attempted, now}`.
    pub(crate) fn of(updates: &[(DeliveryRef, DeliveryUpdate)]) -> Self {
        let (mut rows, mut own_rows, mut settled) = (Vec::new(), Vec::new(), std::collections::BTreeMap::new());
        for (delivery, update) in updates {
            let mut fields = serde_json::json!({
                "status": update.status.as_str(),
                "reason": update.reason.as_ref().map(ToString::to_string),
                "next": update.next_attempt_at_ms,
                "attempted": i32::from(update.attempted),
                "now": update.now_ms,
            });
            match delivery.0 {
                DeliveryKey::Row(id) => {
                    fields["id"] = id.into();
                    rows.push(fields);
                }
                DeliveryKey::Planned { send, index } => {
                    let (indexes, now): &mut (Vec<u32>, i64) = settled.entry(send).or_default();
                    indexes.push(index);
                    *now = (*now).max(update.now_ms);
                    if update.status != DeliveryStatus::Delivered {
                        fields["send"] = send.into();
                        fields["index"] = index.into();
                        own_rows.push(fields);
                    }
                }
            }
        }
        let array =
            |values: Vec<serde_json::Value>| (!values.is_empty()).then(|| serde_json::Value::from(values).to_string());
        Self { rows: array(rows), own_rows: array(own_rows), settled }
    }

    /// The settlements as one JSON array: `{send, indexes, now}` each.
    pub(crate) fn settled_json(&self) -> String {
        serde_json::Value::from_iter(
            self.settled
                .iter()
                .map(|(send, (indexes, now))| serde_json::json!({"send": send, "indexes": indexes, "now": now})),
        )
        .to_string()
    }
}
