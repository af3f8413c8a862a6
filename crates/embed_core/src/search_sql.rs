//! The SQL of a search: the papers nearest to a query vector, at or above a similarity, passing
//! a filter, with the columns asked for. Parameters: `$1` the vector, `$2` k, then the largest
//! cosine distance when a similarity threshold is given, then one per filter condition that
//! binds a value.

use crate::search_filter::Condition;
use crate::sql_text::{quote_ident, quote_literal, PapersTable};

/// Most columns a search returns besides the id, title and similarity.
pub const MAX_COLUMNS: usize = 32;

/// What a search asks for.
#[derive(Debug, Clone, Default)]
pub struct SearchShape {
    pub conditions: Vec<Condition>,
    /// Whether a similarity threshold is given (bound as the largest distance).
    pub threshold: bool,
    /// Columns returned in a JSON object.
    pub columns: Vec<String>,
}

impl SearchShape {
    /// The number of the first filter parameter.
    fn first_filter_param(&self) -> usize {
        if self.threshold {
            4
        } else {
            3
        }
    }

    /// The filter conditions with the parameter number of each that binds a value.
    pub fn numbered_conditions(&self) -> Vec<(&Condition, usize)> {
        crate::search_filter::numbered(&self.conditions, self.first_filter_param())
    }

    /// `WHERE` of the papers a search considers (shared by the search and its row estimate).
    pub fn condition_sql(&self, table: &PapersTable) -> String {
        let emb = quote_ident(&table.embedding);
        let mut sql = format!("t.{emb} IS NOT NULL");
        if self.threshold {
            sql.push_str(&format!(
                " AND t.{emb} OPERATOR({}.<=>) $1 OPERATOR(pg_catalog.<=) $3::pg_catalog.float8",
                table.vector_schema
            ));
        }
        for (condition, param) in self.numbered_conditions() {
            sql.push_str(" AND ");
            sql.push_str(&condition.sql(&table.table, param));
        }
        sql
    }

    /// The search: (id text, title text, distance float8, columns jsonb), nearest first. The
    /// nearest ids are found first, with their distances alone (a sort of k narrow rows, or
    /// the index's order), then each paper's title and columns are read by its id: a large k
    /// never holds k titles in a sort.
    pub fn search_sql(&self, table: &PapersTable) -> String {
        let emb = quote_ident(&table.embedding);
        let id = quote_ident(&table.id);
        let distance = format!("t.{emb} OPERATOR({}.<=>) $1", table.vector_schema);
        let columns = if self.columns.is_empty() {
            "NULL::pg_catalog.jsonb".to_string()
        } else {
            let pairs: Vec<String> = self
                .columns
                .iter()
                .map(|c| format!("{}, p.{}", quote_literal(c), quote_ident(c)))
                .collect();
            format!("pg_catalog.jsonb_build_object({})", pairs.join(", "))
        };
        format!(
            "SELECT p.{id}::pg_catalog.text AS paper_id, p.{}::pg_catalog.text AS title, s.distance, {columns} AS columns \
             FROM (SELECT t.{id} AS id, {distance} AS distance FROM {table} t WHERE {} ORDER BY {distance} LIMIT $2) s \
             JOIN {table} p ON p.{id} {} s.id ORDER BY s.distance",
            quote_ident(&table.title),
            self.condition_sql(table),
            table.id_eq,
            table = table.table,
        )
    }

    /// The planner's estimate of the papers the search considers: `EXPLAIN` of a count.
    pub fn estimate_sql(&self, table: &PapersTable) -> String {
        format!(
            "EXPLAIN (FORMAT JSON) SELECT 1 FROM {} t WHERE {}",
            table.table,
            self.condition_sql(table)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search_filter::parse;
    use crate::sql_text::tests::papers;
    use serde_json::json;

    #[test]
    fn a_plain_search_finds_the_nearest_ids_then_reads_their_papers() {
        let sql = SearchShape::default().search_sql(&papers());
        assert_eq!(
            sql,
            "SELECT p.\"doctrove_paper_id\"::pg_catalog.text AS paper_id, p.\"doctrove_title\"::pg_catalog.text AS title, \
             s.distance, NULL::pg_catalog.jsonb AS columns \
             FROM (SELECT t.\"doctrove_paper_id\" AS id, t.\"doctrove_embedding\" OPERATOR(\"public\".<=>) $1 AS distance \
             FROM \"public\".\"doctrove_papers\" t WHERE t.\"doctrove_embedding\" IS NOT NULL \
             ORDER BY t.\"doctrove_embedding\" OPERATOR(\"public\".<=>) $1 LIMIT $2) s \
             JOIN \"public\".\"doctrove_papers\" p ON p.\"doctrove_paper_id\" OPERATOR(\"pg_catalog\".=) s.id ORDER BY s.distance"
        );
    }

    #[test]
    fn threshold_filters_and_columns_take_their_parameters_in_order() {
        let shape = SearchShape {
            conditions: parse(&json!({"a": 1, "b": null, "c": {"in": [1, 2]}})).unwrap(),
            threshold: true,
            columns: vec!["a".into(), "x'y".into()],
        };
        let numbers: Vec<usize> = shape.numbered_conditions().iter().map(|(_, n)| *n).collect();
        assert_eq!(numbers, vec![4, 5, 5]);
        let sql = shape.search_sql(&papers());
        assert!(sql.contains("OPERATOR(pg_catalog.<=) $3::pg_catalog.float8"), "{sql}");
        assert!(sql.contains("$4::pg_catalog.jsonb"), "{sql}");
        assert!(sql.contains("t.\"b\" IS NULL"), "{sql}");
        assert!(sql.contains("jsonb_array_elements($5::pg_catalog.jsonb)"), "{sql}");
        assert!(
            sql.contains("pg_catalog.jsonb_build_object('a', p.\"a\", 'x''y', p.\"x'y\")"),
            "{sql}"
        );
        assert!(sql.starts_with("SELECT p.") && sql.ends_with("ORDER BY s.distance"), "{sql}");
    }
}
