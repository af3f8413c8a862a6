//! The SQL the extension runs against the papers table, built from its (already resolved)
//! names. Column names are always quoted here; the table name arrives quoted and
//! schema-qualified. Values are never put into this text: they are bound as parameters.
//!
//! These statements run with the caller's `search_path` (so the table's own triggers and
//! defaults see the path they were written for), which the caller or a database owner may have
//! put a schema with planted objects in front of `pg_catalog`. So every function, operator and
//! type they name is schema-qualified: built-ins under `pg_catalog`, pgvector's through the
//! schema of the `vector` extension, the id type and its equality operator as the catalog
//! names them.

/// Doubles embedded quotes and wraps the name in quotes: correct for every identifier.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A string literal for DDL that cannot take parameters (trigger arguments).
pub fn quote_literal(value: &str) -> String {
    if value.contains('\\') {
        format!("E'{}'", value.replace('\\', "\\\\").replace('\'', "''"))
    } else {
        format!("'{}'", value.replace('\'', "''"))
    }
}

/// Name of the statement trigger that wakes the workers when papers are added or edited.
pub const WAKE_TRIGGER: &str = "doctrove_embed_wake";
/// Name of the row trigger that clears the embedding when the text changes.
pub const RESET_TRIGGER: &str = "doctrove_embed_reset";

/// Characters of a title or abstract read for one paper (at least the bytes an input can use,
/// see [`crate::bounds::MAX_INPUT_BYTES`]); PostgreSQL reads no more of a long text than this.
pub const MAX_TEXT_CHARS: usize = crate::bounds::MAX_INPUT_BYTES;

/// The names of the papers table and its columns, as found in the catalog.
#[derive(Debug, Clone, PartialEq)]
pub struct PapersTable {
    /// `"schema"."table"`, quoted.
    pub table: String,
    /// The bare relation name, for naming the index.
    pub relname: String,
    pub id: String,
    /// The id column's type, schema-qualified and quoted, used to cast ids back from text.
    pub id_type: String,
    /// The id type's equality operator, as `OPERATOR("schema".=)`.
    pub id_eq: String,
    /// The schema of the `vector` extension, quoted.
    pub vector_schema: String,
    pub title: String,
    pub abstract_text: Option<String>,
    pub embedding: String,
    pub model_version: Option<String>,
    pub updated_at: Option<String>,
    /// Whether the pending index is named after the embedding column (a job's: a table has one
    /// job per embedding column) rather than `TABLE_pending_embedding_idx` (the settings').
    pub index_per_column: bool,
    /// A job's model, when its model column records which model made each vector: a vector
    /// another model made is pending too (the job's model was changed), so it is embedded again.
    pub current_model: Option<String>,
}

impl PapersTable {
    /// The condition that makes a paper pending: no embedding yet and a non-empty title. The
    /// partial index on pending papers has exactly this predicate.
    pub fn pending_predicate(&self) -> String {
        let (e, t) = (quote_ident(&self.embedding), quote_ident(&self.title));
        let missing = match (&self.current_model, &self.model_version) {
            (Some(model), Some(column)) => format!(
                "({e} IS NULL OR {} IS DISTINCT FROM {}::pg_catalog.text)",
                quote_ident(column),
                quote_literal(model)
            ),
            _ => format!("{e} IS NULL"),
        };
        format!("{missing} AND {t} IS NOT NULL AND {t} OPERATOR(pg_catalog.<>) ''")
    }

    /// The pending predicate, less the papers held back after the API rejected them: `$first`
    /// is their ids as `text[]` (read from `doctrove_embed.failures` beforehand, so the caller
    /// needs no right on that table).
    pub fn pending_condition(&self, first: usize) -> String {
        format!(
            "{} AND NOT (t.{}::pg_catalog.text OPERATOR(pg_catalog.=) ANY (${first}::pg_catalog.text[]))",
            self.pending_predicate(),
            quote_ident(&self.id),
        )
    }

    /// `SELECT count(*)` of pending papers (`$1` as in [`Self::pending_condition`]).
    pub fn count_pending(&self) -> String {
        format!(
            "SELECT pg_catalog.count(*) FROM {} AS t WHERE {}",
            self.table,
            self.pending_condition(1)
        )
    }

    /// The pending condition, less the papers in an open batch of the Batch API for this column
    /// (`$relid` is the table's oid, the next parameter the column's name: a batch for another
    /// column of the table leaves these papers pending here; the claims table's row policy shows
    /// a role the claims of the tables it may read).
    /// `OFFSET 0` keeps the test a lookup of the claims' primary key for each candidate paper:
    /// as an anti-join, a planner that sees the claims table empty (it fills within the
    /// submitting transaction) scans every claim of the job once per candidate.
    pub fn unclaimed_condition(&self, held_back: usize, relid: usize) -> String {
        let column = relid + 1;
        format!(
            "{} AND NOT EXISTS (SELECT FROM doctrove_embed.batch_papers AS c WHERE c.embedding_column OPERATOR(pg_catalog.=) ${column}::pg_catalog.text \
             AND c.relid OPERATOR(pg_catalog.=) ${relid}::pg_catalog.oid \
             AND c.paper_id OPERATOR(pg_catalog.=) t.{}::pg_catalog.text OFFSET 0)",
            self.pending_condition(held_back),
            quote_ident(&self.id),
        )
    }

    /// Whether any paper is pending and in no open batch (`$1` as in
    /// [`Self::pending_condition`], `$2` the table's oid, `$3` the column): one index probe.
    pub fn any_pending(&self) -> String {
        format!(
            "SELECT EXISTS (SELECT FROM {} AS t WHERE {})",
            self.table,
            self.unclaimed_condition(1, 2)
        )
    }

    /// `(id text, title text, abstract text)` of the papers with the ids `$1` (as `text[]`)
    /// that are still pending, each text cut as in [`Self::select_pending`], locked for this
    /// transaction.
    pub fn select_claimed(&self) -> String {
        format!(
            "SELECT t.{id}::pg_catalog.text, {}, {} FROM {} AS t WHERE t.{id} {} ANY ($1::pg_catalog.text[]::{}[]) AND {} \
             FOR NO KEY UPDATE OF t",
            self.text_expr(&self.title),
            self.abstract_expr(),
            self.table,
            self.id_eq,
            self.id_type,
            self.pending_predicate(),
            id = quote_ident(&self.id),
        )
    }

    fn text_expr(&self, column: &str) -> String {
        format!(
            "pg_catalog.substr(t.{}::pg_catalog.text, 1, {MAX_TEXT_CHARS})",
            quote_ident(column)
        )
    }

    fn abstract_expr(&self) -> String {
        match &self.abstract_text {
            Some(a) => self.text_expr(a),
            None => "NULL::pg_catalog.text".into(),
        }
    }

    /// Up to `$1` pending papers in no open batch as (id text, title text, abstract text), each
    /// text cut to [`MAX_TEXT_CHARS`], locked for this transaction (`FOR NO KEY UPDATE`, which
    /// does not block inserts into tables that reference the papers); papers locked by another
    /// transaction are skipped, not waited for. (`$2` as in [`Self::pending_condition`], `$3`
    /// the table's oid.) `descending` takes them from the other end of the id order: the live
    /// path does so while batches are open, since submissions claim from the low end and the
    /// live path would otherwise step over every claimed paper on each fetch.
    pub fn select_pending(&self, descending: bool) -> String {
        let order = if descending {
            format!(" ORDER BY t.{} DESC", quote_ident(&self.id))
        } else {
            String::new()
        };
        format!(
            "SELECT t.{}::pg_catalog.text, {}, {} FROM {} AS t WHERE {}{order} LIMIT $1 FOR NO KEY UPDATE OF t SKIP LOCKED",
            quote_ident(&self.id),
            self.text_expr(&self.title),
            self.abstract_expr(),
            self.table,
            self.unclaimed_condition(2, 3)
        )
    }

    /// One UPDATE for a whole batch: `$1` ids as `text[]`, `$2` the vectors as `vector[]`,
    /// `$3` the model name (used only when the table has a model-version column).
    /// The columns each write sets: the embedding, and the model and updated-at columns when
    /// the table has them.
    pub fn written_columns(&self) -> Vec<&str> {
        std::iter::once(self.embedding.as_str())
            .chain(self.model_version.as_deref())
            .chain(self.updated_at.as_deref())
            .collect()
    }

    pub fn update_embeddings(&self) -> String {
        let mut sets = vec![format!("{} = v.embedding", quote_ident(&self.embedding))];
        if let Some(column) = &self.model_version {
            sets.push(format!("{} = $3", quote_ident(column)));
        }
        if let Some(column) = &self.updated_at {
            sets.push(format!("{} = pg_catalog.now()", quote_ident(column)));
        }
        format!(
            "UPDATE {} AS t SET {} FROM ROWS FROM (pg_catalog.unnest($1::pg_catalog.text[]), pg_catalog.unnest($2)) AS v(id, embedding) WHERE t.{} {} v.id::{}",
            self.table,
            sets.join(", "),
            quote_ident(&self.id),
            self.id_eq,
            self.id_type
        )
    }

    /// The text columns whose change makes a paper pending again, quoted and comma-separated.
    fn text_columns(&self) -> Vec<String> {
        std::iter::once(&self.title)
            .chain(self.abstract_text.as_ref())
            .map(|c| quote_ident(c))
            .collect()
    }

    /// The triggers `doctrove_embed.watch()` installs, as (name, CREATE statement): a statement
    /// trigger waking the workers after papers are inserted or their text edited (it acts at
    /// commit), and a row trigger that clears the embedding only when the title or abstract
    /// really changes.
    pub fn watch_triggers(&self) -> Vec<(String, String)> {
        let (wake, reset) = (self.trigger_name(WAKE_TRIGGER), self.trigger_name(RESET_TRIGGER));
        let columns = self.text_columns().join(", ");
        let changed = self
            .text_columns()
            .iter()
            .map(|c| format!("OLD.{c} IS DISTINCT FROM NEW.{c}"))
            .collect::<Vec<_>>()
            .join(" OR ");
        vec![
            (
                wake.clone(),
                format!(
                    "CREATE TRIGGER {} AFTER INSERT OR UPDATE OF {columns} ON {} \
                     FOR EACH STATEMENT EXECUTE FUNCTION doctrove_embed.wake_workers()",
                    quote_ident(&wake),
                    self.table
                ),
            ),
            (
                reset.clone(),
                format!(
                    "CREATE TRIGGER {} BEFORE UPDATE OF {columns} ON {} FOR EACH ROW WHEN ({changed}) \
                     EXECUTE FUNCTION doctrove_embed.reset_embedding({})",
                    quote_ident(&reset),
                    self.table,
                    quote_literal(&self.embedding)
                ),
            ),
        ]
    }

    /// A watch trigger's name: `base` for the settings' table, with the embedding column's name
    /// (cut to 40 bytes) for a job's, since a table may have one job per column.
    fn trigger_name(&self, base: &str) -> String {
        if !self.index_per_column {
            return base.to_string();
        }
        let mut column = self.embedding.as_str();
        while column.len() > 40 {
            column = &column[..column.char_indices().last().map_or(0, |(i, _)| i)];
        }
        format!("{base}_{column}")
    }

    /// The name `create_hnsw_index` gives its index (at most 63 bytes).
    pub fn hnsw_index_name(&self) -> String {
        self.column_index_name("_embedding_hnsw_idx", "_hnsw_idx")
    }

    /// An HNSW index for cosine distance, with pgvector's default graph parameters.
    pub fn create_hnsw_index(&self) -> String {
        format!(
            "CREATE INDEX IF NOT EXISTS {} ON {} USING hnsw ({} {}.vector_cosine_ops) WITH (m = 16, ef_construction = 64)",
            quote_ident(&self.hnsw_index_name()),
            self.table,
            quote_ident(&self.embedding),
            self.vector_schema
        )
    }

    /// The `$2` nearest papers to the paper whose id is `$1` (as text), by cosine distance,
    /// the paper itself left out: (id text, title text, distance).
    pub fn similar_papers(&self) -> String {
        let (id, emb, eq, ty) = (
            quote_ident(&self.id),
            quote_ident(&self.embedding),
            &self.id_eq,
            &self.id_type,
        );
        let distance = format!("OPERATOR({}.<=>)", self.vector_schema);
        let query = format!(
            "(SELECT q.{emb} FROM {table} q WHERE q.{id} {eq} $1::{ty})",
            table = self.table
        );
        format!(
            "SELECT t.{id}::pg_catalog.text, t.{}::pg_catalog.text, t.{emb} {distance} {query} \
             FROM {table} t WHERE t.{emb} IS NOT NULL AND NOT (t.{id} {eq} $1::{ty}) \
             ORDER BY t.{emb} {distance} {query} LIMIT $2",
            quote_ident(&self.title),
            table = self.table,
        )
    }

    /// Whether the paper whose id is `$1` (as text) has an embedding: one row, or none.
    pub fn has_embedding(&self) -> String {
        format!(
            "SELECT t.{} IS NOT NULL FROM {} t WHERE t.{} {} $1::{}",
            quote_ident(&self.embedding),
            self.table,
            quote_ident(&self.id),
            self.id_eq,
            self.id_type
        )
    }

    /// `DROP TRIGGER` of one of the watch triggers.
    pub fn drop_trigger(&self, name: &str) -> String {
        format!("DROP TRIGGER {} ON {}", quote_ident(name), self.table)
    }

    /// The name `create_pending_index` gives its index (at most 63 bytes): the table's name
    /// with `_pending_embedding_idx`, or with the embedding column's name for a job's.
    pub fn pending_index_name(&self) -> String {
        self.column_index_name("_pending_embedding_idx", "_pending_idx")
    }

    /// The table's name with `settings_suffix`, or for a job's column with the column's name
    /// (cut to 32 bytes) and `job_suffix`.
    fn column_index_name(&self, settings_suffix: &str, job_suffix: &str) -> String {
        if !self.index_per_column {
            return self.index_name(settings_suffix);
        }
        let mut column = self.embedding.as_str();
        while column.len() > 32 {
            column = &column[..column.char_indices().last().map_or(0, |(i, _)| i)];
        }
        self.index_name(&format!("_{column}{job_suffix}"))
    }

    /// The table's name with `suffix`, the name cut so the whole fits PostgreSQL's 63 bytes.
    pub(crate) fn index_name(&self, suffix: &str) -> String {
        let mut stem = self.relname.as_str();
        while stem.len() + suffix.len() > 63 {
            stem = &stem[..stem.char_indices().last().map_or(0, |(i, _)| i)];
        }
        format!("{stem}{suffix}")
    }

    /// The partial index that serves both the count and the batch fetch.
    pub fn create_pending_index(&self, concurrently: bool) -> String {
        format!(
            "CREATE INDEX {}IF NOT EXISTS {} ON {} ({}) WHERE {}",
            if concurrently { "CONCURRENTLY " } else { "" },
            quote_ident(&self.pending_index_name()),
            self.table,
            quote_ident(&self.id),
            self.pending_predicate()
        )
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The papers table most tests use (also `search_sql`'s).
    pub(crate) fn papers() -> PapersTable {
        PapersTable {
            table: "\"public\".\"doctrove_papers\"".into(),
            relname: "doctrove_papers".into(),
            id: "doctrove_paper_id".into(),
            id_type: "\"pg_catalog\".\"uuid\"".into(),
            id_eq: "OPERATOR(\"pg_catalog\".=)".into(),
            vector_schema: "\"public\"".into(),
            title: "doctrove_title".into(),
            abstract_text: Some("doctrove_abstract".into()),
            embedding: "doctrove_embedding".into(),
            model_version: None,
            updated_at: None,
            index_per_column: false,
            current_model: None,
        }
    }

    #[test]
    fn literals_double_their_quotes_and_escape_backslashes() {
        assert_eq!(quote_literal("it's"), "'it''s'");
        assert_eq!(quote_literal("a\\b"), "E'a\\\\b'");
    }

    #[test]
    fn a_job_s_watch_triggers_are_named_after_its_column() {
        let mut t = papers();
        t.index_per_column = true;
        t.embedding = "local_embedding".into();
        let names: Vec<String> = t.watch_triggers().into_iter().map(|(name, _)| name).collect();
        assert_eq!(
            names,
            ["doctrove_embed_wake_local_embedding", "doctrove_embed_reset_local_embedding"]
        );
        assert!(t.watch_triggers()[1]
            .1
            .ends_with("doctrove_embed.reset_embedding('local_embedding')"));
        t.embedding = "e".repeat(60);
        assert!(t.watch_triggers().iter().all(|(name, _)| name.len() <= 63));
    }

    #[test]
    fn watching_resets_the_embedding_only_when_title_or_abstract_change() {
        let triggers = papers().watch_triggers();
        assert_eq!(
            triggers[1].1,
            "CREATE TRIGGER \"doctrove_embed_reset\" BEFORE UPDATE OF \"doctrove_title\", \"doctrove_abstract\" \
             ON \"public\".\"doctrove_papers\" FOR EACH ROW WHEN (OLD.\"doctrove_title\" IS DISTINCT FROM NEW.\"doctrove_title\" \
             OR OLD.\"doctrove_abstract\" IS DISTINCT FROM NEW.\"doctrove_abstract\") \
             EXECUTE FUNCTION doctrove_embed.reset_embedding('doctrove_embedding')"
        );
        assert!(triggers[0]
            .1
            .starts_with("CREATE TRIGGER \"doctrove_embed_wake\" AFTER INSERT OR UPDATE OF"));
        assert!(triggers[0]
            .1
            .ends_with("FOR EACH STATEMENT EXECUTE FUNCTION doctrove_embed.wake_workers()"));
    }

    #[test]
    fn the_hnsw_index_uses_cosine_distance_of_the_vector_extension() {
        assert_eq!(
            papers().create_hnsw_index(),
            "CREATE INDEX IF NOT EXISTS \"doctrove_papers_embedding_hnsw_idx\" ON \"public\".\"doctrove_papers\" USING hnsw \
             (\"doctrove_embedding\" \"public\".vector_cosine_ops) WITH (m = 16, ef_construction = 64)"
        );
    }

    #[test]
    fn similarity_queries_order_by_the_vector_extension_s_cosine_distance() {
        assert!(papers()
            .similar_papers()
            .contains("ORDER BY t.\"doctrove_embedding\" OPERATOR(\"public\".<=>) (SELECT q.\"doctrove_embedding\""));
    }

    /// Every operator and function the statements on the user's table name is qualified: a
    /// bare `=`, `<>`, `<=>` or `name(` would resolve through the caller's search_path.
    #[test]
    fn statements_on_the_papers_table_name_no_unqualified_operator_or_function() {
        let mut t = papers();
        t.model_version = Some("m".into());
        t.updated_at = Some("u".into());
        let search = crate::search_sql::SearchShape {
            conditions: crate::search_filter::parse(
                &serde_json::json!({"a": 1, "b": {"in": [1]}, "c": {"@>": ["x"]}, "d": null}),
            )
            .unwrap(),
            threshold: true,
            columns: vec!["a".into()],
        };
        for sql in [
            t.select_pending(false),
            t.select_pending(true),
            t.select_claimed(),
            t.count_pending(),
            t.any_pending(),
            t.update_embeddings(),
            t.similar_papers(),
            search.search_sql(&t),
            search.estimate_sql(&t),
            t.hybrid_search(&search.conditions),
            t.create_text_index(false),
            t.has_embedding(),
        ] {
            // An UPDATE's `SET column = value` list assigns; it names no operator.
            let checked = match (sql.find(" SET "), sql.find(" FROM ")) {
                (Some(set), Some(from)) if sql.starts_with("UPDATE") => format!("{}{}", &sql[..set], &sql[from..]),
                _ => sql.clone(),
            };
            let unquoted: String = checked.split('"').step_by(2).collect::<Vec<_>>().join("");
            for bare in [" = ", " <> ", " <=> ", " < ", " > ", "now(", "count(", "unnest(", "substr("] {
                let at = unquoted.find(bare);
                let qualified = at.is_some_and(|i| unquoted[..i].ends_with("pg_catalog."));
                assert!(at.is_none() || qualified, "{bare:?} unqualified in {sql}");
            }
            assert!(
                !unquoted.contains("::text") && !unquoted.contains("::oid"),
                "unqualified type in {sql}"
            );
        }
    }

    #[test]
    fn identifiers_with_quotes_are_escaped() {
        assert_eq!(quote_ident("a\"b c"), "\"a\"\"b c\"");
    }

    #[test]
    fn the_pending_selection_reads_bounded_text_and_locks_without_blocking_references() {
        let sql = papers().select_pending(false);
        assert!(sql.starts_with(&format!(
            "SELECT t.\"doctrove_paper_id\"::pg_catalog.text, pg_catalog.substr(t.\"doctrove_title\"::pg_catalog.text, 1, {MAX_TEXT_CHARS}), \
             pg_catalog.substr(t.\"doctrove_abstract\"::pg_catalog.text, 1, {MAX_TEXT_CHARS}) \
             FROM \"public\".\"doctrove_papers\" AS t WHERE \"doctrove_embedding\" IS NULL AND \"doctrove_title\" IS NOT NULL \
             AND \"doctrove_title\" OPERATOR(pg_catalog.<>) '' AND NOT"
        )), "{sql}");
        assert!(sql.ends_with("LIMIT $1 FOR NO KEY UPDATE OF t SKIP LOCKED"));
    }

    #[test]
    fn held_back_failures_are_not_pending() {
        assert_eq!(
            papers().pending_condition(2).split(" AND NOT ").nth(1).unwrap(),
            "(t.\"doctrove_paper_id\"::pg_catalog.text OPERATOR(pg_catalog.=) ANY ($2::pg_catalog.text[]))"
        );
    }

    #[test]
    fn a_table_without_abstracts_selects_null() {
        let mut t = papers();
        t.abstract_text = None;
        assert!(t.select_pending(false).contains(", NULL::pg_catalog.text FROM"));
        assert!(t
            .count_pending()
            .starts_with("SELECT pg_catalog.count(*) FROM \"public\".\"doctrove_papers\" AS t WHERE"));
    }

    #[test]
    fn the_update_is_one_statement_over_unnest_with_the_id_cast_back() {
        assert_eq!(
            papers().update_embeddings(),
            "UPDATE \"public\".\"doctrove_papers\" AS t SET \"doctrove_embedding\" = v.embedding \
             FROM ROWS FROM (pg_catalog.unnest($1::pg_catalog.text[]), pg_catalog.unnest($2)) AS v(id, embedding) \
             WHERE t.\"doctrove_paper_id\" OPERATOR(\"pg_catalog\".=) v.id::\"pg_catalog\".\"uuid\""
        );
    }

    #[test]
    fn the_update_sets_model_version_and_updated_at_when_present() {
        let mut t = papers();
        t.model_version = Some("embedding_model_version".into());
        t.updated_at = Some("updated_at".into());
        assert!(t.update_embeddings().contains(
            "SET \"doctrove_embedding\" = v.embedding, \"embedding_model_version\" = $3, \"updated_at\" = pg_catalog.now() FROM"
        ));
    }

    #[test]
    fn the_index_command_covers_the_pending_predicate() {
        assert_eq!(
            papers().create_pending_index(true),
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS \"doctrove_papers_pending_embedding_idx\" ON \"public\".\"doctrove_papers\" \
             (\"doctrove_paper_id\") WHERE \"doctrove_embedding\" IS NULL AND \"doctrove_title\" IS NOT NULL \
             AND \"doctrove_title\" OPERATOR(pg_catalog.<>) ''"
        );
    }

    #[test]
    fn a_long_table_name_gives_an_index_name_within_63_bytes() {
        let mut t = papers();
        t.relname = "p".repeat(60);
        let name = t.pending_index_name();
        assert!(name.len() <= 63, "{name}");
        assert!(name.ends_with("_pending_embedding_idx"));
    }

    #[test]
    fn a_job_with_a_model_column_counts_another_model_s_vectors_as_pending() {
        let mut t = papers();
        t.current_model = Some("it's-v2".into());
        assert_eq!(
            t.pending_predicate(),
            papers().pending_predicate(),
            "no model column: no change"
        );
        t.model_version = Some("made by".into());
        assert_eq!(
            t.pending_predicate(),
            "(\"doctrove_embedding\" IS NULL OR \"made by\" IS DISTINCT FROM 'it''s-v2'::pg_catalog.text) \
             AND \"doctrove_title\" IS NOT NULL AND \"doctrove_title\" OPERATOR(pg_catalog.<>) ''"
        );
    }

    #[test]
    fn each_embedding_column_gets_its_own_index_name() {
        let mut t = papers();
        t.index_per_column = true;
        t.embedding = "local_embedding".to_string();
        assert_eq!(t.pending_index_name(), "doctrove_papers_local_embedding_pending_idx");
        assert_eq!(t.hnsw_index_name(), "doctrove_papers_local_embedding_hnsw_idx");
        t.embedding = "é".repeat(40);
        t.relname = "p".repeat(60);
        let name = t.pending_index_name();
        assert!(name.len() <= 63 && name.ends_with("_pending_idx"), "{name}");
        assert!(name.contains(&"é".repeat(16)), "{name}");
    }
}
