//! Accepting a push: the store's commit, and the bookkeeping that must follow it.
//!
//! The commit and everything after it (the worker's wake-up, the metrics, the
//! log line) run in a task of their own, not in the request's future. A caller
//! that hangs up while its push waits for the group commit makes the server
//! drop the request's future; the push is still committed, so it must still be
//! counted and its delivery still started.

use crate::AppState;
use crate::error::ApiError;
use pushgate_store::{Accepted, NewPush};
use tracing::Instrument as _;

/// Where an accepted push came from: what its bookkeeping counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PushSource {
    /// `POST /push/push2clients`.
    Send,
    /// The silent badge update of a read mark with `sync`.
    ReadSync,
    /// An IMKIT callback of this version (`v1`, `v2`).
    Callback(&'static str),
}

/// Stores `push` and, once it is committed, wakes the worker and counts it,
/// whether or not the caller still waits for the answer.
/// The task runs in an `accept` span naming the app and the push (a child of
/// the request's), so every line it logs, in the store too, names the push.
/// When traces are exported, the span's context is kept with the push, so its
/// fan-out and attempts continue the trace (`pushgate_domain::trace`).
pub(crate) async fn accept_push(state: &AppState, mut push: NewPush, source: PushSource) -> Result<Accepted, ApiError> {
    let state = state.clone();
    let span = tracing::info_span!("accept", app.id = %push.app_id, push.id = %push.push_id);
    push.trace_parent = pushgate_domain::trace::parent_of(&span);
    let task = tokio::spawn(
        async move {
            let accepted = state.store.accept_push(&push).await?;
            announce(&state, &push, source, &accepted);
            Ok::<_, ApiError>(accepted)
        }
        .instrument(span),
    );
    task.await.map_err(ApiError::internal)?
}

fn announce(state: &AppState, push: &NewPush, source: PushSource, accepted: &Accepted) {
    let app = push.app_id.as_str();
    if let Some(first) = &accepted.duplicate_of {
        if let PushSource::Callback(version) = source {
            state.metrics.callback(app, version, "duplicate");
            tracing::info!(app.id = %app, push.id = %first, callback.version = version, "a callback came again; answered with its first push");
        }
        return;
    }
    state.delivery.wake();
    state.metrics.push_accepted(app);
    state.console.recent.record(push);
    match source {
        PushSource::Callback(version) => {
            state.metrics.callback(app, version, "accepted");
            tracing::info!(callback.version = version, push.clients = push.fan_out.clients.len(), "callback accepted");
        }
        PushSource::Send => {
            tracing::info!(push.clients = push.fan_out.clients.len(), "push accepted");
        }
        PushSource::ReadSync => {
            tracing::debug!("badge update accepted");
        }
    }
}
