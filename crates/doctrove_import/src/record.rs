//! One line of the arXiv metadata snapshot (as published on Kaggle) turned into a paper:
//! whitespace inside titles and abstracts (they are wrapped at fixed width) collapsed, edges
//! trimmed, LaTeX kept as it is, missing fields tolerated.

use serde_json::Value;

/// A paper ready to be written.
#[derive(Debug, Clone, PartialEq)]
pub struct Paper {
    pub source_id: String,
    pub title: Option<String>,
    pub abstract_text: Option<String>,
    pub authors: Option<String>,
    pub categories: Vec<String>,
    /// `YYYY-MM-DD`, as the snapshot writes `update_date`.
    pub date: Option<String>,
}

/// Why a line gave no paper.
#[derive(Debug, Clone, PartialEq)]
pub enum Skip {
    NotJson(String),
    NoId,
}

/// Collapses runs of white space (newlines included) to one space and trims the ends;
/// `None` for an empty result.
pub fn clean_text(text: &str) -> Option<String> {
    let cleaned = text.split_whitespace().collect::<Vec<_>>().join(" ");
    (!cleaned.is_empty()).then_some(cleaned)
}

fn text_field(record: &Value, name: &str) -> Option<String> {
    record.get(name).and_then(Value::as_str).and_then(clean_text)
}

/// Parses one line.
pub fn parse_line(line: &str) -> Result<Paper, Skip> {
    let record: Value = serde_json::from_str(line).map_err(|e| Skip::NotJson(e.to_string()))?;
    // Old-style ids such as "hep-th/9901001" are strings; new-style ones too ("0704.0001").
    let source_id = match record.get("id") {
        Some(Value::String(id)) => id.trim().to_string(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    };
    if source_id.is_empty() {
        return Err(Skip::NoId);
    }
    let categories = text_field(&record, "categories")
        .map(|c| c.split(' ').map(str::to_string).collect())
        .unwrap_or_default();
    let date = text_field(&record, "update_date").filter(|d| d.len() == 10 && d.as_bytes()[4] == b'-');
    Ok(Paper {
        source_id,
        title: text_field(&record, "title"),
        abstract_text: text_field(&record, "abstract"),
        authors: text_field(&record, "authors"),
        categories,
        date,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_line_becomes_a_paper() {
        let line = r#"{"id":"0704.0001","submitter":"Pavel Nadolsky","authors":"C. Bal\\'azs, E. L. Berger","title":"Calculation of prompt diphoton production cross sections at Tevatron and\n  LHC energies","comments":"37 pages","journal-ref":"Phys.Rev.D76:013009,2007","doi":"10.1103/PhysRevD.76.013009","report-no":"ANL-HEP-PR-07-12","categories":"hep-ph","license":null,"abstract":"  A fully differential calculation in perturbative quantum chromodynamics is\npresented for the production of massive photon pairs at hadron colliders.\n","versions":[{"version":"v1","created":"Mon, 2 Apr 2007 19:18:42 GMT"}],"update_date":"2008-11-13","authors_parsed":[["Bal\u00e1zs","C.",""]]}"#;
        let paper = parse_line(line).unwrap();
        assert_eq!(paper.source_id, "0704.0001");
        assert_eq!(
            paper.title.as_deref(),
            Some("Calculation of prompt diphoton production cross sections at Tevatron and LHC energies")
        );
        assert_eq!(
            paper.abstract_text.as_deref(),
            Some("A fully differential calculation in perturbative quantum chromodynamics is presented for the production of massive photon pairs at hadron colliders.")
        );
        assert_eq!(paper.categories, vec!["hep-ph"]);
        assert_eq!(paper.date.as_deref(), Some("2008-11-13"));
    }

    #[test]
    fn latex_is_kept() {
        let paper = parse_line(r#"{"id":"1","title":"The $\\alpha$-decay of $^{8}$Be","abstract":"$x^2$"}"#).unwrap();
        assert_eq!(paper.title.as_deref(), Some("The $\\alpha$-decay of $^{8}$Be"));
    }

    #[test]
    fn missing_fields_are_none() {
        let paper = parse_line(r#"{"id":"hep-th/9901001"}"#).unwrap();
        assert_eq!((paper.title, paper.abstract_text, paper.date), (None, None, None));
        assert!(paper.categories.is_empty());
    }

    #[test]
    fn a_blank_abstract_is_none() {
        assert_eq!(
            parse_line(r#"{"id":"1","title":"T","abstract":"  \n "}"#)
                .unwrap()
                .abstract_text,
            None
        );
    }

    #[test]
    fn a_line_without_an_id_is_skipped() {
        assert_eq!(parse_line(r#"{"title":"T"}"#), Err(Skip::NoId));
        assert!(matches!(parse_line("not json"), Err(Skip::NotJson(_))));
    }
}
