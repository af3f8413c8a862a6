//! Helpers for the client-side integration tests: a connection to the test cluster started
//! by `scripts/test.sh`, a fresh database per test, and the mock's address and counters.

pub mod cluster;

use std::sync::atomic::{AtomicU32, Ordering};

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
        admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).unwrap();
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
        client.execute("SELECT set_config('doctrove_embed.api_base_url', $1, false)", &[&url]).unwrap();
    }

    pub fn stats(&self) -> Value {
        mock_stats(&self.scope)
    }
}

/// Reads a `vector` column as `real[]`.
pub fn vector_of(client: &mut Client, sql: &str) -> Option<Vec<f32>> {
    client.query_one(sql, &[]).unwrap().get::<_, Option<Vec<f32>>>(0)
}
