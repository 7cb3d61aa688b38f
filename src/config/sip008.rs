//! SIP008 server lists: the JSON document providers serve (fetched outside the binary, e.g. by
//! the OpenWrt package's cron job) and `--server-list FILE` reads.
//!
//! ```text
//! {
//!   "version": 1,                       optional; another version is refused
//!   "servers": [                        each entry as `server_entry::entry_from_json` reads it
//!     {"id": "…", "remarks": "Tokyo", "server": "…", "server_port": 8388,
//!      "password": "…", "method": "…", "plugin": "…", "plugin_opts": "…"},
//!     …
//!   ],
//!   "bytes_used": …, "bytes_remaining": …      ignored
//! }
//! ```
//!
//! A document that is not one is an error; an entry that is wrong is skipped with a warning
//! naming its place (and remarks), so one bad server does not cost the others.

use super::json::{self, Number, Value};
use super::server_entry::{entry_from_json, ServerEntry};
use crate::quote::Quoted;

/// The entries of a SIP008 document, and one warning per entry left out.
pub fn parse_sip008(text: &str) -> Result<(Vec<ServerEntry>, Vec<String>), String> {
    let Some(Value::Object(doc)) = json::parse(text) else {
        return Err("not a SIP008 document (a JSON object with \"servers\")".into());
    };
    match doc.get("version") {
        None | Some(Value::Null) | Some(Value::Number(Number::U64(1))) => {}
        Some(Value::Number(n)) => return Err(format!("\"version\" {n} is not supported (only 1)")),
        Some(_) => return Err("\"version\": must be a number".into()),
    }
    let Some(Value::Array(list)) = doc.get("servers") else {
        return Err("no \"servers\" list".into());
    };
    let (mut entries, mut warnings) = (Vec::new(), Vec::new());
    for (i, v) in list.iter().enumerate() {
        match entry_from_json(v) {
            Ok(e) => entries.push(e),
            Err(why) => {
                let remarks = match v {
                    Value::Object(m) => match m.get("remarks") {
                        Some(Value::String(r)) => format!(" ({})", Quoted(r)),
                        _ => String::new(),
                    },
                    _ => String::new(),
                };
                warnings.push(format!("server {}{remarks}: {why}; skipped", i + 1));
            }
        }
    }
    Ok((entries, warnings))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_entries_are_skipped_and_named() {
        let doc = r#"{"version": 1, "bytes_used": 5, "servers": [
            {"server": "192.0.2.1", "server_port": 8388, "method": "aes-128-gcm", "password": "a"},
            {"remarks": "Tokyo", "server": "192.0.2.2", "method": "aes-128-gcm", "password": "b"},
            7,
            {"server": "b.example", "server_port": "8389", "method": "aes-256-gcm",
             "password": "c", "plugin": "v2ray-plugin", "plugin_opts": "tls"}]}"#;
        let (entries, warnings) = parse_sip008(doc).unwrap();
        let hosts: Vec<&str> = entries.iter().map(|e| e.host.as_str()).collect();
        assert_eq!(hosts, ["192.0.2.1", "b.example"]);
        assert_eq!(entries[1].plugin.as_deref(), Some("v2ray-plugin"));
        assert_eq!(
            warnings,
            [
                "server 2 (\"Tokyo\"): \"server_port\": missing; skipped",
                "server 3: not an object; skipped"
            ]
        );
    }

    #[test]
    fn what_is_not_a_document_is_an_error() {
        for (text, want) in [
            ("", "not a SIP008"),
            ("[]", "not a SIP008"),
            ("{}", "no \"servers\""),
            (r#"{"servers": {}}"#, "no \"servers\""),
            (r#"{"version": 2, "servers": []}"#, "\"version\" 2"),
            (r#"{"version": "1", "servers": []}"#, "\"version\": must"),
        ] {
            let e = parse_sip008(text).unwrap_err();
            assert!(e.contains(want), "{text}: {e}");
        }
        assert_eq!(parse_sip008(r#"{"servers": []}"#).unwrap().0, []);
    }
}
