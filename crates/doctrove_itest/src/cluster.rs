//! A throwaway PostgreSQL cluster of a test's own (run as `postgres`, its own port, chosen free
//! when it starts, and socket folder), started through `scripts/lib.sh` and stopped when dropped.

use std::net::TcpListener;
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
    /// Starts a new cluster with these `postgresql.conf` lines, on a port free at the time: the
    /// one the system gives a listener bound to `127.0.0.1:0`. Another process may take that port
    /// before the server binds it; then the cluster is started again on a new one.
    pub fn start(name: &str, conf: &[String]) -> Cluster {
        const ATTEMPTS: usize = 5;
        let dir = PathBuf::from(format!("/tmp/doctrove_embed_it_{name}"));
        for attempt in 1..=ATTEMPTS {
            let port = free_port();
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
            if status.success() {
                return Cluster { dir, port };
            }
            let log = std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
            let port_taken = log.contains("Address already in use");
            assert!(port_taken, "cluster {name} did not start");
            assert!(
                attempt < ATTEMPTS,
                "cluster {name} did not start: each of {ATTEMPTS} free ports was taken before the server bound it"
            );
            eprintln!("cluster {name}: port {port} was taken before the server bound it; starting on another");
        }
        unreachable!("the last attempt returns or panics")
    }

    pub fn connect(&self) -> Client {
        self.try_connect().expect("connect to the test cluster")
    }

    /// A session on database `dbname`.
    pub fn connect_to(&self, dbname: &str) -> Client {
        Client::connect(
            &format!("host=127.0.0.1 port={} user=postgres dbname={dbname}", self.port),
            NoTls,
        )
        .unwrap_or_else(|e| panic!("connect to database {dbname}: {e}"))
    }

    /// A session, or `None` while the server is not accepting connections (after a crash).
    pub fn try_connect(&self) -> Option<Client> {
        Client::connect(
            &format!("host=127.0.0.1 port={} user=postgres dbname=postgres", self.port),
            NoTls,
        )
        .ok()
    }

    /// A session opened after the postmaster has restarted from a crash. A connection made
    /// between the kill and the postmaster noticing it would be closed by the reinitialisation,
    /// so this waits for the log to show the server ready again after the crash first.
    pub fn reconnect_after_crash(&self) -> Client {
        wait_for("the server to come back after the crash", Duration::from_secs(30), || {
            let log = self.log();
            let crash = log.find("all server processes terminated; reinitializing")?;
            log[crash..]
                .contains("database system is ready to accept connections")
                .then_some(())?;
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

/// A TCP port nothing listens on now: the one the system picks for a listener bound to
/// `127.0.0.1:0`, closed again so the server can bind it.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a listener to 127.0.0.1:0");
    listener.local_addr().expect("the listener's address").port()
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
