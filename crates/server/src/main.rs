//! `pushgate`: the command line.

use clap::{Parser, Subcommand};
use pushgate::client::{ApiClient, CliError, cell, table};
use pushgate::config::{Config, StoreKind};
use pushgate::startup::{Application, Role, init_logging, shutdown_signal};
use secrecy::ExposeSecret as _;
use std::path::PathBuf;
use std::process::ExitCode;

/// mimalloc rather than glibc's allocator: the delivery path allocates many
/// small, short-lived buffers across threads, and profiles showed glibc's
/// `malloc_consolidate` and arena locking at ~15 % of the process (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Self-hosted push gateway for chat apps built on IMKIT.
#[derive(Debug, Parser)]
#[command(
    name = "pushgate",
    version,
    after_help = "Every configuration key can be set in the environment: PUSHGATE_<SECTION>__<KEY> \
                  (PUSHGATE_SERVER__LISTEN=0.0.0.0:8080, PUSHGATE_STORE__URL=postgres://…), and per app \
                  PUSHGATE_APPS__<APP ID or index>__<KEY> (PUSHGATE_APPS__SAMPLEAPP__FCM__RATE_PER_SECOND=500). \
                  They win over the file. RUST_LOG wins over [log] level."
)]
struct Cli {
    /// The TOML configuration file; without one, built-in defaults apply
    /// (one app `SampleApp`, SQLite file `pushgate.db`, 127.0.0.1:8080).
    #[arg(long, global = true, env = "PUSHGATE_CONFIG")]
    config: Option<PathBuf>,

    #[command(flatten)]
    remote: Remote,

    #[command(subcommand)]
    command: Command,
}

/// How the client verbs reach a running pushgate: accepted before the verb
/// (`pushgate --url … badge show user001`) or after it.
#[derive(Debug, clap::Args)]
struct Remote {
    /// The instance's base URL (client verbs: send, push, devices show|import, badge).
    #[arg(long, global = true, env = "PUSHGATE_URL", default_value = "http://127.0.0.1:8080")]
    url: String,
    /// The app's API key (`IM-API-KEY`) for the client verbs.
    #[arg(long, global = true, env = "PUSHGATE_KEY", hide_env_values = true)]
    key: Option<String>,
}

/// How a client verb prints its answer.
#[derive(Debug, clap::Args)]
struct Output {
    /// Print the answer as JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the service.
    Serve {
        /// What this process runs: `all` (API and delivery), `api` (the API
        /// only) or `worker` (delivery only, with the health, readiness and
        /// metrics routes). Split roles need a shared store (PostgreSQL).
        #[arg(long, value_enum, default_value_t = Role::All, env = "PUSHGATE_ROLE")]
        role: Role,
        /// Listen on this address instead of `[server] listen` (port 0 picks a free one).
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
    },
    /// Load and validate the configuration, report every problem, and exit.
    CheckConfig {
        /// Also prove each credential against its provider, without notifying
        /// anyone (an APNs request to a made-up token, an FCM validate-only
        /// send); exit 1 if any is refused or unreachable.
        #[arg(long)]
        probe: bool,
        /// Print the probe's results as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run the demo: pushgate with local stand-ins for APNs, FCM and a Web
    /// Push service, sample devices and pushes, and what each device got.
    /// The demo is the `pushgate-demo` binary (`cargo run -p pushgate-demo`),
    /// so this one carries no fake; this runs it when it was built beside it.
    Demo {
        /// Passed on to `pushgate-demo` (`--once`, `--listen ADDR`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        arguments: Vec<String>,
    },
    /// Send a push to clients (push2clients) on a running instance.
    Send {
        #[command(flatten)]
        output: Output,
        /// The clients, comma-separated.
        #[arg(long, value_delimiter = ',', required = true)]
        clients: Vec<String>,
        /// The title.
        #[arg(long)]
        title: Option<String>,
        /// The body.
        #[arg(long)]
        body: Option<String>,
        /// The badge (iOS).
        #[arg(long)]
        badge: Option<u32>,
        /// The push's `type` (its custom classification).
        #[arg(long = "type")]
        push_type: Option<String>,
        /// A whole push2clients `payload` (JSON), instead of the fields above.
        #[arg(long, conflicts_with_all = ["title", "body", "badge", "push_type"])]
        payload: Option<String>,
    },
    /// Look at a push.
    Push {
        #[command(subcommand)]
        command: PushCommand,
    },
    /// Look at or register devices.
    Devices {
        #[command(subcommand)]
        command: DevicesCommand,
    },
    /// Look at badges.
    Badge {
        #[command(subcommand)]
        command: BadgeCommand,
    },
    /// An app's APNs broadcast channels (iOS 18+): create, list, show,
    /// delete, and broadcast a Live Activity update to one.
    Channels {
        #[command(subcommand)]
        command: ChannelsCommand,
    },
    /// API keys in the store (create, list, revoke) and VAPID key pairs.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
}

#[derive(Debug, Subcommand)]
enum PushCommand {
    /// Each delivery of a push: client, device, status, attempts, reason.
    Show {
        #[command(flatten)]
        output: Output,
        /// The `pushId` push2clients or a callback answered.
        push_id: String,
        /// Wait up to this many seconds (at most 30) for every delivery to be final.
        #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(0..=30))]
        wait: Option<u64>,
    },
}

#[derive(Debug, Subcommand)]
enum DevicesCommand {
    /// A client's devices (tokens masked).
    Show {
        #[command(flatten)]
        output: Output,
        /// The client id.
        client_id: String,
    },
    /// Write every device of an app, from the store the configuration names,
    /// as JSON lines of `/me/subscribe` bodies with whole tokens (what
    /// `devices import` takes), to standard output.
    Export {
        /// The app's id.
        #[arg(long)]
        app: String,
    },
    /// Register every line of FILE: one `/me/subscribe` body (JSON) per line,
    /// such as an export of IMKIT's subscriptions. Idempotent; refused lines
    /// are listed with their numbers (exit code 1 if any).
    Import {
        #[command(flatten)]
        output: Output,
        /// The JSON lines file.
        file: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum BadgeCommand {
    /// A client's badge and what it is made of.
    Show {
        #[command(flatten)]
        output: Output,
        /// The client id.
        client_id: String,
    },
}

/// Which app's channels, in which APNs environment.
#[derive(Debug, clap::Args)]
struct ChannelScope {
    /// The app's id (the key's own).
    #[arg(long)]
    app: String,
    /// `production` or `sandbox`; the app's default environment when absent.
    #[arg(long)]
    environment: Option<String>,
}

#[derive(Debug, Subcommand)]
enum ChannelsCommand {
    /// Create a channel; prints its id (the app subscribes its Live Activity with it).
    Create {
        #[command(flatten)]
        output: Output,
        #[command(flatten)]
        scope: ChannelScope,
        /// Apple's message storage policy: 0 (none stored) or 1 (the most recent one).
        #[arg(long, value_parser = clap::value_parser!(u8).range(0..=1))]
        storage_policy: u8,
    },
    /// Every channel id of the app.
    List {
        #[command(flatten)]
        output: Output,
        #[command(flatten)]
        scope: ChannelScope,
    },
    /// One channel's storage policy and push type.
    Show {
        #[command(flatten)]
        output: Output,
        #[command(flatten)]
        scope: ChannelScope,
        /// The channel id.
        channel_id: String,
    },
    /// Delete a channel.
    Delete {
        #[command(flatten)]
        scope: ChannelScope,
        /// The channel id.
        channel_id: String,
    },
    /// Broadcast a Live Activity update or end to the channel's subscribers.
    Broadcast {
        #[command(flatten)]
        scope: ChannelScope,
        /// The channel id.
        channel_id: String,
        /// The Live Activity push (JSON), as `POST /push/liveactivity`'s `payload`:
        /// `{"event": "update", "contentState": {...}}`.
        #[arg(long)]
        payload: String,
    },
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Make an API key for an app, kept in the store (only its digest); the
    /// key is printed once. Running nodes take it on within seconds.
    Create {
        /// The app's id.
        #[arg(long)]
        app: String,
    },
    /// Every API key (configured, created, generated) by id, never the key.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key kept in the store by its id (at least 8 digits, from
    /// `keys list`); running nodes refuse it within seconds.
    Revoke {
        /// The key's id, or its first 8 or more digits.
        id: String,
    },
    /// Print a new VAPID key pair for `[apps.webpush]`: the private key (PEM,
    /// PKCS#8: save it as the `vapid_private_key_file`) on standard output,
    /// then its public key (base64url), which web clients take as
    /// `applicationServerKey`, on standard error.
    Vapid,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        // Keys need no configuration.
        Command::Keys { command: KeysCommand::Vapid } => new_vapid_key(),
        Command::Demo { arguments } => demo(&arguments),
        Command::Devices { command: DevicesCommand::Export { .. } } => {
            with_config(cli.config.as_deref(), cli.command, cli.remote)
        }
        Command::Send { .. }
        | Command::Push { .. }
        | Command::Devices { .. }
        | Command::Badge { .. }
        | Command::Channels { .. } => remote(cli.command, cli.remote),
        command => with_config(cli.config.as_deref(), command, cli.remote),
    }
}

/// A one-thread runtime for the verbs that make a few requests; `None`
/// (after saying why) when the OS refuses one.
fn small_runtime() -> Option<tokio::runtime::Runtime> {
    match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => Some(runtime),
        Err(error) => {
            eprintln!("pushgate: cannot start the async runtime: {error}");
            None
        }
    }
}

/// Runs a client verb against a running instance.
fn remote(command: Command, remote: Remote) -> ExitCode {
    let Some(runtime) = small_runtime() else { return ExitCode::FAILURE };
    match runtime.block_on(run_remote(command, remote)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("pushgate: {error}");
            ExitCode::from(error.exit_code())
        }
    }
}

/// The `channels` verbs.
async fn channels(client: &ApiClient, command: ChannelsCommand) -> Result<(), CliError> {
    use reqwest::Method;
    let print = |json: bool, value: &serde_json::Value, human: String| {
        if json { println!("{value}") } else { println!("{human}") }
    };
    match command {
        ChannelsCommand::Create { output, scope, storage_policy } => {
            let body = serde_json::json!({ "messageStoragePolicy": storage_policy });
            let environment = scope.environment.as_deref();
            let result = client.channels(Method::POST, &scope.app, None, false, environment, Some(&body)).await?;
            print(output.json, &result, format!("created: channel {}", cell(&result["channelId"])));
        }
        ChannelsCommand::List { output, scope } => {
            let result =
                client.channels(Method::GET, &scope.app, None, false, scope.environment.as_deref(), None).await?;
            let rows: Vec<Vec<String>> = result["channels"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .map(|id| vec![cell(id)])
                .collect();
            print(output.json, &result, table(&["channel"], &rows));
        }
        ChannelsCommand::Show { output, scope, channel_id } => {
            let environment = scope.environment.as_deref();
            let result = client.channels(Method::GET, &scope.app, Some(&channel_id), false, environment, None).await?;
            let human = format!(
                "channel {}: message storage policy {}, push type {}",
                cell(&result["channelId"]),
                cell(&result["messageStoragePolicy"]),
                cell(&result["pushType"])
            );
            print(output.json, &result, human);
        }
        ChannelsCommand::Delete { scope, channel_id } => {
            let environment = scope.environment.as_deref();
            client.channels(Method::DELETE, &scope.app, Some(&channel_id), false, environment, None).await?;
            println!("deleted: channel {channel_id}");
        }
        ChannelsCommand::Broadcast { scope, channel_id, payload } => {
            let payload: serde_json::Value = serde_json::from_str(&payload)
                .map_err(|error| CliError::Usage(format!("--payload is not JSON: {error}")))?;
            let body = serde_json::json!({ "payload": payload });
            let environment = scope.environment.as_deref();
            client.channels(Method::POST, &scope.app, Some(&channel_id), true, environment, Some(&body)).await?;
            println!("broadcast: channel {channel_id}");
        }
    }
    Ok(())
}

async fn run_remote(command: Command, remote: Remote) -> Result<(), CliError> {
    let client = || ApiClient::new(&remote.url, remote.key.clone());
    let print = |json: bool, value: &serde_json::Value, human: String| {
        if json { println!("{value}") } else { println!("{human}") }
    };
    match command {
        Command::Send { output, clients, title, body, badge, push_type, payload } => {
            let payload = match payload {
                Some(payload) => serde_json::from_str(&payload)
                    .map_err(|error| CliError::Usage(format!("--payload is not JSON: {error}")))?,
                None => {
                    let mut fields = serde_json::Map::new();
                    for (key, value) in [("title", title), ("body", body), ("type", push_type)] {
                        if let Some(value) = value {
                            fields.insert(key.into(), value.into());
                        }
                    }
                    if let Some(badge) = badge {
                        fields.insert("badge".into(), badge.into());
                    }
                    serde_json::Value::Object(fields)
                }
            };
            let result = client()?.send(&clients, &payload).await?;
            print(output.json, &result, format!("accepted: pushId {}", cell(&result["pushId"])));
        }
        Command::Push { command: PushCommand::Show { output, push_id, wait } } => {
            let result = client()?.push(&push_id, wait).await?;
            let rows: Vec<Vec<String>> = result["deliveries"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .map(|delivery| {
                    let mut row: Vec<String> = ["clientId", "type", "deviceId", "status", "attempts", "reason"]
                        .iter()
                        .map(|field| cell(&delivery[*field]))
                        .collect();
                    if let Some(explanation) = delivery["explanation"].as_str() {
                        row[5] = format!("{} ({explanation})", row[5]);
                    }
                    row
                })
                .collect();
            let summary = result["summary"].as_object().map(|summary| {
                summary.iter().map(|(status, count)| format!("{status} {count}")).collect::<Vec<_>>().join(", ")
            });
            let human = format!(
                "push {}: {}\n\n{}",
                cell(&result["pushId"]),
                summary.unwrap_or_default(),
                table(&["client", "type", "device", "status", "attempts", "reason"], &rows)
            );
            print(output.json, &result, human);
        }
        Command::Devices { command: DevicesCommand::Show { output, client_id } } => {
            let result = client()?.devices(&client_id).await?;
            let rows: Vec<Vec<String>> = result["devices"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .map(|device| {
                    ["type", "deviceId", "token", "environment", "locale", "timezone"]
                        .iter()
                        .map(|field| cell(&device[*field]))
                        .collect()
                })
                .collect();
            let human = table(&["type", "device", "token", "environment", "locale", "timezone"], &rows);
            print(output.json, &result, human);
        }
        Command::Devices { command: DevicesCommand::Import { output, file } } => {
            let summary = client()?.import_devices(&file).await?;
            let value = serde_json::to_value(&summary).unwrap_or_default();
            let mut human =
                format!("{} line(s): {} imported, {} refused", summary.lines, summary.imported, summary.refused.len());
            for refused in &summary.refused {
                human.push_str(&format!("\n  line {}: {}", refused.line, refused.reason));
            }
            print(output.json, &value, human);
            if !summary.refused.is_empty() {
                return Err(CliError::Partial(summary.refused.len()));
            }
        }
        Command::Channels { command } => channels(&client()?, command).await?,
        Command::Badge { command: BadgeCommand::Show { output, client_id } } => {
            let result = client()?.badge(&client_id).await?;
            let mut rows: Vec<Vec<String>> = Vec::new();
            for (kind, key) in [("room", "rooms"), ("source", "sources")] {
                if let Some(parts) = result[key].as_object() {
                    rows.extend(parts.iter().map(|(name, count)| vec![kind.to_owned(), name.clone(), cell(count)]));
                }
            }
            let human = format!("badge {}\n\n{}", cell(&result["badge"]), table(&["part", "name", "count"], &rows));
            print(output.json, &result, human);
        }
        _ => return Err(CliError::Usage("not a client verb".into())),
    }
    Ok(())
}

/// `devices export`: JSON lines on standard output, the count on standard error.
fn export(config: &Config, app: &str) -> ExitCode {
    let Some(runtime) = small_runtime() else { return ExitCode::FAILURE };
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let written = runtime.block_on(pushgate::export::export_devices(config, app, &mut out));
    match written.and_then(|written| std::io::Write::flush(&mut out).map(|()| written).map_err(Into::into)) {
        Ok(written) => {
            eprintln!("exported {written} device(s) of app {app}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("pushgate: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// `keys create|list|revoke`, on the store the configuration names.
fn stored_keys(config: &Config, command: KeysCommand) -> ExitCode {
    let Some(runtime) = small_runtime() else { return ExitCode::FAILURE };
    let done = runtime.block_on(async {
        match command {
            KeysCommand::Create { app } => {
                let (key, id) = pushgate::keys::create(config, &app).await?;
                eprintln!("Created API key {id} for app {app} (shown only this once; pushgate keeps only its hash):");
                println!("{}", key.expose_secret());
            }
            KeysCommand::List { json } => {
                let rows = pushgate::keys::list(config).await?;
                if json {
                    println!("{}", serde_json::to_value(&rows).unwrap_or_default());
                } else {
                    let rows: Vec<Vec<String>> = rows
                        .iter()
                        .map(|row| {
                            vec![
                                row.app.clone(),
                                row.id.clone(),
                                row.kind.to_owned(),
                                row.created_at_ms.map(|ms| ms.to_string()).unwrap_or_default(),
                                if row.active { "yes" } else { "no (keys are configured)" }.to_owned(),
                            ]
                        })
                        .collect();
                    println!("{}", table(&["app", "id", "kind", "created (ms)", "opens the app"], &rows));
                }
            }
            KeysCommand::Revoke { id } => {
                let (app, id) = pushgate::keys::revoke(config, &id).await?;
                println!("revoked key {id} of app {app}");
            }
            KeysCommand::Vapid => {}
        }
        Ok::<(), anyhow::Error>(())
    });
    match done {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("pushgate: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// `check-config --probe`: each app's credentials against its providers, as a table.
fn probe_providers(config: &Config, json: bool) -> ExitCode {
    let Some(runtime) = small_runtime() else { return ExitCode::FAILURE };
    pushgate::startup::install_crypto_provider();
    let results: Vec<_> = runtime.block_on(async {
        let mut results = Vec::new();
        for (id, app) in config.app_ids() {
            results.extend(pushgate::providers::probe(&id, app).await);
        }
        results
    });
    if results.is_empty() && !json {
        println!("no app has a provider configured ([apps.apns], [apps.fcm], [apps.webpush]): nothing to probe");
        return ExitCode::SUCCESS;
    }
    if json {
        println!("{}", serde_json::to_value(&results).unwrap_or_default());
    } else {
        let rows: Vec<Vec<String>> = results
            .iter()
            .map(|result| {
                let state = serde_json::to_value(result.state).map(|state| cell(&state)).unwrap_or_default();
                vec![result.app.clone(), result.provider.clone(), state, result.detail.clone()]
            })
            .collect();
        println!("{}", table(&["app", "provider", "state", "detail"], &rows));
    }
    if results.iter().all(|result| result.state == pushgate::providers::ProbeState::Ok) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn demo(arguments: &[String]) -> ExitCode {
    let beside = std::env::current_exe().map(|exe| exe.with_file_name("pushgate-demo"));
    match beside {
        Ok(demo) if demo.is_file() => match std::process::Command::new(&demo).args(arguments).status() {
            Ok(status) if status.success() => ExitCode::SUCCESS,
            Ok(_) => ExitCode::FAILURE,
            Err(error) => {
                eprintln!("pushgate: cannot run {}: {error}", demo.display());
                ExitCode::FAILURE
            }
        },
        _ => {
            eprintln!("pushgate: the demo is its own binary, so this one carries no fake: cargo run -p pushgate-demo");
            ExitCode::from(2)
        }
    }
}

fn new_vapid_key() -> ExitCode {
    match pushgate::providers::generate_vapid_key() {
        Ok((private_pem, public_key)) => {
            print!("{private_pem}");
            eprintln!("VAPID public key (applicationServerKey): {public_key}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("pushgate: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn with_config(path: Option<&std::path::Path>, command: Command, remote_at: Remote) -> ExitCode {
    let config = match Config::load(path, std::env::vars()) {
        Ok(config) => config,
        Err(error) => {
            eprint!("pushgate: {error}");
            return ExitCode::from(2);
        }
    };
    match command {
        Command::Keys { command: KeysCommand::Vapid } => new_vapid_key(),
        Command::Keys { command } => stored_keys(&config, command),
        Command::Devices { command: DevicesCommand::Export { app } } => export(&config, &app),
        Command::Demo { arguments } => demo(&arguments),
        Command::Send { .. }
        | Command::Push { .. }
        | Command::Devices { .. }
        | Command::Badge { .. }
        | Command::Channels { .. } => remote(command, remote_at),
        Command::CheckConfig { probe, json } => {
            println!("configuration is valid: {} app(s), store {}", config.apps.len(), config.store.url);
            let watch = pushgate_api::certificates::CertificateWatch(config.certificates());
            let mut expired = false;
            for found in watch.expiring(pushgate_api::now_ms()) {
                let (key, days) = (&found.key, found.days_left);
                if found.state == "expired" {
                    expired = true;
                    println!("expired: {key}: the certificate expired {} day(s) ago", -days);
                } else {
                    println!("warning: {key}: the certificate expires in {days} day(s)");
                }
            }
            let probed = if probe { probe_providers(&config, json) } else { ExitCode::SUCCESS };
            if expired { ExitCode::FAILURE } else { probed }
        }
        Command::Serve { role, listen } => {
            let mut config = config;
            if let Some(listen) = listen {
                config.server.listen = listen;
            }
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(runtime) => runtime,
                Err(error) => {
                    eprintln!("pushgate: cannot start the async runtime: {error}");
                    return ExitCode::FAILURE;
                }
            };
            let source = pushgate::reload::ConfigSource {
                file: path.map(std::path::Path::to_path_buf),
                environment: std::env::vars().filter(|(name, _)| name.starts_with("PUSHGATE_")).collect(),
            };
            match runtime.block_on(serve(config, role, source)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("pushgate: {error:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

async fn serve(config: Config, role: Role, source: pushgate::reload::ConfigSource) -> anyhow::Result<()> {
    let telemetry = init_logging(&config);
    if role != Role::All && StoreKind::of(&config.store.url) == Some(StoreKind::Sqlite) {
        let name = clap::ValueEnum::to_possible_value(&role).map(|value| value.get_name().to_owned());
        anyhow::bail!(
            "--role {} needs a store the other roles can share: set store.url to a postgres:// URL (the embedded \
             SQLite file belongs to one process)",
            name.unwrap_or_default()
        );
    }
    let mut application = Application::build_as(&config, role).await?;
    application.reload_from(source);
    // The signal handlers go in before anything says the server is up.
    let stop = shutdown_signal();
    let base_url = application.base_url();
    // Printed, not logged: the key must reach the operator once and never a log shipper.
    for generated in application.take_generated_keys() {
        let key = generated.key.expose_secret();
        println!(
            "Generated an API key for app {} (shown only this once; pushgate keeps only its hash):",
            generated.app_id
        );
        println!();
        println!("    {key}");
        println!();
        println!("Try it:");
        println!(
            "    curl -s {base_url}/me/subscribe -H 'IM-API-KEY: {key}' -H 'Content-Type: application/json' \
             -d '{{\"type\":\"android\",\"token\":\"demo-fcm-token\",\"deviceId\":\"device-1\",\"clientId\":\"user001\"}}'"
        );
        println!();
    }
    println!("pushgate listening on {base_url}");
    tracing::info!(url = %base_url, "listening");
    let stopped = application.run_until_stopped(stop).await;
    tracing::info!("stopped");
    // The last spans, the drain's among them, go out before the process ends.
    tokio::task::spawn_blocking(move || telemetry.shutdown()).await?;
    stopped
}
