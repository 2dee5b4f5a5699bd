//! The PostgreSQL server the tests of the shared store run on:
//! `PUSHGATE_TEST_POSTGRES` (default `postgres://postgres@127.0.0.1:5432/test`).
//! Each test takes a schema of its own, so tests run in parallel. A server
//! that does not answer fails the test: a test that did not run must never
//! count as passed. `cargo xtask test` (the README's test command) leaves
//! out, and names as skipped, the tests that need a server when none answers.

/// The server's URL.
pub fn postgres_server() -> String {
    std::env::var("PUSHGATE_TEST_POSTGRES").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// A schema name no other test (of this run or another) uses.
pub fn unique_schema(name: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_nanos();
    format!("pushgate_test_{name}_{}_{nanos}", std::process::id())
}

/// The server did not answer with `error`: the test fails, saying so.
pub fn postgres_absent<T>(error: &dyn std::fmt::Debug) -> T {
    panic!(
        "PostgreSQL at {} does not answer ({error:?}): this test needs it. `cargo xtask test` leaves out \
         the tests that need PostgreSQL when it does not answer, and says so",
        postgres_server()
    )
}
