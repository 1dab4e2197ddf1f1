//! Chat templates rendered with minijinja the way transformers'
//! `apply_chat_template` renders them with jinja2
//! (`utils/chat_template_utils.py`): `trim_blocks` and `lstrip_blocks` on,
//! loop controls, a `raise_exception(message)` function, a Python-compatible
//! `tojson`, Python string methods (`.strip()`, `.startswith()`, via
//! minijinja-contrib's pycompat), and `messages`, `add_generation_prompt`,
//! `bos_token`, `eos_token` in scope.

use std::sync::Arc;

use minijinja::value::{Enumerator, Object, ObjectRepr, Value};
use minijinja::{Environment, Error, ErrorKind};
use serde::{Deserialize, Serialize};

/// One turn of a conversation (`{"role": "user", "content": "..."}`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
        }
    }
}

/// Exposes a message to templates as a map whose keys keep the order
/// `role`, `content` (as the Python dict does, which `tojson` shows).
impl Object for ChatMessage {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Map
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        match key.as_str()? {
            "role" => Some(Value::from(self.role.as_str())),
            "content" => Some(Value::from(self.content.as_str())),
            _ => None,
        }
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Str(&["role", "content"])
    }
}

/// The special-token strings a template may reference.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct TemplateTokens<'a> {
    pub(crate) bos_token: Option<&'a str>,
    pub(crate) eos_token: Option<&'a str>,
}

/// jinja2's `raise_exception` helper used by templates to reject input
/// (e.g. "Conversation roles must alternate").
fn raise_exception(message: String) -> Result<Value, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, message))
}

fn environment(template: &str) -> Result<Environment<'static>, Error> {
    let mut env = Environment::new();
    env.set_syntax(
        minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()?,
    );
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_function("raise_exception", raise_exception);
    env.add_filter("tojson", crate::pyjson::tojson);
    env.add_template_owned("chat_template", template.to_string())?;
    Ok(env)
}

/// Renders `template`; the error is a message with minijinja's location.
pub(crate) fn render_chat_template(
    template: &str,
    messages: &[ChatMessage],
    add_generation_prompt: bool,
    tokens: TemplateTokens<'_>,
) -> Result<String, String> {
    let env = environment(template).map_err(describe)?;
    let compiled = env.get_template("chat_template").map_err(describe)?;
    let messages: Vec<Value> = messages.iter().cloned().map(Value::from_object).collect();
    let mut context = std::collections::BTreeMap::new();
    context.insert("messages", Value::from(messages));
    context.insert("add_generation_prompt", Value::from(add_generation_prompt));
    // Absent tokens stay undefined, as in transformers (not the string "None").
    if let Some(bos) = tokens.bos_token {
        context.insert("bos_token", Value::from(bos));
    }
    if let Some(eos) = tokens.eos_token {
        context.insert("eos_token", Value::from(eos));
    }
    compiled.render(Value::from(context)).map_err(describe)
}

/// The error and its sources on one line.
fn describe(err: Error) -> String {
    let mut message = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(inner) = source {
        message.push_str(&format!(": {inner}"));
        source = inner.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(template: &str, messages: &[ChatMessage], gen: bool) -> Result<String, String> {
        let tokens = TemplateTokens {
            bos_token: Some("<s>"),
            eos_token: Some("</s>"),
        };
        render_chat_template(template, messages, gen, tokens)
    }

    #[test]
    fn trims_blocks_like_transformers() {
        // Expected strings are what jinja2 (trim_blocks, lstrip_blocks) renders.
        let msgs = [
            ChatMessage::new("user", "hi"),
            ChatMessage::new("assistant", "yo"),
        ];
        let template = "{% for m in messages %}\n  {{ m.role }}:{{ m['content'] }}\n{% endfor %}\n{% if add_generation_prompt %}A:{% endif %}";
        assert_eq!(
            render(template, &msgs, true).unwrap(),
            "  user:hi\n  assistant:yo\nA:"
        );
        let template = "{% for m in messages %}\n  {% if m.role %}{{ m.role }}:{{ m['content'] }}\n  {% endif %}\n{% endfor %}\n{% if add_generation_prompt %}A:{% endif %}";
        assert_eq!(
            render(template, &msgs, false).unwrap(),
            "user:hi\nassistant:yo\n"
        );
    }

    #[test]
    fn python_methods_tokens_and_tojson() {
        let template = "{{ bos_token }}{{ messages[0].content.strip().upper() }}{{ messages[0] | tojson }}{{ eos_token }}";
        let out = render(template, &[ChatMessage::new("user", "  a<b ")], false).unwrap();
        assert_eq!(out, r#"<s>A<B{"role": "user", "content": "  a<b "}</s>"#);
    }

    #[test]
    fn raise_exception_reports_message() {
        let template = "{% if messages[0].role != 'system' %}{{ raise_exception('roles must alternate') }}{% endif %}";
        let err = render(template, &[ChatMessage::new("user", "x")], false).unwrap_err();
        assert!(err.contains("roles must alternate"), "{err}");
        let err = render("{% for %}", &[], false).unwrap_err();
        assert!(err.contains("syntax error"), "{err}");
    }

    #[test]
    fn missing_bos_is_undefined() {
        let out = render_chat_template(
            "[{{ bos_token }}]{{ bos_token is defined }}",
            &[],
            false,
            TemplateTokens::default(),
        );
        // jinja2 prints Python booleans.
        assert_eq!(out.unwrap(), "[]False");
    }
}
