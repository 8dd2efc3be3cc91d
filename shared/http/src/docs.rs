//! `/docs`: the API reference as one self-contained HTML page, rendered on the server from
//! the same OpenAPI document served at `/v1/openapi.json`. No scripts and no assets, so it
//! works offline and adds nothing to the Lambda's size.

use std::fmt::Write;
use std::sync::OnceLock;

use axum::response::Html;
use serde_json::Value;

pub async fn page() -> Html<&'static str> {
    static PAGE: OnceLock<String> = OnceLock::new();
    Html(PAGE.get_or_init(|| render(crate::openapi::document())))
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A schema reference's name (`#/components/schemas/Account` → `Account`).
fn schema_name(schema: &Value) -> Option<String> {
    let reference = schema
        .get("$ref")
        .or_else(|| schema.pointer("/items/$ref"))
        .and_then(Value::as_str)?;
    let name = reference.rsplit('/').next()?.to_owned();
    Some(if schema.get("items").is_some() {
        format!("list of {name}")
    } else {
        name
    })
}

fn link(schema: &Value) -> String {
    match schema_name(schema) {
        Some(name) => {
            let target = name.trim_start_matches("list of ");
            format!(
                "<a href=\"#schema-{}\">{}</a>",
                escape(target),
                escape(&name)
            )
        }
        None => "inline".into(),
    }
}

pub fn render(doc: &Value) -> String {
    let mut html = String::with_capacity(64 * 1024);
    let title = doc
        .pointer("/info/title")
        .and_then(Value::as_str)
        .unwrap_or("API");
    let _ = write!(
        html,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title>\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><style>\
         body{{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}}\
         code,pre{{font:13px ui-monospace,monospace;background:#f5f5f5}}pre{{padding:.75rem;overflow:auto}}\
         .op{{border-top:1px solid #ddd;padding:.5rem 0}}.m{{font-weight:700;display:inline-block;width:4.5rem}}\
         table{{border-collapse:collapse}}td,th{{border:1px solid #ddd;padding:.2rem .5rem;text-align:left;vertical-align:top}}\
         </style></head><body><h1>{t}</h1><p>{d}</p><p>Machine-readable: <a href=\"/v1/openapi.json\">/v1/openapi.json</a> (OpenAPI {v}).</p>",
        t = escape(title),
        d = escape(doc.pointer("/info/description").and_then(Value::as_str).unwrap_or("")),
        v = escape(doc.get("openapi").and_then(Value::as_str).unwrap_or("")),
    );
    let tags: Vec<(String, String)> = doc
        .get("tags")
        .and_then(Value::as_array)
        .map(|tags| {
            tags.iter()
                .map(|t| {
                    let field = |k| t.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
                    (field("name"), field("description"))
                })
                .collect()
        })
        .unwrap_or_default();
    let empty = serde_json::Map::new();
    let paths = doc
        .get("paths")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    for (tag, description) in &tags {
        let _ = write!(
            html,
            "<h2 id=\"tag-{0}\">{0}</h2><p>{1}</p>",
            escape(tag),
            escape(description)
        );
        for (path, item) in paths {
            for (method, op) in item.as_object().unwrap_or(&empty) {
                let tagged = op
                    .get("tags")
                    .and_then(Value::as_array)
                    .is_some_and(|t| t.iter().any(|x| x.as_str() == Some(tag)));
                if tagged {
                    render_operation(&mut html, method, path, op);
                }
            }
        }
    }
    html.push_str("<h2>Schemas</h2>");
    let schemas = doc
        .pointer("/components/schemas")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    for (name, schema) in schemas {
        let _ = write!(html, "<h3 id=\"schema-{0}\">{0}</h3>", escape(name));
        if let Some(d) = schema.get("description").and_then(Value::as_str) {
            let _ = write!(html, "<p>{}</p>", escape(d));
        }
        if let Some(props) = schema.get("properties").and_then(Value::as_object) {
            let required: Vec<&str> = schema
                .get("required")
                .and_then(Value::as_array)
                .map(|r| r.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            html.push_str("<table><tr><th>field</th><th>type</th><th>description</th></tr>");
            for (field, prop) in props {
                let kind = schema_name(prop).unwrap_or_else(|| match prop.get("type") {
                    Some(Value::String(t)) => t.clone(),
                    Some(Value::Array(ts)) => ts
                        .iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(" | "),
                    _ => "object".into(),
                });
                let _ = write!(
                    html,
                    "<tr><td><code>{}</code>{}</td><td>{}</td><td>{}</td></tr>",
                    escape(field),
                    if required.contains(&field.as_str()) {
                        " *"
                    } else {
                        ""
                    },
                    escape(&kind),
                    escape(
                        prop.get("description")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                    ),
                );
            }
            html.push_str("</table>");
        }
        if let Some(example) = schema.get("example") {
            let _ = write!(
                html,
                "<p>Example:</p><pre>{}</pre>",
                escape(&serde_json::to_string_pretty(example).unwrap_or_default())
            );
        }
    }
    html.push_str("</body></html>");
    html
}

fn render_operation(html: &mut String, method: &str, path: &str, op: &Value) {
    let text = |k: &str| op.get(k).and_then(Value::as_str).unwrap_or("");
    let _ = write!(
        html,
        "<div class=\"op\"><p><span class=\"m\">{}</span><code>{}</code></p><p><b>{}</b> {}</p>",
        method.to_uppercase(),
        escape(path),
        escape(text("summary")),
        escape(text("description")),
    );
    if let Some(params) = op.get("parameters").and_then(Value::as_array) {
        html.push_str("<table><tr><th>parameter</th><th>in</th><th>description</th></tr>");
        for p in params {
            let field = |k| p.get(k).and_then(Value::as_str).unwrap_or("");
            let _ = write!(
                html,
                "<tr><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
                escape(field("name")),
                escape(field("in")),
                escape(field("description")),
            );
        }
        html.push_str("</table>");
    }
    if let Some(body) = op.pointer("/requestBody/content/application~1json/schema") {
        let _ = write!(html, "<p>Body: {}</p>", link(body));
    }
    if let Some(responses) = op.get("responses").and_then(Value::as_object) {
        let listed: Vec<String> = responses
            .iter()
            .map(|(status, r)| {
                let schema = r
                    .get("content")
                    .and_then(Value::as_object)
                    .and_then(|c| c.values().next())
                    .and_then(|c| c.get("schema"));
                match schema {
                    Some(s) => format!("{} {}", escape(status), link(s)),
                    None => escape(status),
                }
            })
            .collect();
        let _ = write!(html, "<p>Responses: {}</p>", listed.join(" · "));
    }
    html.push_str("</div>");
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_page_lists_every_documented_operation_and_schema() {
        let doc = crate::openapi::document();
        let html = super::render(doc);
        for path in doc["paths"].as_object().unwrap().keys() {
            assert!(html.contains(&format!("<code>{path}</code>")), "{path}");
        }
        for schema in doc["components"]["schemas"].as_object().unwrap().keys() {
            assert!(
                html.contains(&format!("id=\"schema-{schema}\"")),
                "{schema}"
            );
        }
        assert!(!html.contains("<script"), "no scripts: works offline");
    }
}
