//! Where in a file's text an error is: its line and column, and the key whose value holds it.

use toml::de::{DeTable, DeValue};

/// The 1-based line and column (in characters) of byte `offset` of `text`.
pub(crate) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map(|l| l.chars().count()).unwrap_or(0) + 1;
    (line, column)
}

/// The dotted key (`timeouts.ready`, `windows[0].days`) whose value covers byte `offset` of
/// `text`; none when `text` is not valid TOML or the offset is in no value.
pub(crate) fn key_at(text: &str, offset: usize) -> Option<String> {
    let document = DeTable::parse(text).ok()?;
    key_in(document.get_ref(), offset, "")
}

fn key_in(table: &DeTable<'_>, offset: usize, prefix: &str) -> Option<String> {
    table.iter().find_map(|(name, value)| {
        let key = if prefix.is_empty() {
            name.get_ref().to_string()
        } else {
            format!("{prefix}.{}", name.get_ref())
        };
        match value.get_ref() {
            // A section's span is its header, not its keys: look inside every section.
            DeValue::Table(inner) => key_in(inner, offset, &key),
            DeValue::Array(items) if items.iter().any(|i| i.get_ref().is_table()) => {
                items.iter().enumerate().find_map(|(i, item)| {
                    item.get_ref()
                        .as_table()
                        .and_then(|t| key_in(t, offset, &format!("{key}[{i}]")))
                })
            }
            _ => value.span().contains(&offset).then_some(key),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_found_in_sections_and_arrays_of_tables() {
        let text = "[timeouts]\nready = \"soon\"\n[[windows]]\nstart = \"01:00\"\n[[windows]]\ndays = [\"x\"]\n";
        assert_eq!(key_at(text, text.find("\"soon\"").unwrap()).as_deref(), Some("timeouts.ready"));
        assert_eq!(key_at(text, text.find("[\"x\"]").unwrap()).as_deref(), Some("windows[1].days"));
        assert_eq!(key_at(text, text.find("\"x\"").unwrap()).as_deref(), Some("windows[1].days"));
        assert_eq!(key_at(text, 0), None, "a header is no value");
        assert_eq!(key_at("[timeouts\n", 3), None, "not TOML");
        assert_eq!(line_column("a\nbc", 3), (2, 2));
    }
}
