//! The pushgate service: configuration and wiring. The binary in `main.rs`
//! is a thin command line over this library, which the integration tests
//! drive directly.

pub mod client;
pub mod config;
pub mod export;
pub mod keys;
pub mod providers;
pub mod reload;
pub mod startup;
