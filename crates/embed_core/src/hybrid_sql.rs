//! The SQL of a hybrid search: the papers nearest to the query vector and the papers whose
//! title and abstract best match the query's words (PostgreSQL's full text search,
//! `ts_rank_cd` over `websearch_to_tsquery`), each list cut to a number of candidates, fused by
//! reciprocal rank: a paper's score is `vector_weight / (rrf_k + its vector rank) +
//! text_weight / (rrf_k + its text rank)`, a list it is missing from adding nothing.
//!
//! Parameters: `$1` the vector, `$2` k, `$3` the query text, `$4` the candidates of each list,
//! `$5` the vector weight, `$6` the text weight, `$7` the RRF constant, then one per filter
//! condition that binds a value (both lists are filtered alike).

use crate::search_filter::{numbered, Condition};
use crate::sql_text::{quote_ident, PapersTable};

/// The text search configuration of the document and the query.
pub const TEXT_SEARCH_CONFIG: &str = "english";

impl PapersTable {
    /// The document full text search reads for a paper of table alias `alias`: its title and
    /// abstract. The GIN index [`Self::create_text_index`] makes is on the same expression.
    pub fn text_document(&self, alias: &str) -> String {
        let column = |c: &str| format!("COALESCE({alias}{}::pg_catalog.text, '')", quote_ident(c));
        let text = match &self.abstract_text {
            Some(a) => format!(
                "{} OPERATOR(pg_catalog.||) ' ' OPERATOR(pg_catalog.||) {}",
                column(&self.title),
                column(a)
            ),
            None => column(&self.title),
        };
        format!("pg_catalog.to_tsvector('{TEXT_SEARCH_CONFIG}'::pg_catalog.regconfig, {text})")
    }

    /// The name of the GIN index on the document.
    pub fn text_index_name(&self) -> String {
        self.index_name("_text_idx")
    }

    /// The GIN index hybrid search reads the text ranking through.
    pub fn create_text_index(&self, concurrently: bool) -> String {
        format!(
            "CREATE INDEX {}IF NOT EXISTS {} ON {} USING gin (({}))",
            if concurrently { "CONCURRENTLY " } else { "" },
            quote_ident(&self.text_index_name()),
            self.table,
            self.text_document("")
        )
    }

    /// The hybrid search: (id text, title text, score float8, vector rank bigint, text rank
    /// bigint, similarity float8), best first.
    pub fn hybrid_search(&self, conditions: &[Condition]) -> String {
        let (id, emb, eq) = (quote_ident(&self.id), quote_ident(&self.embedding), &self.id_eq);
        let filters: String = numbered(conditions, 8)
            .iter()
            .map(|(c, n)| format!(" AND {}", c.sql(&self.table, *n)))
            .collect();
        let distance = format!("t.{emb} OPERATOR({}.<=>) $1", self.vector_schema);
        let document = self.text_document("t.");
        let float = |x: &str| format!("{x}::pg_catalog.float8");
        let share = |weight: &str, rank: &str| {
            format!(
                "COALESCE({} OPERATOR(pg_catalog./) ({} OPERATOR(pg_catalog.+) {}), 0)",
                float(weight),
                float("$7"),
                float(rank)
            )
        };
        format!(
            "WITH v AS (SELECT s.id, s.distance, pg_catalog.row_number() OVER (ORDER BY s.distance) AS rank \
             FROM (SELECT t.{id} AS id, {distance} AS distance FROM {table} t WHERE t.{emb} IS NOT NULL{filters} \
             ORDER BY {distance} LIMIT $4) s), \
             x AS (SELECT s.id, pg_catalog.row_number() OVER (ORDER BY s.score DESC) AS rank \
             FROM (SELECT t.{id} AS id, pg_catalog.ts_rank_cd({document}, q) AS score \
             FROM {table} t, pg_catalog.websearch_to_tsquery('{TEXT_SEARCH_CONFIG}'::pg_catalog.regconfig, $3) AS q \
             WHERE {document} OPERATOR(pg_catalog.@@) q{filters} ORDER BY 2 DESC LIMIT $4) s) \
             SELECT p.{id}::pg_catalog.text, p.{title}::pg_catalog.text, \
             {} OPERATOR(pg_catalog.+) {} AS score, v.rank, x.rank, \
             1::pg_catalog.float8 OPERATOR(pg_catalog.-) v.distance \
             FROM v FULL JOIN x ON v.id {eq} x.id JOIN {table} p ON p.{id} {eq} COALESCE(v.id, x.id) \
             ORDER BY 3 DESC, COALESCE(v.rank, x.rank) LIMIT $2",
            share("$5", "v.rank"),
            share("$6", "x.rank"),
            title = quote_ident(&self.title),
            table = self.table,
        )
    }
}

#[cfg(test)]
mod tests {
    use crate::search_filter::parse;
    use crate::sql_text::tests::papers;
    use serde_json::json;

    #[test]
    fn the_index_and_the_search_read_the_same_document() {
        let t = papers();
        let index = t.create_text_index(true);
        assert_eq!(
            index,
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS \"doctrove_papers_text_idx\" ON \"public\".\"doctrove_papers\" USING gin \
             ((pg_catalog.to_tsvector('english'::pg_catalog.regconfig, COALESCE(\"doctrove_title\"::pg_catalog.text, '') \
             OPERATOR(pg_catalog.||) ' ' OPERATOR(pg_catalog.||) COALESCE(\"doctrove_abstract\"::pg_catalog.text, ''))))"
        );
        let search = t.hybrid_search(&[]);
        assert!(search.contains(&t.text_document("t.")), "{search}");
    }

    #[test]
    fn filters_apply_to_both_lists_with_their_parameters_after_the_seven() {
        let conditions = parse(&json!({"a": 1, "b": {">": 2}})).unwrap();
        let sql = papers().hybrid_search(&conditions);
        assert_eq!(sql.matches("$8::pg_catalog.jsonb").count(), 2, "{sql}");
        assert_eq!(sql.matches("$9::pg_catalog.jsonb").count(), 2, "{sql}");
        assert!(!sql.contains("$10"));
    }
}
