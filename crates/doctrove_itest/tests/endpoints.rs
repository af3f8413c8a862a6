//! Named endpoints from the server's configuration (`doctrove_embed.endpoints_file`): a job's
//! requests go to the freest of its endpoints and move on from one that is down, the jobs view
//! shows each endpoint's share and errors, and no role but a superuser chooses where a key goes.

use std::os::unix::fs::PermissionsExt;

use doctrove_itest::{cluster, connect_as, mock_root, mock_stats, record_attack, TestDb};
use doctrove_mock::vector_for;
use postgres::{Client, NoTls};

/// Writes the endpoints file as the server's user with `mode`, and makes it the server's.
fn install_endpoints_file(json: &str, mode: u32) -> String {
    let path = format!("/tmp/doctrove_embed_endpoints_{}.json", std::process::id());
    std::fs::write(&path, json).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    let status = std::process::Command::new("chown")
        .args(["postgres", &path])
        .status()
        .unwrap();
    assert!(status.success(), "chown postgres {path}");
    let mut admin = Client::connect(&cluster(), NoTls).unwrap();
    admin
        .batch_execute(&format!("ALTER SYSTEM SET doctrove_embed.endpoints_file = '{path}'"))
        .unwrap();
    admin.batch_execute("SELECT pg_reload_conf()").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    path
}

fn papers(client: &mut Client, from: i64, to: i64) {
    client
        .execute(
            "INSERT INTO papers (id, doctrove_title) SELECT g, 'Paper ' || g FROM generate_series($1::bigint, $2::bigint) g",
            &[&from, &to],
        )
        .unwrap();
}

fn state_of(result: Result<(), postgres::Error>) -> Option<String> {
    result.err().and_then(|e| e.code().map(|c| c.code().to_string()))
}

#[test]
fn a_job_moves_on_from_a_down_endpoint_and_prefers_the_freest() {
    let db = TestDb::new("endpoints");
    let (good, spare) = (format!("{}-good", db.scope), format!("{}-spare", db.scope));
    let json = format!(
        r#"{{"down": {{"url": "http://127.0.0.1:9/v1"}},
            "good": {{"url": "{mock}/s={good}/dim=8/v1", "max_requests_per_minute": 60}},
            "spare": {{"url": "{mock}/s={spare}/dim=8/v1"}}}}"#,
        mock = mock_root()
    );
    let path = install_endpoints_file(&json, 0o600);
    let mut client = db.connect();
    client
        .batch_execute(
            "CREATE TABLE papers (id bigint PRIMARY KEY, doctrove_title text, doctrove_abstract text, e vector(8));
             SELECT doctrove_embed.create_job('spread', 'papers', 'e', 'm', endpoints => '{down,good}');",
        )
        .unwrap();
    papers(&mut client, 1, 40);

    // The endpoint that is down fails once, rests, and the job goes on through the other.
    let row = client
        .query_one("SELECT successful_embeddings FROM embed_pending(40, 'spread')", &[])
        .unwrap();
    assert_eq!(row.get::<_, i32>(0), 40);
    assert_eq!(mock_stats(&good)["inputs"], 40);
    let texts: Vec<(String, Vec<f32>)> = client
        .query(
            "SELECT doctrove_embed.input_text(doctrove_title, NULL), e::real[] FROM papers",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert!(texts.iter().all(|(text, v)| *v == vector_for(text, 8)));
    papers(&mut client, 41, 50);
    client.batch_execute("SELECT * FROM embed_pending(40, 'spread')").unwrap();
    let shares: String = client
        .query_one("SELECT endpoints FROM doctrove_embed.jobs WHERE name = 'spread'", &[])
        .unwrap()
        .get(0);
    assert_eq!(
        shares, "down 0% (1 error), good 100%",
        "the resting endpoint is not tried again"
    );

    // With both up, the freest goes first: spare has no limit, good's bucket is spent.
    client
        .batch_execute("SELECT doctrove_embed.alter_job('spread', endpoints => '{good,spare}')")
        .unwrap();
    papers(&mut client, 51, 60);
    client.batch_execute("SELECT * FROM embed_pending(40, 'spread')").unwrap();
    assert_eq!(
        (mock_stats(&good)["inputs"].as_i64(), mock_stats(&spare)["inputs"].as_i64()),
        (Some(50), Some(10))
    );

    // An endpoint that is not defined, or more than eight, are refused when the job is defined.
    let undefined = client.batch_execute("SELECT doctrove_embed.alter_job('spread', endpoints => '{nowhere}')");
    assert_eq!(state_of(undefined).as_deref(), Some("42704"));

    // Only a superuser chooses where requests (and keys) go: the setting is superuser-only and a
    // job names endpoints, never URLs.
    let mut admin = db.connect();
    admin
        .batch_execute(
            "DROP ROLE IF EXISTS endpoint_owner; CREATE ROLE endpoint_owner LOGIN;
             GRANT EXECUTE ON FUNCTION doctrove_embed.create_job(text, text, text, text, text, text, text, integer, text, text, integer, integer, boolean, boolean, text[], text, text) TO endpoint_owner;
             ALTER TABLE papers OWNER TO endpoint_owner;
             SELECT doctrove_embed.resume_job('spread');",
        )
        .unwrap();
    let mut owner = connect_as("endpoint_owner", &db.name);
    let set = owner.batch_execute("SET doctrove_embed.endpoints_file = '/tmp/mine.json'");
    let url = owner.batch_execute("SELECT doctrove_embed.alter_job('spread', endpoints => '{http://127.0.0.1:9/v1}')");
    let (set, url) = (state_of(set), state_of(url));
    // A reload-time setting: no session sets it (55P02), and it is superuser-only besides.
    record_attack("a table owner choosing the endpoints file", set.as_deref() != Some("55P02"));
    record_attack("a job naming a URL as its endpoint", url.as_deref() != Some("42704"));
    assert_eq!((set.as_deref(), url.as_deref()), (Some("55P02"), Some("42704")));

    // A file others may read is refused, as a key file would be.
    install_endpoints_file(&json, 0o644);
    let exposed = client.batch_execute("SELECT * FROM embed_pending(40, 'spread')");
    assert_eq!(state_of(exposed).as_deref(), Some("F0000"));

    let mut admin = Client::connect(&cluster(), NoTls).unwrap();
    admin
        .batch_execute("ALTER SYSTEM RESET doctrove_embed.endpoints_file")
        .unwrap();
    admin.batch_execute("SELECT pg_reload_conf()").unwrap();
    let _ = std::fs::remove_file(path);
}
