//! Reads what a Hugging Face model directory keeps beside `tokenizer.json`:
//! `tokenizer_config.json` (`chat_template`, `bos_token`, `eos_token`) and,
//! for transformers >= 4.43 checkpoints, `chat_template.jinja`.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::TokenizeError;

/// The fields of `tokenizer_config.json` the facade uses.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct TokenizerConfig {
    pub(crate) chat_template: Option<String>,
    pub(crate) bos_token: Option<String>,
    pub(crate) eos_token: Option<String>,
}

/// Reads the config files next to `tokenizer_json`; absent files give an
/// empty config, unreadable or malformed ones an error naming the file.
pub(crate) fn read_sibling_config(tokenizer_json: &Path) -> Result<TokenizerConfig, TokenizeError> {
    let dir = tokenizer_json.parent().unwrap_or(Path::new("."));
    let config_path = dir.join("tokenizer_config.json");
    let mut config = if config_path.is_file() {
        let text = read(&config_path)?;
        parse_config(&text, &config_path)?
    } else {
        TokenizerConfig::default()
    };
    let jinja_path = dir.join("chat_template.jinja");
    if config.chat_template.is_none() && jinja_path.is_file() {
        config.chat_template = Some(read(&jinja_path)?);
    }
    Ok(config)
}

fn read(path: &Path) -> Result<String, TokenizeError> {
    std::fs::read_to_string(path).map_err(|source| TokenizeError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Parses `tokenizer_config.json` text (`path` is only for messages).
pub(crate) fn parse_config(text: &str, path: &Path) -> Result<TokenizerConfig, TokenizeError> {
    let json: Value = serde_json::from_str(text).map_err(|source| TokenizeError::ConfigJson {
        path: path.to_path_buf(),
        source,
    })?;
    let field_error = |field: &str, problem: String| TokenizeError::ConfigField {
        path: path.to_path_buf(),
        field: field.to_string(),
        problem,
    };
    Ok(TokenizerConfig {
        chat_template: chat_template(json.get("chat_template"))
            .map_err(|p| field_error("chat_template", p))?,
        bos_token: token_string(json.get("bos_token")).map_err(|p| field_error("bos_token", p))?,
        eos_token: token_string(json.get("eos_token")).map_err(|p| field_error("eos_token", p))?,
    })
}

/// A special token is written either as a string or as a serialized
/// `AddedToken` object `{"content": "...", ...}`.
fn token_string(value: Option<&Value>) -> Result<Option<String>, String> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Object(map)) => match map.get("content") {
            Some(Value::String(s)) => Ok(Some(s.clone())),
            other => Err(format!(
                "is an object whose `content` is {other:?}, expected a string"
            )),
        },
        Some(other) => Err(format!(
            "is {other}, expected a string or {{\"content\": ...}}"
        )),
    }
}

/// A template is a string, or (older multi-template configs) a list of
/// `{"name", "template"}` objects of which `default` is the chat template.
fn chat_template(value: Option<&Value>) -> Result<Option<String>, String> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Array(items)) => {
            let default = items
                .iter()
                .find(|item| item.get("name").and_then(Value::as_str) == Some("default"));
            match default
                .and_then(|item| item.get("template"))
                .and_then(Value::as_str)
            {
                Some(t) => Ok(Some(t.to_string())),
                None => Err(
                    "is a list without a {\"name\": \"default\", \"template\": ...} entry"
                        .to_string(),
                ),
            }
        }
        Some(other) => Err(format!(
            "is {other}, expected a string or a list of named templates"
        )),
    }
}

/// The path display used as a tokenizer's name.
pub(crate) fn display_name(path: &Path) -> String {
    PathBuf::from(path).display().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_strings_and_added_token_objects() {
        let text = r#"{"bos_token": {"content": "<s>", "lstrip": false}, "eos_token": "</s>",
                       "chat_template": [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "D"}]}"#;
        let config = parse_config(text, Path::new("x/tokenizer_config.json")).unwrap();
        assert_eq!(config.bos_token.as_deref(), Some("<s>"));
        assert_eq!(config.eos_token.as_deref(), Some("</s>"));
        assert_eq!(config.chat_template.as_deref(), Some("D"));
    }

    #[test]
    fn bad_field_names_file_and_field() {
        let err =
            parse_config(r#"{"eos_token": 7}"#, Path::new("m/tokenizer_config.json")).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("m/tokenizer_config.json") && msg.contains("eos_token"),
            "{msg}"
        );
        let err = parse_config("{not json", Path::new("m/tokenizer_config.json")).unwrap_err();
        assert!(err.to_string().contains("m/tokenizer_config.json"), "{err}");
    }
}
