//! The README's generated sections: the event-type and error-code tables, rendered from
//! the domain's catalogs between `<!-- generated: NAME -->` and `<!-- end generated: NAME -->`.
//! `make docs` rewrites them; a test fails when they are stale.

use billing_domain::events::types;
use billing_domain::kernel::error;

/// The README with every generated section rendered anew; the rest is left as it is.
pub fn render(readme: &str) -> Result<String, MissingMarker> {
    let mut text = readme.to_owned();
    for (name, table) in [
        ("event-types", types::markdown_table()),
        ("error-codes", error::markdown_table()),
    ] {
        text = splice(&text, name, &table)?;
    }
    Ok(text)
}

#[derive(Debug, thiserror::Error)]
#[error("the README has no `<!-- generated: {0} -->` … `<!-- end generated: {0} -->` section")]
pub struct MissingMarker(&'static str);

fn splice(text: &str, name: &'static str, body: &str) -> Result<String, MissingMarker> {
    let (open, close) = (
        format!("<!-- generated: {name} -->\n"),
        format!("<!-- end generated: {name} -->"),
    );
    let start = text.find(&open).ok_or(MissingMarker(name))? + open.len();
    let end = start + text[start..].find(&close).ok_or(MissingMarker(name))?;
    Ok(format!("{}{body}{}", &text[..start], &text[end..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_text_between_the_markers_changes() {
        let readme = "intro\n<!-- generated: x -->\nold\n<!-- end generated: x -->\noutro\n";
        assert_eq!(
            splice(readme, "x", "new\n").unwrap(),
            "intro\n<!-- generated: x -->\nnew\n<!-- end generated: x -->\noutro\n"
        );
        assert!(splice("no markers", "x", "new\n").is_err());
    }
}
