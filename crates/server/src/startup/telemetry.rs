//! The process's logging and its TLS crypto provider, set up once at start.

use crate::config::{Config, LogFormat};

/// Picks the one rustls crypto provider of the whole binary (aws-lc-rs).
/// Calling it again is harmless.
pub fn install_crypto_provider() {
    // An error only means a provider is installed already, which is the goal.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// Starts logging to standard error as the configuration says; `RUST_LOG` wins.
pub fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&config.log.level));
    // Colour codes only for a person at a terminal, never into a file or a log shipper.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match config.log.format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
