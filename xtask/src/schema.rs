//! Kafka's message schema format (see the README.md in the schema folder), read into a model.

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use serde_json::Value;
use std::path::Path;

/// An inclusive version range; `None` means "no versions".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Versions {
    pub(crate) min: i16,
    pub(crate) max: i16,
}

/// Parses "3+", "0-5", "7" or "none".
pub(crate) fn parse_versions(spec: &str) -> Result<Option<Versions>> {
    let spec = spec.trim();
    if spec == "none" {
        return Ok(None);
    }
    if let Some(min) = spec.strip_suffix('+') {
        return Ok(Some(Versions {
            min: min
                .parse()
                .with_context(|| format!("bad versions {spec}"))?,
            max: i16::MAX,
        }));
    }
    if let Some((a, b)) = spec.split_once('-') {
        return Ok(Some(Versions {
            min: a.parse().with_context(|| format!("bad versions {spec}"))?,
            max: b.parse().with_context(|| format!("bad versions {spec}"))?,
        }));
    }
    let v = spec
        .parse()
        .with_context(|| format!("bad versions {spec}"))?;
    Ok(Some(Versions { min: v, max: v }))
}

impl Versions {
    pub(crate) fn intersect(self, other: Versions) -> Option<Versions> {
        let min = self.min.max(other.min);
        let max = self.max.min(other.max);
        (min <= max).then_some(Versions { min, max })
    }

    pub(crate) fn display(self) -> String {
        if self.max == i16::MAX {
            format!("{}+", self.min)
        } else if self.min == self.max {
            format!("{}", self.min)
        } else {
            format!("{}-{}", self.min, self.max)
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawSchema {
    #[serde(rename = "type")]
    pub(crate) kind: String,
    pub(crate) name: String,
    pub(crate) api_key: Option<i16>,
    pub(crate) valid_versions: String,
    pub(crate) flexible_versions: Option<String>,
    #[serde(default)]
    pub(crate) fields: Vec<RawField>,
    #[serde(default)]
    pub(crate) common_structs: Vec<RawStruct>,
    #[serde(default)]
    pub(crate) listeners: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawStruct {
    pub(crate) name: String,
    #[serde(default)]
    pub(crate) fields: Vec<RawField>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawField {
    pub(crate) name: String,
    #[serde(rename = "type")]
    pub(crate) ty: String,
    pub(crate) versions: Option<String>,
    pub(crate) nullable_versions: Option<String>,
    pub(crate) tagged_versions: Option<String>,
    pub(crate) tag: Option<Value>,
    pub(crate) default: Option<Value>,
    pub(crate) about: Option<String>,
    pub(crate) flexible_versions: Option<String>,
    pub(crate) fields: Option<Vec<RawField>>,
}

/// Removes `//` comments outside of strings.
pub(crate) fn strip_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    let mut in_string = false;
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            if c == '\\' {
                if let Some(next) = chars.next() {
                    out.push(next);
                }
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if c == '/' && chars.peek() == Some(&'/') {
            for skipped in chars.by_ref() {
                if skipped == '\n' {
                    out.push('\n');
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

pub(crate) fn load(path: &Path) -> Result<RawSchema> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let schema: RawSchema = serde_json::from_str(&strip_comments(&text))
        .with_context(|| format!("parsing {}", path.display()))?;
    if !matches!(
        schema.kind.as_str(),
        "request" | "response" | "header" | "data"
    ) {
        bail!("{}: unknown message type {}", path.display(), schema.kind);
    }
    Ok(schema)
}

/// A field value from JSON that may be a string or a number.
pub(crate) fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}
