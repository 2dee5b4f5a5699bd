//! The pushes this node accepted lately, by client: the console's answer to
//! "did a push for this user come in at all?".
//!
//! The store keeps a push's deliveries by push, not by client (a push to ten
//! thousand clients is one planned row), so finding a client's pushes there
//! would read every recent push. This node remembers the last [`KEPT`]
//! accepts instead, with up to [`CLIENTS_KEPT`] clients each: enough for an
//! incident, a few megabytes at most, gone on restart and per node.

use pushgate_store::NewPush;
use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};

/// Accepts remembered.
pub const KEPT: usize = 2_000;

/// Clients remembered per accept; a push to more remembers the first ones.
pub const CLIENTS_KEPT: usize = 1_000;

#[derive(Debug)]
struct Remembered {
    app: String,
    push: RecentPush,
    clients: Vec<String>,
}

/// One accepted push, as the console lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecentPush {
    /// Its id (`GET /v1/pushes/{pushId}` shows its deliveries).
    pub push_id: String,
    /// `custom` (push2clients), `chat` or `chat-v1` (a callback), `badge` (a read mark's update).
    pub kind: String,
    /// When it was accepted, Unix ms.
    #[serde(rename = "acceptedAtMS")]
    pub accepted_at_ms: i64,
    /// How many clients it named.
    pub clients: usize,
}

/// The last accepts, newest last.
#[derive(Debug, Default)]
pub struct RecentPushes(Mutex<VecDeque<Remembered>>);

impl RecentPushes {
    /// Remembers an accepted push.
    pub fn record(&self, push: &NewPush) {
        let remembered = Remembered {
            app: push.app_id.as_str().to_owned(),
            push: RecentPush {
                push_id: push.push_id.to_string(),
                kind: push.request.kind().as_str().to_owned(),
                accepted_at_ms: push.now_ms,
                clients: push.fan_out.clients.len(),
            },
            clients: push.fan_out.clients.iter().take(CLIENTS_KEPT).map(|client| client.as_str().to_owned()).collect(),
        };
        let mut recent = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if recent.len() == KEPT {
            recent.pop_front();
        }
        recent.push_back(remembered);
    }

    /// The remembered pushes of `app` that named `client`, newest first, at most `limit`.
    pub fn of_client(&self, app: &str, client: &str, limit: usize) -> Vec<RecentPush> {
        let recent = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        recent
            .iter()
            .rev()
            .filter(|remembered| remembered.app == app && remembered.clients.iter().any(|named| named == client))
            .take(limit)
            .map(|remembered| remembered.push.clone())
            .collect()
    }
}
