//! A throwaway PostgreSQL cluster of a test's own (run as `postgres`, its own port and socket
//! folder), started through `scripts/lib.sh` and stopped when dropped.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use postgres::{Client, NoTls};

pub struct Cluster {
    pub dir: PathBuf,
    pub port: u16,
}

fn lib_sh() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/lib.sh")
}

impl Cluster {
    /// Starts a new cluster with these `postgresql.conf` lines.
    pub fn start(name: &str, port: u16, conf: &[String]) -> Cluster {
        let dir = PathBuf::from(format!("/tmp/doctrove_embed_it_{name}"));
        let status = Command::new("bash")
            .arg("-c")
            .arg(r#"source "$1"; shift; cluster_start "$@""#)
            .arg("bash")
            .arg(lib_sh())
            .arg(&dir)
            .arg(port.to_string())
            .args(conf)
            .status()
            .expect("run bash");
        assert!(status.success(), "cluster {name} did not start");
        Cluster { dir, port }
    }

    pub fn connect(&self) -> Client {
        self.try_connect().expect("connect to the test cluster")
    }

    /// A session, or `None` while the server is not accepting connections (after a crash).
    pub fn try_connect(&self) -> Option<Client> {
        Client::connect(&format!("host=127.0.0.1 port={} user=postgres dbname=postgres", self.port), NoTls).ok()
    }

    /// A session opened after the postmaster has restarted from a crash. A connection made
    /// between the kill and the postmaster noticing it would be closed by the reinitialisation,
    /// so this waits for the log to show the server ready again after the crash first.
    pub fn reconnect_after_crash(&self) -> Client {
        wait_for("the server to come back after the crash", Duration::from_secs(30), || {
            let log = self.log();
            let crash = log.find("all server processes terminated; reinitializing")?;
            log[crash..].contains("database system is ready to accept connections").then_some(())?;
            let mut client = self.try_connect()?;
            client.simple_query("SELECT 1").ok()?;
            Some(client)
        })
    }

    /// The server log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg("-c")
            .arg(r#"source "$1"; cluster_stop "$2""#)
            .arg("bash")
            .arg(lib_sh())
            .arg(&self.dir)
            .status();
    }
}

/// Polls `check` every 50 ms until it returns `Some`, or panics after `limit` naming `what`.
pub fn wait_for<T>(what: &str, limit: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(start.elapsed() < limit, "timed out after {limit:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
