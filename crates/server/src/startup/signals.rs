//! The signals a running node answers: SIGTERM and Ctrl-C stop it (with a
//! drain), SIGHUP reads its credentials again.

use crate::reload::Reloader;
use std::future::Future;
use std::sync::Arc;

/// SIGHUP, listened for from when the application is built (so a hangup
/// right after the server says it listens reloads rather than kills it).
#[cfg(unix)]
pub(super) type Hangups = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
pub(super) type Hangups = Option<()>;

pub(super) fn listen_for_hangups() -> Hangups {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        signal(SignalKind::hangup())
            .inspect_err(|error| tracing::warn!(%error, "cannot listen for SIGHUP; reload with POST /admin/api/reload"))
            .ok()
    }
    #[cfg(not(unix))]
    None
}

/// Reads the credentials again on every SIGHUP (the reload logs its outcome).
pub(super) async fn reload_on_hangup(reloader: Arc<Reloader>, hangups: Hangups) {
    #[cfg(unix)]
    if let Some(mut hangups) = hangups {
        while hangups.recv().await.is_some() {
            tracing::info!("SIGHUP: reading the credentials again");
            let _ = pushgate_api::Reload::reload(reloader.as_ref()).await;
        }
    }
    #[cfg(not(unix))]
    let _ = (reloader, hangups);
}

/// A future that resolves when the process is asked to stop (Ctrl-C or
/// SIGTERM). The handlers are installed when this is called, not when the
/// future is first polled, so a signal that comes right after the server
/// says it listens is never taken by the default action (an unclean exit).
/// Call it inside the runtime.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    let signals = {
        use tokio::signal::unix::{SignalKind, signal};
        (signal(SignalKind::interrupt()).ok(), signal(SignalKind::terminate()).ok())
    };
    async move {
        #[cfg(unix)]
        {
            let (mut interrupt, mut terminate) = signals;
            let interrupt = async {
                match interrupt.as_mut() {
                    Some(signal) => {
                        signal.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            let terminate = async {
                match terminate.as_mut() {
                    Some(signal) => {
                        signal.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                () = interrupt => {},
                () = terminate => {},
            }
        }
        #[cfg(not(unix))]
        {
            // If the handler cannot be installed, the server runs until killed.
            if tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}
