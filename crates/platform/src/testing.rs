//! Helpers for tests that need a real backend.

/// The URL of a test backend from environment variable `variable`
/// (`SWITCHBOARD_TEST_KAFKA`, `SWITCHBOARD_TEST_REDIS`,
/// `SWITCHBOARD_TEST_POSTGRES`). Missing: under `CI=true` the test fails,
/// elsewhere it is skipped with a note on stderr.
#[allow(clippy::panic)]
pub fn backend_url(variable: &str) -> Option<String> {
    match std::env::var(variable) {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var("CI").is_ok_and(|ci| ci == "true") => {
            panic!("{variable} is not set but CI=true: this test needs its backend (run scripts/test.sh)")
        }
        _ => {
            eprintln!("skipping: {variable} is not set (scripts/test.sh starts the backends and sets it)");
            None
        }
    }
}

/// A short random suffix that keeps one test's topics, groups, databases
/// and Redis keys apart from every other test's.
pub fn unique_suffix() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_owned()
}

/// Creates an empty database on the server of `admin_url` and returns the
/// URL of the new database.
pub async fn fresh_database(admin_url: &str) -> anyhow::Result<String> {
    let (client, connection) = tokio_postgres::connect(admin_url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    let name = format!("test_{}", unique_suffix());
    client.batch_execute(&format!("CREATE DATABASE {name}")).await?;
    // The admin URL ends in its database name: swap that for the new one.
    let base = admin_url.rsplit_once('/').map_or(admin_url, |(base, _)| base);
    Ok(format!("{base}/{name}"))
}
