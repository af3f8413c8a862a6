//! The SQL the extension runs against the papers table, built from its (already resolved)
//! names. Column names are always quoted here; the table name arrives quoted and qualified
//! from `regclass` output. Values are never put into this text: they are bound as parameters.

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

/// The names of the papers table and its columns, as found in the catalog.
#[derive(Debug, Clone, PartialEq)]
pub struct PapersTable {
    /// Qualified and quoted as needed (a `regclass` rendered as text).
    pub table: String,
    /// The bare relation name, for naming the index.
    pub relname: String,
    pub id: String,
    /// `format_type` of the id column, used to cast ids back from text.
    pub id_type: String,
    pub title: String,
    pub abstract_text: Option<String>,
    pub embedding: String,
    pub model_version: Option<String>,
    pub updated_at: Option<String>,
}

impl PapersTable {
    /// The condition that makes a paper pending: no embedding yet and a non-empty title. The
    /// partial index on pending papers has exactly this predicate.
    pub fn pending_predicate(&self) -> String {
        let (e, t) = (quote_ident(&self.embedding), quote_ident(&self.title));
        format!("{e} IS NULL AND {t} IS NOT NULL AND {t} <> ''")
    }

    /// The pending predicate, less papers the API rejected that are held back: after
    /// `max_attempts` attempts, or for a while after each. Parameters from `$first`: the
    /// table's oid, the most attempts, the wait after a rejection in milliseconds.
    pub fn pending_condition(&self, first: usize) -> String {
        format!(
            "{} AND NOT EXISTS (SELECT 1 FROM doctrove_embed.failures f WHERE f.relid = ${}::oid::regclass \
             AND f.paper_id = t.{}::text AND (f.attempts >= ${} OR f.last_attempt_at > now() - ${} * interval '1 millisecond'))",
            self.pending_predicate(),
            first,
            quote_ident(&self.id),
            first + 1,
            first + 2
        )
    }

    /// `SELECT count(*)` of pending papers (`$1`..`$3` as in [`Self::pending_condition`]).
    pub fn count_pending(&self) -> String {
        format!("SELECT count(*) FROM {} AS t WHERE {}", self.table, self.pending_condition(1))
    }

    /// Up to `$1` pending papers as (id text, title text, abstract text), locked for this
    /// transaction; papers locked by another transaction are skipped, not waited for.
    /// (`$2`..`$4` as in [`Self::pending_condition`].)
    pub fn select_pending(&self) -> String {
        let abstract_expr = match &self.abstract_text {
            Some(a) => format!("t.{}::text", quote_ident(a)),
            None => "NULL::text".into(),
        };
        format!(
            "SELECT t.{}::text, t.{}::text, {} FROM {} AS t WHERE {} LIMIT $1 FOR UPDATE OF t SKIP LOCKED",
            quote_ident(&self.id),
            quote_ident(&self.title),
            abstract_expr,
            self.table,
            self.pending_condition(2)
        )
    }

    /// One UPDATE for a whole batch: `$1` ids as `text[]`, `$2` the vectors as `vector[]`,
    /// `$3` the model name (used only when the table has a model-version column).
    pub fn update_embeddings(&self) -> String {
        let mut sets = vec![format!("{} = v.embedding", quote_ident(&self.embedding))];
        if let Some(column) = &self.model_version {
            sets.push(format!("{} = $3", quote_ident(column)));
        }
        if let Some(column) = &self.updated_at {
            sets.push(format!("{} = now()", quote_ident(column)));
        }
        format!(
            "UPDATE {} AS t SET {} FROM unnest($1::text[], $2) AS v(id, embedding) WHERE t.{} = v.id::{}",
            self.table,
            sets.join(", "),
            quote_ident(&self.id),
            self.id_type
        )
    }

    /// The text columns whose change makes a paper pending again, quoted and comma-separated.
    fn text_columns(&self) -> Vec<String> {
        std::iter::once(&self.title).chain(self.abstract_text.as_ref()).map(|c| quote_ident(c)).collect()
    }

    /// The triggers `doctrove_embed.watch()` installs, as (name, CREATE statement): a statement
    /// trigger waking the workers after papers are inserted or their text edited (it acts at
    /// commit), and a row trigger that clears the embedding only when the title or abstract
    /// really changes.
    pub fn watch_triggers(&self) -> Vec<(&'static str, String)> {
        let columns = self.text_columns().join(", ");
        let changed = self
            .text_columns()
            .iter()
            .map(|c| format!("OLD.{c} IS DISTINCT FROM NEW.{c}"))
            .collect::<Vec<_>>()
            .join(" OR ");
        vec![
            (
                WAKE_TRIGGER,
                format!(
                    "CREATE TRIGGER {WAKE_TRIGGER} AFTER INSERT OR UPDATE OF {columns} ON {} \
                     FOR EACH STATEMENT EXECUTE FUNCTION doctrove_embed.wake_workers()",
                    self.table
                ),
            ),
            (
                RESET_TRIGGER,
                format!(
                    "CREATE TRIGGER {RESET_TRIGGER} BEFORE UPDATE OF {columns} ON {} FOR EACH ROW WHEN ({changed}) \
                     EXECUTE FUNCTION doctrove_embed.reset_embedding({})",
                    self.table,
                    quote_literal(&self.embedding)
                ),
            ),
        ]
    }

    /// The name `create_hnsw_index` gives its index (at most 63 bytes).
    pub fn hnsw_index_name(&self) -> String {
        self.index_name("_embedding_hnsw_idx")
    }

    /// An HNSW index for cosine distance, with pgvector's default graph parameters.
    pub fn create_hnsw_index(&self) -> String {
        format!(
            "CREATE INDEX IF NOT EXISTS {} ON {} USING hnsw ({} vector_cosine_ops) WITH (m = 16, ef_construction = 64)",
            quote_ident(&self.hnsw_index_name()),
            self.table,
            quote_ident(&self.embedding)
        )
    }

    /// The `$2` nearest papers to the paper whose id is `$1` (as text), by cosine distance,
    /// the paper itself left out: (id text, title text, distance).
    pub fn similar_papers(&self) -> String {
        let (id, emb) = (quote_ident(&self.id), quote_ident(&self.embedding));
        format!(
            "SELECT t.{id}::text, t.{}::text, t.{emb} <=> (SELECT q.{emb} FROM {table} q WHERE q.{id} = $1::{ty}) \
             FROM {table} t WHERE t.{emb} IS NOT NULL AND t.{id} <> $1::{ty} \
             ORDER BY t.{emb} <=> (SELECT q.{emb} FROM {table} q WHERE q.{id} = $1::{ty}) LIMIT $2",
            quote_ident(&self.title),
            table = self.table,
            ty = self.id_type
        )
    }

    /// The `$2` nearest papers to the vector `$1`: (id text, title text, distance).
    pub fn nearest_papers(&self) -> String {
        let emb = quote_ident(&self.embedding);
        format!(
            "SELECT t.{}::text, t.{}::text, t.{emb} <=> $1 FROM {} t WHERE t.{emb} IS NOT NULL ORDER BY t.{emb} <=> $1 LIMIT $2",
            quote_ident(&self.id),
            quote_ident(&self.title),
            self.table
        )
    }

    /// `DROP TRIGGER` of one of the watch triggers.
    pub fn drop_trigger(&self, name: &str) -> String {
        format!("DROP TRIGGER {} ON {}", quote_ident(name), self.table)
    }

    /// The name `create_pending_index` gives its index (at most 63 bytes).
    pub fn pending_index_name(&self) -> String {
        self.index_name("_pending_embedding_idx")
    }

    /// The table's name with `suffix`, the name cut so the whole fits PostgreSQL's 63 bytes.
    fn index_name(&self, suffix: &str) -> String {
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
mod tests {
    use super::*;

    fn papers() -> PapersTable {
        PapersTable {
            table: "doctrove_papers".into(),
            relname: "doctrove_papers".into(),
            id: "doctrove_paper_id".into(),
            id_type: "uuid".into(),
            title: "doctrove_title".into(),
            abstract_text: Some("doctrove_abstract".into()),
            embedding: "doctrove_embedding".into(),
            model_version: None,
            updated_at: None,
        }
    }

    #[test]
    fn literals_double_their_quotes_and_escape_backslashes() {
        assert_eq!(quote_literal("it's"), "'it''s'");
        assert_eq!(quote_literal("a\\b"), "E'a\\\\b'");
    }

    #[test]
    fn watching_resets_the_embedding_only_when_title_or_abstract_change() {
        let triggers = papers().watch_triggers();
        assert_eq!(
            triggers[1].1,
            "CREATE TRIGGER doctrove_embed_reset BEFORE UPDATE OF \"doctrove_title\", \"doctrove_abstract\" \
             ON doctrove_papers FOR EACH ROW WHEN (OLD.\"doctrove_title\" IS DISTINCT FROM NEW.\"doctrove_title\" \
             OR OLD.\"doctrove_abstract\" IS DISTINCT FROM NEW.\"doctrove_abstract\") \
             EXECUTE FUNCTION doctrove_embed.reset_embedding('doctrove_embedding')"
        );
        assert!(triggers[0].1.starts_with("CREATE TRIGGER doctrove_embed_wake AFTER INSERT OR UPDATE OF"));
        assert!(triggers[0].1.ends_with("FOR EACH STATEMENT EXECUTE FUNCTION doctrove_embed.wake_workers()"));
    }

    #[test]
    fn the_hnsw_index_uses_cosine_distance() {
        assert_eq!(
            papers().create_hnsw_index(),
            "CREATE INDEX IF NOT EXISTS \"doctrove_papers_embedding_hnsw_idx\" ON doctrove_papers USING hnsw \
             (\"doctrove_embedding\" vector_cosine_ops) WITH (m = 16, ef_construction = 64)"
        );
    }

    #[test]
    fn similarity_queries_order_by_cosine_distance() {
        assert!(papers().similar_papers().contains("ORDER BY t.\"doctrove_embedding\" <=> (SELECT q.\"doctrove_embedding\""));
        assert!(papers().nearest_papers().ends_with("ORDER BY t.\"doctrove_embedding\" <=> $1 LIMIT $2"));
    }

    #[test]
    fn identifiers_with_quotes_are_escaped() {
        assert_eq!(quote_ident("a\"b c"), "\"a\"\"b c\"");
    }

    #[test]
    fn the_pending_selection_locks_and_skips_locked_rows() {
        let sql = papers().select_pending();
        assert!(sql.starts_with(
            "SELECT t.\"doctrove_paper_id\"::text, t.\"doctrove_title\"::text, t.\"doctrove_abstract\"::text \
             FROM doctrove_papers AS t WHERE \"doctrove_embedding\" IS NULL AND \"doctrove_title\" IS NOT NULL \
             AND \"doctrove_title\" <> '' AND NOT EXISTS"
        ));
        assert!(sql.ends_with("LIMIT $1 FOR UPDATE OF t SKIP LOCKED"));
    }

    #[test]
    fn held_back_failures_are_not_pending() {
        assert_eq!(
            papers().pending_condition(2).split(" AND NOT EXISTS ").nth(1).unwrap(),
            "(SELECT 1 FROM doctrove_embed.failures f WHERE f.relid = $2::oid::regclass \
             AND f.paper_id = t.\"doctrove_paper_id\"::text AND (f.attempts >= $3 OR f.last_attempt_at > now() - $4 * interval '1 millisecond'))"
        );
    }

    #[test]
    fn a_table_without_abstracts_selects_null() {
        let mut t = papers();
        t.abstract_text = None;
        assert!(t.select_pending().contains(", NULL::text FROM"));
        assert!(t.count_pending().starts_with("SELECT count(*) FROM doctrove_papers AS t WHERE"));
    }

    #[test]
    fn the_update_is_one_statement_over_unnest_with_the_id_cast_back() {
        assert_eq!(
            papers().update_embeddings(),
            "UPDATE doctrove_papers AS t SET \"doctrove_embedding\" = v.embedding \
             FROM unnest($1::text[], $2) AS v(id, embedding) WHERE t.\"doctrove_paper_id\" = v.id::uuid"
        );
    }

    #[test]
    fn the_update_sets_model_version_and_updated_at_when_present() {
        let mut t = papers();
        t.model_version = Some("embedding_model_version".into());
        t.updated_at = Some("updated_at".into());
        assert!(t
            .update_embeddings()
            .contains("SET \"doctrove_embedding\" = v.embedding, \"embedding_model_version\" = $3, \"updated_at\" = now() FROM"));
    }

    #[test]
    fn the_index_command_covers_the_pending_predicate() {
        assert_eq!(
            papers().create_pending_index(true),
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS \"doctrove_papers_pending_embedding_idx\" ON doctrove_papers \
             (\"doctrove_paper_id\") WHERE \"doctrove_embedding\" IS NULL AND \"doctrove_title\" IS NOT NULL \
             AND \"doctrove_title\" <> ''"
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
}
