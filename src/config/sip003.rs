//! SIP003 plugin options: the `SS_PLUGIN_OPTIONS` text a plugin receives.
//!
//! ```text
//! obfs=http;obfs-host=example.com;fast-open
//! └key┘└val┘ └──key──┘ └───val───┘ └─key─┘   (a key may have no value)
//! ```
//!
//! Inside a key or a value, `\;`, `\=` and `\\` stand for `;`, `=` and `\`. A SIP002 link's
//! `plugin=` parameter is the plugin's name and its options in one text, split at the first
//! `;` that is not escaped (`obfs-local;obfs=http`). Options are passed on to the plugin as
//! written; they are parsed to check them and to read the few a launcher must know.

use std::fmt;

/// One `key[=value]` of the options.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PluginOpt {
    pub key: String,
    pub value: Option<String>,
}

/// Why options text does not parse.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OptsError {
    /// The text ends in a lone `\`.
    TrailingBackslash,
    /// `=value` with no key, or `;;`.
    EmptyKey { at: usize },
}

impl fmt::Display for OptsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OptsError::TrailingBackslash => {
                f.write_str("ends in a lone '\\' (write '\\\\' for a backslash)")
            }
            OptsError::EmptyKey { at } => write!(f, "option {} has no name", at + 1),
        }
    }
}

/// Parses `text` into its options, unescaping keys and values. An empty text has none.
pub fn parse(text: &str) -> Result<Vec<PluginOpt>, OptsError> {
    let mut opts = Vec::new();
    if text.is_empty() {
        return Ok(opts);
    }
    let mut key = String::new();
    let mut value: Option<String> = None;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        let literal = match c {
            '\\' => chars.next().ok_or(OptsError::TrailingBackslash)?,
            ';' => {
                finish(&mut opts, &mut key, &mut value)?;
                continue;
            }
            '=' if value.is_none() => {
                value = Some(String::new());
                continue;
            }
            c => c,
        };
        match &mut value {
            Some(v) => v.push(literal),
            None => key.push(literal),
        }
    }
    // A trailing ';' ends the last option rather than starting an empty one.
    if !key.is_empty() || value.is_some() {
        finish(&mut opts, &mut key, &mut value)?;
    }
    Ok(opts)
}

fn finish(
    opts: &mut Vec<PluginOpt>,
    key: &mut String,
    value: &mut Option<String>,
) -> Result<(), OptsError> {
    if key.is_empty() {
        return Err(OptsError::EmptyKey { at: opts.len() });
    }
    opts.push(PluginOpt {
        key: std::mem::take(key),
        value: value.take(),
    });
    Ok(())
}

/// The options as text, escaping what needs it: `parse(&encode(x)) == x`.
pub fn encode(opts: &[PluginOpt]) -> String {
    let mut out = String::new();
    for (i, opt) in opts.iter().enumerate() {
        if i > 0 {
            out.push(';');
        }
        escape_into(&mut out, &opt.key);
        if let Some(v) = &opt.value {
            out.push('=');
            escape_into(&mut out, v);
        }
    }
    out
}

fn escape_into(out: &mut String, text: &str) {
    for c in text.chars() {
        if matches!(c, ';' | '=' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
}

/// Splits a SIP002 `plugin=` value into the plugin's name and its options text (still
/// escaped, as the plugin gets it): `"obfs-local;obfs=http"` → `("obfs-local", "obfs=http")`.
pub fn split_plugin(spec: &str) -> (String, &str) {
    let mut name = String::new();
    let mut chars = spec.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => {
                if let Some((_, next)) = chars.next() {
                    name.push(next);
                }
            }
            ';' => return (name, spec.get(i + 1..).unwrap_or_default()),
            c => name.push(c),
        }
    }
    (name, "")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opt(key: &str, value: Option<&str>) -> PluginOpt {
        PluginOpt {
            key: key.into(),
            value: value.map(Into::into),
        }
    }

    #[test]
    fn the_sip003_example_parses_and_round_trips() {
        let text = "obfs=http;obfs-host=www.baidu.com";
        let opts = parse(text).unwrap();
        assert_eq!(
            opts,
            [
                opt("obfs", Some("http")),
                opt("obfs-host", Some("www.baidu.com"))
            ]
        );
        assert_eq!(encode(&opts), text);
    }

    #[test]
    fn escapes_stand_for_themselves_in_keys_and_values() {
        let text = r"path=/a\;b;k\=ey=v\=1\\;mode=websocket";
        let opts = parse(text).unwrap();
        assert_eq!(
            opts,
            [
                opt("path", Some("/a;b")),
                opt("k=ey", Some(r"v=1\")),
                opt("mode", Some("websocket")),
            ]
        );
        assert_eq!(encode(&opts), text);
        // An unescaped '=' inside a value is kept: only the first one separates.
        assert_eq!(parse("a=b=c").unwrap(), [opt("a", Some("b=c"))]);
        assert_eq!(encode(&parse("a=b=c").unwrap()), r"a=b\=c");
    }

    #[test]
    fn flags_without_values_and_empty_values_differ() {
        assert_eq!(
            parse("tls;host=").unwrap(),
            [opt("tls", None), opt("host", Some(""))]
        );
        assert_eq!(
            encode(&[opt("tls", None), opt("host", Some(""))]),
            "tls;host="
        );
        assert_eq!(parse("").unwrap(), []);
    }

    #[test]
    fn malformed_text_is_an_error_naming_why() {
        assert_eq!(parse(r"a=b\"), Err(OptsError::TrailingBackslash));
        assert_eq!(parse("a;;b"), Err(OptsError::EmptyKey { at: 1 }));
        assert_eq!(parse("=x"), Err(OptsError::EmptyKey { at: 0 }));
        assert_eq!(parse("a;").unwrap(), [opt("a", None)]);
        assert_eq!(
            OptsError::EmptyKey { at: 1 }.to_string(),
            "option 2 has no name"
        );
    }

    #[test]
    fn a_sip002_plugin_value_splits_at_the_first_unescaped_semicolon() {
        assert_eq!(
            split_plugin("obfs-local;obfs=http;obfs-host=example.com"),
            ("obfs-local".into(), "obfs=http;obfs-host=example.com")
        );
        assert_eq!(split_plugin("v2ray-plugin"), ("v2ray-plugin".into(), ""));
        assert_eq!(split_plugin(r"odd\;name;x=1"), ("odd;name".into(), "x=1"));
    }

    #[test]
    fn any_text_parses_or_fails_without_panicking() {
        for text in ["\\", ";", "=", "==", "\\\\", "a=\\;", "ü=ß;\\ü", "a\\"] {
            if let Ok(opts) = parse(text) {
                assert_eq!(parse(&encode(&opts)).unwrap(), opts, "{text:?}");
            }
        }
    }
}
