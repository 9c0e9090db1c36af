//! PostgreSQL and Redis over TLS, against the test servers (scripts/test-env.sh
//! serves both with a certificate of its own CA): the connection is
//! encrypted, the server's certificate is checked, and a server signed by
//! another CA is refused.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::path::PathBuf;

use switchboard_platform::config::PostgresConfig;
use switchboard_platform::credentials::{PostgresCredentialStore, contract};
use switchboard_platform::postgres::pool;
use switchboard_platform::redis::connect_trusting;
use switchboard_test_support::pki::TestCa;
use switchboard_test_support::{backend_url, fresh_tls_database, scratch_dir};

fn test_ca() -> Option<PathBuf> {
    backend_url("SWITCHBOARD_TEST_TLS_CA").map(PathBuf::from)
}

#[tokio::test]
async fn postgres_with_sslmode_require_is_encrypted_and_checks_the_servers_certificate() {
    let (Some(url), Some(ca)) = (backend_url("SWITCHBOARD_TEST_POSTGRES_TLS"), test_ca()) else { return };
    let trusting = pool(&PostgresConfig { url: url.clone(), pool_size: 1, ca_file: Some(ca) }).unwrap();
    let client = trusting.get().await.expect("a TLS connection");
    let row = client.query_one("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[]).await.unwrap();
    assert!(row.get::<_, bool>(0), "the server sees an encrypted connection");

    let stranger = TestCa::new(&scratch_dir("pg-tls"), "stranger");
    let distrusting = pool(&PostgresConfig { url, pool_size: 1, ca_file: Some(stranger.ca_file()) }).unwrap();
    assert!(distrusting.get().await.is_err(), "a server certificate of another CA is refused");
}

#[tokio::test]
async fn the_credential_store_passes_its_contract_over_tls() {
    let (Some(admin), Some(tls_url), Some(ca)) =
        (backend_url("SWITCHBOARD_TEST_POSTGRES"), backend_url("SWITCHBOARD_TEST_POSTGRES_TLS"), test_ca())
    else {
        return;
    };
    let url = fresh_tls_database(&admin, &tls_url).await.unwrap();
    let pool = pool(&PostgresConfig { url, pool_size: 4, ca_file: Some(ca) }).unwrap();
    let store = PostgresCredentialStore::connect(pool).await.expect("migrated over TLS");
    contract::run_all(&store).await.expect("contract over TLS");
}

#[tokio::test]
async fn rediss_is_encrypted_and_checks_the_servers_certificate() {
    let (Some(url), Some(ca)) = (backend_url("SWITCHBOARD_TEST_REDIS_TLS"), test_ca()) else { return };
    let mut connection = connect_trusting(&url, Some(&ca)).await.expect("a TLS connection");
    let pong: String = redis::cmd("PING").query_async(&mut connection).await.unwrap();
    assert_eq!(pong, "PONG");
    let stranger = TestCa::new(&scratch_dir("redis-tls"), "stranger");
    let refused = connect_trusting(&url, Some(&stranger.ca_file())).await;
    assert!(refused.is_err(), "a server certificate of another CA is refused");
    let plain_to_tls_port = url.replacen("rediss://", "redis://", 1);
    assert!(connect_trusting(&plain_to_tls_port, None).await.is_err(), "the TLS port speaks no plaintext");
}
