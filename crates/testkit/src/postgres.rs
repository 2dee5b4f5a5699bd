//! The PostgreSQL server the tests of the shared store run on:
//! `PUSHGATE_TEST_POSTGRES` (default `postgres://postgres@127.0.0.1:5432/test`).
//! Each test takes a schema of its own, so tests run in parallel. With
//! `CI=true` a server that does not answer fails the test; elsewhere the test
//! says so and passes without running.

/// The server's URL.
pub fn postgres_server() -> String {
    std::env::var("PUSHGATE_TEST_POSTGRES").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// A schema name no other test (of this run or another) uses.
pub fn unique_schema(name: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_nanos();
    format!("pushgate_test_{name}_{}_{nanos}", std::process::id())
}

/// The server did not answer with `error`: panics under CI, which needs it;
/// elsewhere says the test did not run and answers `None`.
pub fn postgres_absent<T>(error: &dyn std::fmt::Debug) -> Option<T> {
    let server = postgres_server();
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "PostgreSQL at {server} does not answer, and CI needs it: {error:?}"
    );
    eprintln!("PostgreSQL at {server} does not answer ({error:?}); this test did not run");
    None
}
