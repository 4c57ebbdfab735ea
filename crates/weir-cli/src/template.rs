//! `consume --format`: a template with `{field}` placeholders, or `json`.

use weir_client::consumer::ConsumerRecord;

/// One piece of a parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Part {
    Text(String),
    Topic,
    Partition,
    Offset,
    Key,
    Value,
    Headers,
    Timestamp,
}

/// How each record is printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RecordFormat {
    /// One JSON object per line.
    Json,
    /// The template, then a newline.
    Template(Vec<Part>),
}

impl RecordFormat {
    /// Parses `json` or a template; an unknown `{field}` or an unclosed brace is an error
    /// naming it.
    pub(crate) fn parse(format: &str) -> Result<Self, String> {
        if format == "json" {
            return Ok(RecordFormat::Json);
        }
        let mut parts = Vec::new();
        let mut text = String::new();
        let mut chars = format.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    text.push('{');
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    text.push('}');
                }
                '{' => {
                    let mut name = String::new();
                    loop {
                        match chars.next() {
                            Some('}') => break,
                            Some(c) => name.push(c),
                            None => return Err(format!("unclosed {{ in --format {format:?}")),
                        }
                    }
                    let part = match name.as_str() {
                        "topic" => Part::Topic,
                        "partition" => Part::Partition,
                        "offset" => Part::Offset,
                        "key" => Part::Key,
                        "value" => Part::Value,
                        "headers" => Part::Headers,
                        "timestamp" => Part::Timestamp,
                        other => {
                            return Err(format!(
                                "unknown field {{{other}}} in --format (fields: topic, \
                                 partition, offset, key, value, headers, timestamp)"
                            ));
                        }
                    };
                    if !text.is_empty() {
                        parts.push(Part::Text(std::mem::take(&mut text)));
                    }
                    parts.push(part);
                }
                '\\' => match chars.next() {
                    Some('n') => text.push('\n'),
                    Some('t') => text.push('\t'),
                    Some('\\') => text.push('\\'),
                    Some(other) => {
                        text.push('\\');
                        text.push(other);
                    }
                    None => text.push('\\'),
                },
                c => text.push(c),
            }
        }
        if !text.is_empty() {
            parts.push(Part::Text(text));
        }
        Ok(RecordFormat::Template(parts))
    }

    /// The record as one line (with its newline). Keys, values and headers are printed as
    /// UTF-8 (invalid bytes replaced); a null key or value prints nothing in a template and
    /// `null` in JSON.
    pub(crate) fn render(&self, record: &ConsumerRecord) -> String {
        match self {
            RecordFormat::Json => {
                let headers: Vec<serde_json::Value> = record
                    .headers
                    .iter()
                    .map(|h| {
                        serde_json::json!({
                            "key": String::from_utf8_lossy(&h.key),
                            "value": h.value.as_deref().map(String::from_utf8_lossy),
                        })
                    })
                    .collect();
                let value = serde_json::json!({
                    "topic": record.topic.as_ref(),
                    "partition": record.partition,
                    "offset": record.offset,
                    "timestamp": record.timestamp,
                    "key": record.key.as_deref().map(String::from_utf8_lossy),
                    "value": record.value.as_deref().map(String::from_utf8_lossy),
                    "headers": headers,
                });
                format!("{value}\n")
            }
            RecordFormat::Template(parts) => {
                let mut line = String::new();
                for part in parts {
                    match part {
                        Part::Text(text) => line.push_str(text),
                        Part::Topic => line.push_str(&record.topic),
                        Part::Partition => line.push_str(&record.partition.to_string()),
                        Part::Offset => line.push_str(&record.offset.to_string()),
                        Part::Timestamp => line.push_str(&record.timestamp.to_string()),
                        Part::Key => line.push_str(&text(record.key.as_deref())),
                        Part::Value => line.push_str(&text(record.value.as_deref())),
                        Part::Headers => {
                            let headers: Vec<String> = record
                                .headers
                                .iter()
                                .map(|h| {
                                    format!(
                                        "{}={}",
                                        String::from_utf8_lossy(&h.key),
                                        text(h.value.as_deref())
                                    )
                                })
                                .collect();
                            line.push_str(&headers.join(","));
                        }
                    }
                }
                line.push('\n');
                line
            }
        }
    }
}

fn text(bytes: Option<&[u8]>) -> String {
    bytes.map_or_else(String::new, |b| String::from_utf8_lossy(b).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn record() -> ConsumerRecord {
        ConsumerRecord {
            topic: "orders".into(),
            partition: 2,
            offset: 41,
            timestamp: 1_700_000_000_000,
            key: Some(Bytes::from_static(b"k")),
            value: Some(Bytes::from_static(b"v\"1")),
            headers: vec![weir_client::producer::Header {
                key: Bytes::from_static(b"h"),
                value: None,
            }],
        }
    }

    #[test]
    fn templates_fill_every_field() {
        let format = RecordFormat::parse(
            "{topic}/{partition}@{offset}\\t{key}={value} [{headers}] {timestamp} {{x}}",
        )
        .unwrap();
        assert_eq!(
            format.render(&record()),
            "orders/2@41\tk=v\"1 [h=] 1700000000000 {x}\n"
        );
        let mut tombstone = record();
        tombstone.value = None;
        assert_eq!(
            RecordFormat::parse("{value}|").unwrap().render(&tombstone),
            "|\n"
        );
    }

    #[test]
    fn bad_templates_name_the_problem() {
        assert!(
            RecordFormat::parse("{nope}")
                .unwrap_err()
                .contains("{nope}")
        );
        assert!(
            RecordFormat::parse("{value")
                .unwrap_err()
                .contains("unclosed")
        );
    }

    #[test]
    fn json_is_one_object_per_line() {
        let line = RecordFormat::Json.render(&record());
        assert!(line.ends_with('\n') && !line.trim_end().contains('\n'));
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["offset"], 41);
        assert_eq!(value["value"], "v\"1");
        assert_eq!(value["headers"][0]["value"], serde_json::Value::Null);
    }
}
