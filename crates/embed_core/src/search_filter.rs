//! The `filter` of a search: a JSON object naming columns of the table, each with a value (equal
//! to) or an object of operators, such as
//! `{"doctrove_source": "arxiv", "doctrove_primary_date": {">=": "2024-01-01"}, "doctrove_authors": {"@>": ["..."]}}`.
//!
//! It becomes SQL without any of the caller's text in it: column names are checked against the
//! table by the caller and quoted, operators come from a fixed list, and each value is bound as
//! a parameter (a one-key JSON object, turned into the column's own type by
//! `jsonb_populate_record`, so `"2024-01-01"` is a date for a date column and a JSON array a
//! PostgreSQL array).

use serde_json::{Map, Value};

use crate::sql_text::quote_ident;

/// The comparisons a filter may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    /// Array or JSON containment (`@>`), contained by (`<@`), overlap (`&&`).
    Contains,
    ContainedBy,
    Overlaps,
    /// Equal to one of a JSON array of values.
    In,
}

impl Operator {
    fn parse(name: &str) -> Option<Operator> {
        Some(match name {
            "=" => Operator::Eq,
            "<>" | "!=" => Operator::Ne,
            "<" => Operator::Lt,
            "<=" => Operator::Le,
            ">" => Operator::Gt,
            ">=" => Operator::Ge,
            "@>" => Operator::Contains,
            "<@" => Operator::ContainedBy,
            "&&" => Operator::Overlaps,
            "in" => Operator::In,
            _ => return None,
        })
    }

    fn sql(self) -> &'static str {
        match self {
            Operator::Eq | Operator::In => "=",
            Operator::Ne => "<>",
            Operator::Lt => "<",
            Operator::Le => "<=",
            Operator::Gt => ">",
            Operator::Ge => ">=",
            Operator::Contains => "@>",
            Operator::ContainedBy => "<@",
            Operator::Overlaps => "&&",
        }
    }
}

/// The operators a filter accepts, for messages.
pub const OPERATORS: &str = "=, <>, <, <=, >, >=, @>, <@, &&, in";

/// One condition of a filter.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub column: String,
    pub operator: Operator,
    /// The value; JSON null with `=` means IS NULL, with `<>` IS NOT NULL.
    pub value: Value,
}

/// Why a filter was refused; `column` is set when the column itself is the problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterError(pub String);

/// Most conditions in one filter.
pub const MAX_CONDITIONS: usize = 32;

/// The conditions of `filter` (a JSON object; `null` is no filter).
pub fn parse(filter: &Value) -> Result<Vec<Condition>, FilterError> {
    let object = match filter {
        Value::Null => return Ok(Vec::new()),
        Value::Object(object) => object,
        other => {
            return Err(FilterError(format!(
                "a filter is a JSON object of columns, not {}",
                kind(other)
            )))
        }
    };
    let mut conditions = Vec::new();
    for (column, wanted) in object {
        match wanted {
            Value::Object(operators) => conditions.extend(of_operators(column, operators)?),
            value => conditions.push(Condition {
                column: column.clone(),
                operator: Operator::Eq,
                value: value.clone(),
            }),
        }
    }
    if conditions.len() > MAX_CONDITIONS {
        return Err(FilterError(format!("a filter has at most {MAX_CONDITIONS} conditions")));
    }
    Ok(conditions)
}

fn of_operators(column: &str, operators: &Map<String, Value>) -> Result<Vec<Condition>, FilterError> {
    if operators.is_empty() {
        return Err(FilterError(format!("the filter on \"{column}\" names no operator")));
    }
    operators
        .iter()
        .map(|(name, value)| {
            let operator = Operator::parse(name).ok_or_else(|| {
                FilterError(format!(
                    "unknown operator \"{name}\" in the filter on \"{column}\" (known: {OPERATORS})"
                ))
            })?;
            if operator == Operator::In && !value.is_array() {
                return Err(FilterError(format!(
                    "\"in\" takes a JSON array of values (the filter on \"{column}\")"
                )));
            }
            if value.is_null() && !matches!(operator, Operator::Eq | Operator::Ne) {
                return Err(FilterError(format!(
                    "null compares with \"=\" (IS NULL) or \"<>\" (IS NOT NULL) only (the filter on \"{column}\")"
                )));
            }
            Ok(Condition {
                column: column.to_string(),
                operator,
                value: value.clone(),
            })
        })
        .collect()
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Each condition with the number of its parameter, counting from `first` (a condition that
/// binds no value takes none).
pub fn numbered(conditions: &[Condition], first: usize) -> Vec<(&Condition, usize)> {
    let mut next = first;
    conditions
        .iter()
        .map(|condition| {
            let number = next;
            if condition.parameter().is_some() {
                next += 1;
            }
            (condition, number)
        })
        .collect()
}

impl Condition {
    /// The JSON value bound for this condition: `{"column": value}` (for `in`, the array).
    pub fn parameter(&self) -> Option<Value> {
        match (&self.operator, &self.value) {
            (_, Value::Null) => None,
            (Operator::In, array) => Some(array.clone()),
            (_, value) => Some(Value::Object(Map::from_iter([(self.column.clone(), value.clone())]))),
        }
    }

    /// The SQL of this condition on `t.column` of `table` (the quoted `"schema"."table"`, whose
    /// row type turns the bound value into the column's type); `param` is its parameter's
    /// number, used when [`Self::parameter`] gives one.
    pub fn sql(&self, table: &str, param: usize) -> String {
        let column = quote_ident(&self.column);
        let typed = |json: &str| format!("(pg_catalog.jsonb_populate_record(NULL::{table}, {json})).{column}");
        match (&self.operator, &self.value) {
            (Operator::Ne, Value::Null) => format!("t.{column} IS NOT NULL"),
            (_, Value::Null) => format!("t.{column} IS NULL"),
            (Operator::In, _) => format!(
                "t.{column} OPERATOR(pg_catalog.=) ANY (ARRAY(SELECT {} FROM pg_catalog.jsonb_array_elements(${param}::pg_catalog.jsonb) AS e))",
                typed(&format!(
                    "pg_catalog.jsonb_build_object({}, e.value)",
                    crate::sql_text::quote_literal(&self.column)
                ))
            ),
            (operator, _) => format!(
                "t.{column} OPERATOR(pg_catalog.{}) {}",
                operator.sql(),
                typed(&format!("${param}::pg_catalog.jsonb"))
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_and_operators_become_conditions() {
        let c = parse(&json!({"source": "arxiv", "date": {">=": "2024-01-01", "<": "2025-01-01"}, "gone": null})).unwrap();
        let ops: Vec<(&str, Operator)> = c.iter().map(|c| (c.column.as_str(), c.operator)).collect();
        assert_eq!(
            ops,
            vec![
                ("date", Operator::Lt),
                ("date", Operator::Ge),
                ("gone", Operator::Eq),
                ("source", Operator::Eq)
            ]
        );
        assert_eq!(c[3].parameter(), Some(json!({"source": "arxiv"})));
        assert_eq!(c[2].parameter(), None);
    }

    #[test]
    fn the_sql_holds_no_value_and_quotes_the_column() {
        let c = parse(&json!({"we\"ird": {"@>": ["x'); DROP TABLE t; --"]}})).unwrap();
        let sql = c[0].sql("\"public\".\"p\"", 7);
        assert_eq!(
            sql,
            "t.\"we\"\"ird\" OPERATOR(pg_catalog.@>) (pg_catalog.jsonb_populate_record(NULL::\"public\".\"p\", $7::pg_catalog.jsonb)).\"we\"\"ird\""
        );
        assert!(!sql.contains("DROP"));
        let in_sql = parse(&json!({"source": {"in": ["a", "b"]}})).unwrap()[0].sql("\"public\".\"p\"", 3);
        assert!(in_sql.contains("jsonb_array_elements($3::pg_catalog.jsonb)"), "{in_sql}");
        assert_eq!(parse(&json!({"x": null})).unwrap()[0].sql("t", 1), "t.\"x\" IS NULL");
        assert_eq!(
            parse(&json!({"x": {"<>": null}})).unwrap()[0].sql("t", 1),
            "t.\"x\" IS NOT NULL"
        );
    }

    #[test]
    fn unknown_operators_and_bad_shapes_are_refused() {
        for (filter, says) in [
            (json!([1]), "not an array"),
            (json!("x"), "not a string"),
            (json!({"c": {"~": "x"}}), "unknown operator \"~\""),
            (json!({"c": {"OR 1=1": 1}}), "unknown operator"),
            (json!({"c": {}}), "names no operator"),
            (json!({"c": {"in": "x"}}), "JSON array"),
            (json!({"c": {">": null}}), "null compares"),
        ] {
            let error = parse(&filter).unwrap_err();
            assert!(error.0.contains(says), "{filter}: {}", error.0);
        }
        let many: Map<String, Value> = (0..33).map(|i| (format!("c{i}"), json!(1))).collect();
        assert!(parse(&Value::Object(many)).is_err());
        assert_eq!(parse(&Value::Null).unwrap(), vec![]);
    }
}
