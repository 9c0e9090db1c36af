//! A Kafka-protocol broker (tansu) of a test's own, on a free port with
//! memory storage, so the test may pause or kill it without touching the
//! broker every other test shares.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// A running tansu; killed on drop.
pub struct OwnBroker {
    pub child: Child,
    /// `host:port` for `kafka.brokers`.
    pub address: String,
}

impl Drop for OwnBroker {
    fn drop(&mut self) {
        self.resume();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl OwnBroker {
    /// Starts tansu on a free port, logging to `dir`. The test-backend
    /// script installs tansu (in `PATH` or `~/.cargo/bin`); without it this
    /// panics, so a test that needs it fails instead of skipping.
    pub fn start(dir: &Path) -> OwnBroker {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let url = format!("tcp://127.0.0.1:{port}");
        let log = std::fs::File::create(dir.join("tansu.log")).expect("tansu log");
        let child = Command::new(tansu_binary())
            .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url])
            .args(["--storage-engine", "memory://tansu/"])
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log clone"))
            .stderr(log)
            .spawn()
            .expect("tansu is installed (scripts/test-env.sh installs it)");
        OwnBroker { child, address: format!("127.0.0.1:{port}") }
    }

    /// Stops the broker's process (`SIGSTOP`): connections stay open and
    /// nothing answers, as in a long garbage-collection pause or a frozen VM.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Lets a paused broker go on (`SIGCONT`).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill").args([signal, &self.child.id().to_string()]).status().expect("kill");
        assert!(status.success(), "kill {signal} the broker");
    }
}

fn tansu_binary() -> PathBuf {
    let in_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths).map(|dir| dir.join("tansu")).find(|candidate| candidate.is_file())
    });
    let in_cargo_home = std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo/bin/tansu"));
    in_path.or(in_cargo_home.filter(|candidate| candidate.is_file())).unwrap_or_else(|| PathBuf::from("tansu"))
}
