//! The `pushgate` binary in a child process, for what only a process shows:
//! its command line, signals (SIGTERM's drain, SIGHUP's reload), `kill -9`.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};

/// The binary cargo built for these tests.
pub const BINARY: &str = env!("CARGO_BIN_EXE_pushgate");

/// `pushgate` run in `working_directory`, with none of this process's
/// `PUSHGATE_*` variables; killed when dropped.
pub fn pushgate(working_directory: &Path) -> Command {
    let mut command = Command::new(BINARY);
    command.current_dir(working_directory).kill_on_drop(true);
    for (name, _) in std::env::vars().filter(|(name, _)| name.starts_with("PUSHGATE_")) {
        command.env_remove(name);
    }
    command
}

/// A running `pushgate serve`.
#[derive(Debug)]
pub struct Served {
    pub child: Child,
    /// What it printed on standard output before it listened.
    pub printed: Vec<String>,
    /// The URL it listens on.
    pub base_url: String,
}

/// Starts `pushgate serve` with `args` (after `serve`) and `environment`
/// (warnings logged to this process's standard error), and reads its
/// standard output up to the "listening" line.
pub async fn serve(working_directory: &Path, args: &[&std::ffi::OsStr], environment: &[(&str, &str)]) -> Served {
    let mut command = pushgate(working_directory);
    command.arg("serve").args(args).envs(environment.iter().copied()).env("RUST_LOG", "warn");
    launch(command).await
}

/// Starts `command` (a `pushgate` that serves) with its standard output
/// piped, and reads it up to the "listening" line.
pub async fn launch(mut command: Command) -> Served {
    let mut child = command.stdout(Stdio::piped()).spawn().expect("pushgate starts");
    let mut lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
    let mut printed = Vec::new();
    let base_url = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.expect("stdout readable") {
            if let Some(url) = line.strip_prefix("pushgate listening on ") {
                return url.to_owned();
            }
            printed.push(line);
        }
        panic!("pushgate exited before listening; it printed {printed:?}");
    })
    .await
    .expect("pushgate listens within a minute");
    Served { child, printed, base_url }
}

/// Sends `signal` (`TERM`, `HUP`, `KILL`) to the process.
pub fn signal(child: &Child, signal: &str) {
    let pid = child.id().expect("running").to_string();
    let sent = std::process::Command::new("kill").args([format!("-{signal}"), pid]).status().expect("kill runs");
    assert!(sent.success(), "kill -{signal}");
}

/// SIGTERM, then waits (at most 30 s) for a clean exit.
pub async fn stop(mut child: Child) {
    signal(&child, "TERM");
    let exit = tokio::time::timeout(Duration::from_secs(30), child.wait()).await.expect("stops in time").expect("wait");
    assert!(exit.success(), "a SIGTERM is a clean stop, got {exit}");
}
