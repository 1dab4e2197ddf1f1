//! The `tojson` filter as Hugging Face chat templates expect it: transformers
//! overrides jinja's HTML-escaping `tojson` with Python's
//! `json.dumps(x, ensure_ascii=False, indent=None, separators=None,
//! sort_keys=False)` (`utils/chat_template_utils.py`). minijinja's built-in
//! filter escapes `<`, `>`, `&` and `'`, which would change tool-call prompts.

use minijinja::value::{Kwargs, Value, ValueKind};
use minijinja::{Error, ErrorKind};

/// Layout options of `json.dumps`.
struct Style {
    indent: Option<String>,
    item_sep: String,
    key_sep: String,
    sort_keys: bool,
    ensure_ascii: bool,
}

/// `value | tojson(ensure_ascii=False, indent=None, separators=None, sort_keys=False)`.
pub(crate) fn tojson(value: &Value, kwargs: Kwargs) -> Result<Value, Error> {
    let indent = match kwargs.get::<Option<Value>>("indent")? {
        None => None,
        Some(v) if v.is_none() => None,
        Some(v) => match v.as_i64() {
            Some(n) => Some(" ".repeat(n.max(0) as usize)),
            None => Some(
                v.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| bad("indent must be an int or a string"))?,
            ),
        },
    };
    let (mut item_sep, mut key_sep) = if indent.is_some() {
        (",", ": ")
    } else {
        (", ", ": ")
    };
    let separators: Option<Vec<String>> = kwargs.get("separators")?;
    if let Some(seps) = &separators {
        match seps.as_slice() {
            [item, key] => (item_sep, key_sep) = (item.as_str(), key.as_str()),
            _ => return Err(bad("separators must be a pair of strings")),
        }
    }
    let style = Style {
        indent,
        item_sep: item_sep.to_string(),
        key_sep: key_sep.to_string(),
        sort_keys: kwargs.get::<Option<bool>>("sort_keys")?.unwrap_or(false),
        ensure_ascii: kwargs.get::<Option<bool>>("ensure_ascii")?.unwrap_or(false),
    };
    kwargs.assert_all_used()?;
    let mut out = String::new();
    write_value(&mut out, value, &style, 0)?;
    Ok(Value::from_safe_string(out))
}

fn bad(message: &str) -> Error {
    Error::new(ErrorKind::InvalidOperation, format!("tojson: {message}"))
}

fn write_value(out: &mut String, value: &Value, style: &Style, depth: usize) -> Result<(), Error> {
    match value.kind() {
        ValueKind::Undefined | ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if value.is_true() { "true" } else { "false" }),
        ValueKind::Number => out.push_str(&value.to_string()),
        ValueKind::String => {
            write_string(out, value.as_str().unwrap_or_default(), style.ensure_ascii)
        }
        ValueKind::Seq | ValueKind::Iterable => {
            let items: Vec<Value> = value.try_iter()?.collect();
            write_container(out, ('[', ']'), items.len(), style, depth, |out, i| {
                write_value(out, &items[i], style, depth + 1)
            })?;
        }
        ValueKind::Map => {
            let mut entries: Vec<(String, Value)> = value
                .try_iter()?
                .map(|key| Ok((key_string(&key)?, value.get_item(&key)?)))
                .collect::<Result<_, Error>>()?;
            if style.sort_keys {
                entries.sort_by(|a, b| a.0.cmp(&b.0));
            }
            write_container(out, ('{', '}'), entries.len(), style, depth, |out, i| {
                write_string(out, &entries[i].0, style.ensure_ascii);
                out.push_str(&style.key_sep);
                write_value(out, &entries[i].1, style, depth + 1)
            })?;
        }
        kind => {
            return Err(bad(&format!(
                "a value of kind {kind} is not JSON serializable"
            )))
        }
    }
    Ok(())
}

/// `[a, b]`, or with an indent one item per line, as `json.dumps` lays out.
fn write_container(
    out: &mut String,
    (open, close): (char, char),
    len: usize,
    style: &Style,
    depth: usize,
    mut item: impl FnMut(&mut String, usize) -> Result<(), Error>,
) -> Result<(), Error> {
    out.push(open);
    if len == 0 {
        out.push(close);
        return Ok(());
    }
    let newline = |out: &mut String, level: usize| {
        if let Some(indent) = &style.indent {
            out.push('\n');
            out.push_str(&indent.repeat(level));
        }
    };
    for i in 0..len {
        if i > 0 {
            out.push_str(&style.item_sep);
        }
        newline(out, depth + 1);
        item(out, i)?;
    }
    newline(out, depth);
    out.push(close);
    Ok(())
}

/// Map keys become strings the way Python's `json` converts them.
fn key_string(key: &Value) -> Result<String, Error> {
    match key.kind() {
        ValueKind::String => Ok(key.as_str().unwrap_or_default().to_string()),
        ValueKind::Number => Ok(key.to_string()),
        ValueKind::Bool => Ok(if key.is_true() { "true" } else { "false" }.to_string()),
        ValueKind::None | ValueKind::Undefined => Ok("null".to_string()),
        kind => Err(bad(&format!(
            "keys must be str, int, float, bool or None, not {kind}"
        ))),
    }
}

fn write_string(out: &mut String, s: &str, ensure_ascii: bool) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (ensure_ascii && !c.is_ascii()) => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use minijinja::Environment;

    fn render(source: &str) -> String {
        let mut env = Environment::new();
        env.add_filter("tojson", super::tojson);
        env.render_str(source, minijinja::context! {}).unwrap()
    }

    #[test]
    fn matches_python_json_dumps() {
        // Expected strings are what Python's json.dumps prints for the same values.
        assert_eq!(
            render(r#"{{ {"a": [1, 2.5, none, true], "b": "<x> & 'y' é\n"} | tojson }}"#),
            r#"{"a": [1, 2.5, null, true], "b": "<x> & 'y' é\n"}"#
        );
        assert_eq!(
            render(r#"{{ [1, {"k": []}] | tojson(indent=2) }}"#),
            "[\n  1,\n  {\n    \"k\": []\n  }\n]"
        );
        assert_eq!(
            render(r#"{{ {"b": 1, "a": 2} | tojson(sort_keys=true) }}"#),
            r#"{"a": 2, "b": 1}"#
        );
        assert_eq!(
            render(r#"{{ "é😀\u0001" | tojson(ensure_ascii=true) }}"#),
            r#""\u00e9\ud83d\ude00\u0001""#
        );
        assert_eq!(
            render(r#"{{ [1, 2] | tojson(separators=[",", ":"]) }}"#),
            "[1,2]"
        );
    }
}
