//! The arXiv importer against the installed extension: records in the snapshot's exact format,
//! with its quirks; counts; loading twice; then embedding what was loaded.

use doctrove_itest::TestDb;
use doctrove_mock::vector_for;

const SNAPSHOT: &str = r#"{"id":"0704.0001","submitter":"Pavel Nadolsky","authors":"C. Bal\\'azs, E. L. Berger","title":"Calculation of prompt diphoton production cross sections at Tevatron and\n  LHC energies","categories":"hep-ph","abstract":"  A fully differential calculation in perturbative quantum chromodynamics is\npresented for the production of massive photon pairs at hadron colliders.\n","update_date":"2008-11-13"}
{"id":"hep-th/9901001","authors":"A. Author","title":"  The $\\alpha$-decay of $^{8}$Be  ","categories":"hep-th nucl-th","abstract":"We compute $\\Gamma$ for\n the decay.","update_date":"1999-01-04"}
{"id":"0704.0002","authors":"B. Writer","title":"A paper without an abstract","categories":"math.CO","update_date":"2007-05-01"}
{"id":"0704.0003","title":"First version","abstract":"old text","update_date":"2007-04-01"}
not a json line
{"title":"a record with no id"}
{"id":"0704.0003","title":"Second version","abstract":"new text","update_date":"2007-06-01"}

"#;

#[test]
fn the_snapshot_loads_once_whatever_its_quirks_and_then_embeds() {
    let db = TestDb::new("importer");
    let mut client = db.connect();
    doctrove_import::create_table(&mut client, "doctrove_papers", 8).unwrap();
    let counts = doctrove_import::import(&mut client, "doctrove_papers", SNAPSHOT.as_bytes()).unwrap();
    assert_eq!((counts.lines, counts.written, counts.unchanged, counts.skipped), (7, 4, 0, 2));
    let papers: i64 = client.query_one("SELECT count(*) FROM doctrove_papers", &[]).unwrap().get(0);
    assert_eq!(papers, 4);

    // The same file again changes nothing.
    let again = doctrove_import::import(&mut client, "doctrove_papers", SNAPSHOT.as_bytes()).unwrap();
    assert_eq!((again.written, again.unchanged), (0, 4));
    let papers: i64 = client.query_one("SELECT count(*) FROM doctrove_papers", &[]).unwrap().get(0);
    assert_eq!(papers, 4);

    let row = client
        .query_one(
            "SELECT doctrove_title, doctrove_abstract, doctrove_categories, doctrove_primary_date::text
             FROM doctrove_papers WHERE doctrove_source_id = 'hep-th/9901001'",
            &[],
        )
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "The $\\alpha$-decay of $^{8}$Be");
    assert_eq!(row.get::<_, String>(1), "We compute $\\Gamma$ for the decay.");
    assert_eq!(row.get::<_, Vec<String>>(2), vec!["hep-th", "nucl-th"]);
    assert_eq!(row.get::<_, String>(3), "1999-01-04");
    let later: String = client
        .query_one(
            "SELECT doctrove_title FROM doctrove_papers WHERE doctrove_source_id = '0704.0003'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(later, "Second version", "the later line of a repeated id wins");
    let no_abstract: Option<String> = client
        .query_one(
            "SELECT doctrove_abstract FROM doctrove_papers WHERE doctrove_source_id = '0704.0002'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(no_abstract, None);

    db.point_at_mock(&mut client, "dim=8/");
    let done: i32 = client
        .query_one("SELECT successful_embeddings FROM embed_pending(250)", &[])
        .unwrap()
        .get(0);
    assert_eq!(done, 4);
    let stored: Vec<f32> = client
        .query_one(
            "SELECT doctrove_embedding::real[] FROM doctrove_papers WHERE doctrove_source_id = '0704.0002'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(stored, vector_for("Title: A paper without an abstract", 8));
}
