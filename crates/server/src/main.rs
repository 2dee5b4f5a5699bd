//! `pushgate`: the command line.

use clap::{Parser, Subcommand};
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

    #[command(subcommand)]
    command: Command,
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
    CheckConfig,
    /// Run the demo: pushgate with local stand-ins for APNs, FCM and a Web
    /// Push service, sample devices and pushes, and what each device got.
    /// The demo is the `pushgate-demo` binary (`cargo run -p pushgate-demo`),
    /// so this one carries no fake; this runs it when it was built beside it.
    Demo {
        /// Passed on to `pushgate-demo` (`--once`, `--listen ADDR`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        arguments: Vec<String>,
    },
    /// Make keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
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
        command => with_config(cli.config.as_deref(), command),
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

fn with_config(path: Option<&std::path::Path>, command: Command) -> ExitCode {
    let config = match Config::load(path, std::env::vars()) {
        Ok(config) => config,
        Err(error) => {
            eprint!("pushgate: {error}");
            return ExitCode::from(2);
        }
    };
    match command {
        Command::Keys { .. } => new_vapid_key(),
        Command::Demo { arguments } => demo(&arguments),
        Command::CheckConfig => {
            println!("configuration is valid: {} app(s), store {}", config.apps.len(), config.store.url);
            ExitCode::SUCCESS
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
            match runtime.block_on(serve(config, role)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("pushgate: {error:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

async fn serve(config: Config, role: Role) -> anyhow::Result<()> {
    init_logging(&config);
    if role != Role::All && StoreKind::of(&config.store.url) == Some(StoreKind::Sqlite) {
        let name = clap::ValueEnum::to_possible_value(&role).map(|value| value.get_name().to_owned());
        anyhow::bail!(
            "--role {} needs a store the other roles can share: set store.url to a postgres:// URL (the embedded \
             SQLite file belongs to one process)",
            name.unwrap_or_default()
        );
    }
    let mut application = Application::build_as(&config, role).await?;
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
    stopped
}
