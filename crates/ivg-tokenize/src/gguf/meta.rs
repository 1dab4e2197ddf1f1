//! Typed access to GGUF metadata (llama.cpp key names, read by candle's
//! `gguf_file::Content`), with errors that name the file and the key.

use std::path::Path;

use candle_core::quantized::gguf_file::{Content, Value};

use crate::TokenizeError;

/// A GGUF file's metadata plus the path it came from (for error messages).
pub(crate) struct Meta<'a> {
    content: &'a Content,
    path: &'a Path,
}

impl<'a> Meta<'a> {
    pub(crate) fn new(content: &'a Content, path: &'a Path) -> Self {
        Self { content, path }
    }

    pub(crate) fn path(&self) -> &'a Path {
        self.path
    }

    fn get(&self, key: &str) -> Result<&'a Value, TokenizeError> {
        self.content
            .metadata
            .get(key)
            .ok_or_else(|| TokenizeError::MissingGgufKey {
                path: self.path.to_path_buf(),
                key: key.to_string(),
            })
    }

    /// The error for a key whose value is present but unusable.
    pub(crate) fn bad(&self, key: &str, problem: impl Into<String>) -> TokenizeError {
        TokenizeError::BadGgufValue {
            path: self.path.to_path_buf(),
            key: key.to_string(),
            problem: problem.into(),
        }
    }

    fn type_error(&self, key: &str, expected: &str, found: &Value) -> TokenizeError {
        self.bad(
            key,
            format!("has type {:?}, expected {expected}", found.value_type()),
        )
    }

    pub(crate) fn string(&self, key: &str) -> Result<&'a str, TokenizeError> {
        match self.get(key)? {
            Value::String(s) => Ok(s.as_str()),
            other => Err(self.type_error(key, "a string", other)),
        }
    }

    pub(crate) fn opt_string(&self, key: &str) -> Result<Option<&'a str>, TokenizeError> {
        match self.content.metadata.get(key) {
            None => Ok(None),
            Some(_) => self.string(key).map(Some),
        }
    }

    pub(crate) fn opt_bool(&self, key: &str) -> Result<Option<bool>, TokenizeError> {
        match self.content.metadata.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(self.type_error(key, "a bool", other)),
        }
    }

    /// An optional token id; any non-negative integer type is accepted since
    /// converters differ in the width they write.
    pub(crate) fn opt_id(&self, key: &str) -> Result<Option<u32>, TokenizeError> {
        let Some(value) = self.content.metadata.get(key) else {
            return Ok(None);
        };
        let wide: i128 = match value {
            Value::U8(v) => (*v).into(),
            Value::I8(v) => (*v).into(),
            Value::U16(v) => (*v).into(),
            Value::I16(v) => (*v).into(),
            Value::U32(v) => (*v).into(),
            Value::I32(v) => (*v).into(),
            Value::U64(v) => (*v).into(),
            Value::I64(v) => (*v).into(),
            other => return Err(self.type_error(key, "an integer token id", other)),
        };
        u32::try_from(wide)
            .map(Some)
            .map_err(|_| self.bad(key, format!("value {wide} is not a valid token id")))
    }

    fn array(&self, key: &str) -> Result<&'a [Value], TokenizeError> {
        match self.get(key)? {
            Value::Array(items) => Ok(items.as_slice()),
            other => Err(self.type_error(key, "an array", other)),
        }
    }

    /// A string array, borrowed (the Gemma vocabulary has 262k entries).
    pub(crate) fn strings(&self, key: &str) -> Result<Vec<&'a str>, TokenizeError> {
        self.array(key)?
            .iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::String(s) => Ok(s.as_str()),
                other => Err(self.type_error(&format!("{key}[{i}]"), "a string", other)),
            })
            .collect()
    }

    /// An optional integer array (token types are written as i32).
    pub(crate) fn opt_i32s(&self, key: &str) -> Result<Option<Vec<i32>>, TokenizeError> {
        if !self.content.metadata.contains_key(key) {
            return Ok(None);
        }
        self.array(key)?
            .iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::I32(x) => Ok(*x),
                Value::U32(x) => i32::try_from(*x)
                    .map_err(|_| self.bad(&format!("{key}[{i}]"), format!("{x} is out of range"))),
                Value::U8(x) => Ok((*x).into()),
                Value::I8(x) => Ok((*x).into()),
                other => Err(self.type_error(&format!("{key}[{i}]"), "an integer", other)),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }
}
