//! Helpers for the client-side integration tests: a connection to the test cluster started
//! by `scripts/test.sh`, a fresh database per test, and the mock's address and counters.

pub mod cluster;

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use postgres::{Client, NoTls};
use serde_json::Value;

/// The libpq-style connection string of the test cluster (`DOCTROVE_TEST_PG`).
pub fn cluster() -> String {
    std::env::var("DOCTROVE_TEST_PG").expect("DOCTROVE_TEST_PG is not set: run these tests through `make test`")
}

/// `http://127.0.0.1:PORT` of the running mock (`DOCTROVE_TEST_MOCK`).
pub fn mock_root() -> String {
    std::env::var("DOCTROVE_TEST_MOCK").expect("DOCTROVE_TEST_MOCK is not set: run these tests through `make test`")
}

/// The mock's counters for `scope`.
pub fn mock_stats(scope: &str) -> Value {
    doctrove_mock::fetch_stats(&mock_root(), scope).expect("read the mock's counters")
}

/// The counters `names` of one reading of the mock's counters, in order; a name the mock does
/// not count fails the test.
pub fn counters<const N: usize>(stats: &Value, names: [&str; N]) -> [i64; N] {
    names.map(|name| {
        stats[name]
            .as_i64()
            .unwrap_or_else(|| panic!("the mock has no counter {name}: {stats}"))
    })
}

/// A new, empty database with the extension created, named after the test; the scope of the
/// mock's counters is unique to this run.
pub struct TestDb {
    pub name: String,
    pub scope: String,
}

static NEXT: AtomicU32 = AtomicU32::new(0);

impl TestDb {
    pub fn new(test: &str) -> TestDb {
        let name = format!("it_{test}");
        let mut admin = Client::connect(&cluster(), NoTls).expect("connect to the test cluster");
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .unwrap();
        admin.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
        let scope = format!("{test}-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::SeqCst));
        let db = TestDb { name, scope };
        db.connect().batch_execute("CREATE EXTENSION doctrove_embed CASCADE").unwrap();
        db
    }

    /// A session on this database, pointed at the mock under this test's scope.
    pub fn connect(&self) -> Client {
        let mut client = Client::connect(&format!("{} dbname={}", cluster(), self.name), NoTls).unwrap();
        self.point_at_mock(&mut client, "");
        client
    }

    /// Sets this session's base URL to the mock with extra switches (`latency=50/`).
    pub fn point_at_mock(&self, client: &mut Client, switches: &str) {
        let url = format!("{}/s={}/{}v1", mock_root(), self.scope, switches);
        client
            .execute("SELECT set_config('doctrove_embed.api_base_url', $1, false)", &[&url])
            .unwrap();
    }

    pub fn stats(&self) -> Value {
        mock_stats(&self.scope)
    }
}

/// Appends a line to the fault suite's figures (`DOCTROVE_TEST_FIGURES`), printed at the end of
/// `make test`, and to the test's own output.
pub fn record_figure(line: &str) {
    println!("{line}");
    if let Ok(path) = std::env::var("DOCTROVE_TEST_FIGURES") {
        use std::io::Write;
        if let Ok(mut file) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
            let _ = writeln!(file, "{line}");
        }
    }
}

/// A papers table of `n` papers (ids 1..=n) with a `vector(dims)` column, a log of every
/// write of an embedding (`embedding_writes`, to prove each paper is written once), and the
/// partial index.
pub fn create_logged_papers(client: &mut Client, n: i64, dims: u32) {
    client
        .batch_execute(&format!(
            "CREATE TABLE doctrove_papers (
                 doctrove_paper_id bigint PRIMARY KEY,
                 doctrove_title text,
                 doctrove_abstract text,
                 doctrove_embedding vector({dims}));
             CREATE TABLE embedding_writes (paper_id bigint);
             CREATE FUNCTION log_embedding_write() RETURNS trigger LANGUAGE plpgsql AS
                 $$BEGIN INSERT INTO public.embedding_writes VALUES (NEW.doctrove_paper_id); RETURN NEW; END$$;
             CREATE TRIGGER log_embedding_write AFTER UPDATE OF doctrove_embedding ON doctrove_papers
                 FOR EACH ROW WHEN (NEW.doctrove_embedding IS NOT NULL) EXECUTE FUNCTION log_embedding_write();
             INSERT INTO doctrove_papers SELECT g, 'Paper ' || g, 'Abstract of paper ' || g, NULL
                 FROM generate_series(1, {n}) g;
             SELECT doctrove_embed.create_pending_index();"
        ))
        .unwrap();
}

/// What a run left in the table: papers with their correct vector, papers still without one,
/// papers with a wrong vector, and papers written more than once.
#[derive(Debug, PartialEq)]
pub struct Tally {
    pub correct: usize,
    pub missing: usize,
    pub wrong: usize,
    pub written_twice: i64,
}

pub fn tally(client: &mut Client, dims: usize) -> Tally {
    let rows = client
        .query(
            "SELECT doctrove_embed.input_text(doctrove_title, doctrove_abstract), doctrove_embedding::real[] FROM doctrove_papers",
            &[],
        )
        .unwrap();
    let mut t = Tally {
        correct: 0,
        missing: 0,
        wrong: 0,
        written_twice: 0,
    };
    for row in rows {
        let text: String = row.get(0);
        match row.get::<_, Option<Vec<f32>>>(1) {
            None => t.missing += 1,
            Some(v) if v == doctrove_mock::vector_for(&text, dims) => t.correct += 1,
            Some(_) => t.wrong += 1,
        }
    }
    t.written_twice = client
        .query_one(
            "SELECT count(*) FROM (SELECT paper_id FROM embedding_writes GROUP BY 1 HAVING count(*) > 1) d",
            &[],
        )
        .unwrap()
        .get(0);
    t
}

/// Calls `embed_pending(batch)` until it reports nothing done; returns the number of calls.
pub fn embed_until_done(client: &mut Client, batch: i32) -> usize {
    let mut calls = 0;
    loop {
        calls += 1;
        let row = client
            .query_one(
                "SELECT successful_embeddings, failed_embeddings FROM embed_pending($1)",
                &[&batch],
            )
            .unwrap();
        if row.get::<_, i32>(0) == 0 && row.get::<_, i32>(1) == 0 {
            return calls;
        }
    }
}

/// Records one attack of the security suite: a line `attack NAME worked=0|1` in the file named
/// by `DOCTROVE_SECURITY_LOG` (summed at the end of `make test`), and in the test's output.
/// The test still asserts; this only counts.
pub fn record_attack(name: &str, worked: bool) {
    let line = format!("attack {name} worked={}", u8::from(worked));
    println!("{line}");
    if let Ok(path) = std::env::var("DOCTROVE_SECURITY_LOG") {
        use std::io::Write;
        if let Ok(mut file) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
            let _ = writeln!(file, "{line}");
        }
    }
}

/// A session on database `dbname` of the test cluster as role `user`, with nothing run in it.
pub fn connect_as(user: &str, dbname: &str) -> Client {
    Client::connect(&format!("{} user={user} dbname={dbname}", cluster()), NoTls).expect("connect to the test cluster")
}

/// Runs `work` on `client` while sampling its backend's private memory (RssAnon: VmHWM would
/// also count the shared buffers it touches); returns what `work` returned, the memory before
/// and the most seen during, in kB.
pub fn with_peak_private_memory<T>(client: &mut Client, work: impl FnOnce(&mut Client) -> T) -> (T, u64, u64) {
    let pid: i32 = client.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
    let anon_kb = move || -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        status
            .lines()
            .find(|l| l.starts_with("RssAnon:"))
            .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            .unwrap_or(0)
    };
    let before_kb = anon_kb();
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut peak = 0;
            while !stop.load(Ordering::SeqCst) {
                peak = peak.max(anon_kb());
                std::thread::sleep(Duration::from_millis(10));
            }
            peak
        })
    };
    let result = work(client);
    stop.store(true, Ordering::SeqCst);
    (result, before_kb, sampler.join().unwrap())
}
