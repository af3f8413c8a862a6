//! The text sent to the API for one paper, built exactly as the DocTrove service builds it.

/// `Title: {title} Abstract: {abstract}`, or `Title: {title}` when the abstract is NULL or blank,
/// trimmed. `None` when the paper has no title: such a paper is never sent.
pub fn paper_input(title: Option<&str>, abstract_text: Option<&str>) -> Option<String> {
    let title = title.filter(|t| !t.is_empty())?;
    let text = match abstract_text.filter(|a| !a.trim().is_empty()) {
        Some(abstract_text) => format!("Title: {title} Abstract: {abstract_text}"),
        None => format!("Title: {title}"),
    };
    Some(text.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn title_and_abstract_are_joined() {
        assert_eq!(paper_input(Some("A"), Some("B")).unwrap(), "Title: A Abstract: B");
    }

    #[test]
    fn a_null_or_blank_abstract_leaves_the_title_alone() {
        assert_eq!(paper_input(Some("A"), None).unwrap(), "Title: A");
        assert_eq!(paper_input(Some("A"), Some("")).unwrap(), "Title: A");
        assert_eq!(paper_input(Some("A"), Some(" \n\t ")).unwrap(), "Title: A");
    }

    #[test]
    fn the_whole_text_is_trimmed_but_inner_spacing_kept() {
        assert_eq!(paper_input(Some("A  b"), Some(" c \n")).unwrap(), "Title: A  b Abstract:  c");
    }

    #[test]
    fn a_missing_or_empty_title_sends_nothing() {
        assert_eq!(paper_input(None, Some("B")), None);
        assert_eq!(paper_input(Some(""), Some("B")), None);
    }
}
