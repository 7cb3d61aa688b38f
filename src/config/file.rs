//! The shadowsocks-libev JSON config file (`-c FILE`), read into untyped-but-checked values.
//!
//! Everything a file says is checked here against the same rules as the command line, so an
//! error can name both the key and the file. Which values are required depends on the mode and on
//! the command line, so that is decided later, in `merge`.
//!
//! `parse_json_config` is pure and total: any text gives `Ok` or `Err`, never a panic (it is a
//! fuzz target). File reading is separate, in `read_config_file`.

use super::json::{self, Number, Value};
use super::options::{self, Rule, OPTIONS};
use super::server_entry::{entry_from_json, parse_ss_url, ServerEntry};
use super::value::{self, HostPort, IntRule, Secret, Val};
use super::Transport;
use crate::quote::Quoted;
use std::io::Read;
use std::net::SocketAddr;
use std::path::Path;

/// What a config file said: checked values by JSON key (absent and `null` keys are not
/// there), and notes about the keys that were not used.
#[derive(Clone, Debug, Default)]
pub struct FileConfig {
    pub values: Vec<(&'static str, Val)>,
    /// One message per key we did not use that changes behaviour; logged at warn level.
    pub warnings: Vec<String>,
    /// Keys of other Shadowsocks programs (ss-manager, Python) that make no difference here;
    /// logged at debug level only.
    pub ignored: Vec<String>,
}

impl FileConfig {
    pub fn get(&self, key: &str) -> Option<&Val> {
        self.values.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }
}

/// Keys other Shadowsocks programs write whose absence here changes nothing users rely on:
/// ss-manager/multi-user keys, the Python server's workers, and socket tuning knobs.
const HARMLESS_KEYS: &[&str] = &[
    "workers",
    "manager_address",
    "workdir",
    "port_password",
    "remarks",
    "mptcp",
    "dscp",
    "tcp_incoming_sndbuf",
    "tcp_incoming_rcvbuf",
    "tcp_outgoing_sndbuf",
    "tcp_outgoing_rcvbuf",
];

/// Keys libev honours that we do not (yet): warn, because traffic is handled differently.
const UNSUPPORTED_KEYS: &[(&str, &str)] = &[
    (
        "acl",
        "access control lists are not supported; all traffic is treated alike",
    ),
    (
        "auth",
        "one-time auth was removed from Shadowsocks; AEAD ciphers authenticate every chunk",
    ),
];

/// libev rejects bigger files too; this also bounds what a mistaken `-c /dev/zero` reads.
pub const MAX_FILE_SIZE: u64 = 1 << 20;

/// Reads and parses `path`. Every error is one line starting with `config PATH: `.
pub fn read_config_file(path: &Path) -> Result<FileConfig, String> {
    let fail = |msg: String| format!("config {}: {msg}", path.display());
    let file = std::fs::File::open(path).map_err(|e| fail(format!("cannot open: {e}")))?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_SIZE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| fail(format!("cannot read: {e}")))?;
    if bytes.len() as u64 > MAX_FILE_SIZE {
        return Err(fail(format!(
            "larger than {MAX_FILE_SIZE} bytes; is this the right file?"
        )));
    }
    let text = String::from_utf8(bytes).map_err(|_| fail("is not UTF-8 text".into()))?;
    parse_json_config(&text).map_err(fail)
}

/// Parses the text of a libev JSON config. Errors name the key; the caller adds the file.
pub fn parse_json_config(text: &str) -> Result<FileConfig, String> {
    let clean = strip_comments(text.strip_prefix('\u{feff}').unwrap_or(text))?;
    if clean.trim().is_empty() {
        return Err("is empty; expected a JSON object such as {\"server\": \"…\", …}".into());
    }
    let value = json::parse(&clean).ok_or_else(|| {
        "is not valid JSON (look for a missing comma, quote or brace)".to_string()
    })?;
    let Value::Object(obj) = value else {
        return Err(format!(
            "must be a JSON object {{ … }}, got {}",
            describe(&value, false)
        ));
    };
    let mut fc = FileConfig::default();
    let mut misspelt = Vec::new();
    for (key, v) in obj.iter() {
        // libev treats null as "not set" for every key.
        if matches!(v, Value::Null) {
            continue;
        }
        match options::by_key(key) {
            Some(o) => {
                if let Some(val) = read_value(o.rule, key, v)? {
                    fc.values.push((o.key.unwrap_or_default(), val));
                }
            }
            None => misspelt.extend(note_unused(&mut fc, key)),
        }
    }
    // A near miss of a key that changes behaviour is an error only when the real key is
    // absent: then the file means something other than what it says.
    for (key, meant, why) in misspelt {
        let msg = format!(
            "unknown key {} (did you mean {}?)",
            Quoted(&key),
            Quoted(meant)
        );
        if obj.get(meant).is_some() {
            fc.warnings.push(format!("{msg}; ignored"));
        } else {
            return Err(format!("{msg}; {why}"));
        }
    }
    Ok(fc)
}

/// Checks one value by its option's rule. `None`: the value means "not set".
fn read_value(rule: Rule, key: &str, v: &Value) -> Result<Option<Val>, String> {
    Ok(Some(match rule {
        Rule::Switch => Val::Bool(boolean(key, v)?),
        Rule::Port => Val::Num(u64::from(port(key, v)?)),
        Rule::Host => Val::Text(host(key, v)?),
        Rule::Hosts => Val::Hosts(hosts(key, v)?),
        Rule::Int(r) => Val::Num(int(key, v, r)?),
        Rule::Secret => Val::Secret(Secret::new(nonempty(key, v, true)?)),
        Rule::Text => Val::Text(nonempty(key, v, false)?),
        // libev: an empty plugin means no plugin (UCI front ends write "").
        Rule::OptionalText => match string(key, v, false)? {
            s if s.is_empty() => return Ok(None),
            s => Val::Text(s),
        },
        Rule::Interface => {
            let s = string(key, v, false)?;
            Val::Text(value::parse_interface(&s).map_err(|e| format!("{} {e}", Quoted(key)))?)
        }
        Rule::Transport => Val::Transport(transport(key, v)?),
        Rule::Nameservers => Val::Nameservers(nameservers(key, v)?),
        Rule::Args => Val::Args(args(key, v)?),
        Rule::Users => Val::Users(users(key, v)?),
        Rule::Entries => Val::Entries(entries(key, v)?),
        Rule::Links => Val::Entries(links(key, v)?),
    }))
}

/// Records why `key` is not used. A near miss of a guarded key is returned instead, for the
/// caller to decide between warning and error.
fn note_unused(fc: &mut FileConfig, key: &str) -> Option<(String, &'static str, &'static str)> {
    if HARMLESS_KEYS.contains(&key) || key.starts_with('_') {
        // A leading underscore is the usual JSON idiom for a comment key ("_comment").
        fc.ignored
            .push(format!("key {} is not used by this program", Quoted(key)));
        return None;
    }
    if let Some((_, why)) = UNSUPPORTED_KEYS.iter().find(|(k, _)| *k == key) {
        fc.warnings
            .push(format!("key {} ignored: {why}", Quoted(key)));
        return None;
    }
    let meant = options::closest(key, OPTIONS.iter().filter_map(|o| o.key));
    let guard = meant.and_then(options::by_key).and_then(|o| o.guard);
    match (meant, guard) {
        (Some(m), Some(why)) => Some((key.to_string(), m, why)),
        (Some(m), None) => {
            fc.warnings.push(format!(
                "unknown key {} ignored (did you mean {}?)",
                Quoted(key),
                Quoted(m)
            ));
            None
        }
        (None, _) => {
            fc.warnings
                .push(format!("unknown key {} ignored", Quoted(key)));
            None
        }
    }
}

/// How a value is shown in an error. Secrets are only described by type.
fn describe(v: &Value, secret: bool) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(_) if secret => "a number".into(),
        Value::Number(n) => n.to_string(),
        Value::String(_) if secret => "a string".into(),
        Value::String(s) => {
            // Keep the error one short line even for a pasted blob.
            let shown: String = s.chars().take(60).collect();
            let more = if shown.len() < s.len() { "…" } else { "" };
            format!("{}{more}", Quoted(&shown))
        }
        Value::Array(_) => "a list".into(),
        Value::Object(_) => "an object".into(),
    }
}

fn type_error(key: &str, what: &str, v: &Value, secret: bool) -> String {
    format!(
        "{} must be {what}, got {}",
        Quoted(key),
        describe(v, secret)
    )
}

/// libev's `to_string`: strings, and integers as their decimal text (people write
/// `"password": 12345678`).
fn string(key: &str, v: &Value, secret: bool) -> Result<String, String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(Number::U64(n)) => Ok(n.to_string()),
        Value::Number(Number::I64(n)) => Ok(n.to_string()),
        _ => Err(type_error(key, "a string", v, secret)),
    }
}

fn nonempty(key: &str, v: &Value, secret: bool) -> Result<String, String> {
    let s = string(key, v, secret)?;
    if s.is_empty() {
        return Err(format!(
            "{} must not be empty (remove the key instead)",
            Quoted(key)
        ));
    }
    Ok(s)
}

fn host(key: &str, v: &Value) -> Result<String, String> {
    let s = string(key, v, false)?;
    value::check_host(&s).map_err(|e| format!("{} {e}, got {}", Quoted(key), describe(v, false)))
}

fn hosts(key: &str, v: &Value) -> Result<Vec<HostPort>, String> {
    let one = |item: &Value| -> Result<HostPort, String> {
        let what = "a host name or address, or a list of them";
        let s = string(key, item, false).map_err(|_| type_error(key, what, item, false))?;
        value::parse_host_port(&s)
            .map_err(|e| format!("{} {e}, got {}", Quoted(key), describe(item, false)))
    };
    match v {
        Value::Array(items) => {
            if items.is_empty() {
                return Err(format!(
                    "{} is an empty list (remove the key instead)",
                    Quoted(key)
                ));
            }
            // Loops, not `collect` into a `Result`: each of those is a copy of the adapter.
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                out.push(one(item)?);
            }
            Ok(out)
        }
        _ => Ok(vec![one(v)?]),
    }
}

fn nameservers(key: &str, v: &Value) -> Result<Vec<SocketAddr>, String> {
    let items: Vec<&Value> = match v {
        Value::Array(items) => items.iter().collect(),
        _ => vec![v],
    };
    let mut out = Vec::new();
    for item in items {
        let s = string(key, item, false)?;
        // libev passes the string to c-ares, which takes a comma-separated list.
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let ns = value::parse_nameserver(part)
                .map_err(|e| format!("{} {e}, got {}", Quoted(key), Quoted(part)))?;
            out.push(ns);
        }
    }
    if out.is_empty() {
        return Err(format!(
            "{} must not be empty (remove the key instead)",
            Quoted(key)
        ));
    }
    Ok(out)
}

/// A program's extra arguments: a list of strings, or one string as one argument.
fn args(key: &str, v: &Value) -> Result<Vec<String>, String> {
    match v {
        Value::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                out.push(string(key, item, false)?);
            }
            Ok(out)
        }
        _ => Ok(vec![string(key, v, false)?]),
    }
}

/// `[{"server": …, …}, …]`; an entry that is wrong is an error naming it (in a server list it
/// would be skipped: this is the user's own file).
fn entries(key: &str, v: &Value) -> Result<Vec<ServerEntry>, String> {
    let Value::Array(items) = v else {
        return Err(type_error(key, "a list of server objects", v, false));
    };
    let mut out = Vec::with_capacity(items.len());
    for (n, item) in items.iter().enumerate() {
        match entry_from_json(item) {
            Ok(e) => out.push(e),
            Err(e) => return Err(format!("{} entry {}: {e}", Quoted(key), n + 1)),
        }
    }
    Ok(out)
}

/// One `ss://` link or a list of them.
fn links(key: &str, v: &Value) -> Result<Vec<ServerEntry>, String> {
    let items = match v {
        Value::Array(items) => items.as_slice(),
        single => std::slice::from_ref(single),
    };
    let mut out = Vec::with_capacity(items.len());
    for (n, item) in items.iter().enumerate() {
        let Value::String(s) = item else {
            return Err(type_error(
                key,
                "an ss:// link or a list of them",
                item,
                false,
            ));
        };
        match parse_ss_url(s) {
            Ok(e) => out.push(e),
            Err(e) => return Err(format!("{} entry {}: {e}", Quoted(key), n + 1)),
        }
    }
    Ok(out)
}

/// `[{"name": "alice", "password": "…"}, …]`, as shadowsocks-rust takes it; other keys in an
/// entry are ignored.
fn users(key: &str, v: &Value) -> Result<Vec<(String, Secret)>, String> {
    let Value::Array(items) = v else {
        return Err(type_error(
            key,
            "a list of {\"name\": …, \"password\": …}",
            v,
            false,
        ));
    };
    let mut out = Vec::new();
    for (n, item) in items.iter().enumerate() {
        let field = |f: &str| match item {
            Value::Object(o) => match o.get(f) {
                Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
                _ => None,
            },
            _ => None,
        };
        match (field("name"), field("password")) {
            (Some(name), Some(pw)) => out.push((name, Secret::new(pw))),
            _ => {
                return Err(format!(
                    "{} entry {} must have a non-empty \"name\" and \"password\"",
                    Quoted(key),
                    n + 1
                ))
            }
        }
    }
    Ok(out)
}

fn boolean(key: &str, v: &Value) -> Result<bool, String> {
    match v {
        Value::Bool(b) => Ok(*b),
        _ => Err(type_error(key, "true or false", v, false)),
    }
}

/// Integers or numeric strings: libev's `to_string` accepts both, and configs in the wild
/// have `"server_port": "8388"`.
fn int(key: &str, v: &Value, rule: &IntRule) -> Result<u64, String> {
    let checked = match v {
        Value::Number(Number::U64(n)) => rule.check(*n),
        Value::String(s) => rule.parse(s),
        _ => Err(String::new()),
    };
    checked.map_err(|_| type_error(key, rule.what, v, false))
}

fn port(key: &str, v: &Value) -> Result<u16, String> {
    let n = int(key, v, &value::PORT)?;
    u16::try_from(n).map_err(|_| type_error(key, value::PORT.what, v, false))
}

fn transport(key: &str, v: &Value) -> Result<Transport, String> {
    match v {
        Value::String(s) => value::parse_transport(s),
        _ => value::parse_transport(""),
    }
    .map_err(|e| format!("{} {e}, got {}", Quoted(key), describe(v, false)))
}

/// Removes `//` and `/* */` comments outside strings (hand-edited libev configs have them) and
/// trailing commas before `}`/`]` (so do hand-edited lists). Comments become spaces, keeping
/// newlines, so the text's shape is unchanged.
pub fn strip_comments(text: &str) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    let mut in_string = false;
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            match c {
                '\\' => {
                    if let Some(escaped) = chars.next() {
                        out.push(escaped);
                    }
                }
                '"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match (c, chars.peek()) {
            ('"', _) => {
                in_string = true;
                out.push(c);
            }
            ('/', Some('/')) => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            ('/', Some('*')) => {
                chars.next();
                let mut prev = '\0';
                let mut closed = false;
                for c in chars.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                    }
                    if prev == '*' && c == '/' {
                        closed = true;
                        break;
                    }
                    prev = c;
                }
                if !closed {
                    return Err("has a /* comment that is never closed with */".into());
                }
                out.push(' ');
            }
            _ => out.push(c),
        }
    }
    Ok(drop_trailing_commas(&out))
}

fn drop_trailing_commas(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_string = false;
    let mut escaped = false;
    for (i, c) in text.char_indices() {
        if in_string {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
            out.push(c);
            continue;
        }
        if c == '"' {
            in_string = true;
        }
        if c == ',' {
            let next = text
                .get(i + 1..)
                .and_then(|rest| rest.chars().find(|c| !c.is_whitespace()));
            if matches!(next, Some('}') | Some(']')) {
                out.push(' ');
                continue;
            }
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Transport;

    // Typed views of what the file said, so assertions read like the old field accesses.
    fn hosts_of(fc: &FileConfig, k: &str) -> Vec<HostPort> {
        match fc.get(k) {
            Some(Val::Hosts(h)) => h.clone(),
            _ => Vec::new(),
        }
    }
    fn text_of<'a>(fc: &'a FileConfig, k: &str) -> Option<&'a str> {
        match fc.get(k) {
            Some(Val::Text(s)) => Some(s),
            _ => None,
        }
    }
    fn secret_of<'a>(fc: &'a FileConfig, k: &str) -> Option<&'a str> {
        match fc.get(k) {
            Some(Val::Secret(s)) => Some(s.expose()),
            _ => None,
        }
    }
    fn num_of(fc: &FileConfig, k: &str) -> Option<u64> {
        match fc.get(k) {
            Some(Val::Num(n)) => Some(*n),
            _ => None,
        }
    }
    fn bool_of(fc: &FileConfig, k: &str) -> Option<bool> {
        match fc.get(k) {
            Some(Val::Bool(b)) => Some(*b),
            _ => None,
        }
    }
    fn mode_of(fc: &FileConfig) -> Option<Transport> {
        match fc.get("mode") {
            Some(Val::Transport(t)) => Some(*t),
            _ => None,
        }
    }
    fn nameservers_of(fc: &FileConfig) -> Vec<String> {
        match fc.get("nameserver") {
            Some(Val::Nameservers(n)) => n.iter().map(|a| a.to_string()).collect(),
            _ => Vec::new(),
        }
    }

    fn parse(text: &str) -> FileConfig {
        match parse_json_config(text) {
            Ok(fc) => fc,
            Err(e) => panic!("{text}: {e}"),
        }
    }

    fn err(text: &str) -> String {
        match parse_json_config(text) {
            Ok(fc) => panic!("{text}: accepted as {fc:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn typical_libev_file() {
        let fc = parse(
            r#"{
                "server": "203.0.113.5",
                "server_port": 8388,
                "local_address": "0.0.0.0",
                "local_port": 1080,
                "password": "hunter2",
                "method": "aes-256-gcm",
                "timeout": 300,
                "mode": "tcp_and_udp",
                "fast_open": true,
                "use_syslog": true,
                "ipv6_first": false,
                "reuse_port": true,
                "user": "nobody"
            }"#,
        );
        assert_eq!(
            hosts_of(&fc, "server"),
            vec![HostPort {
                host: "203.0.113.5".into(),
                port: None
            }]
        );
        assert_eq!(num_of(&fc, "server_port"), Some(8388));
        assert_eq!(text_of(&fc, "local_address"), Some("0.0.0.0"));
        assert_eq!(num_of(&fc, "local_port"), Some(1080));
        assert_eq!(secret_of(&fc, "password"), Some("hunter2"));
        assert_eq!(text_of(&fc, "method"), Some("aes-256-gcm"));
        assert_eq!(num_of(&fc, "timeout"), Some(300));
        assert_eq!(mode_of(&fc), Some(Transport::TcpAndUdp));
        assert_eq!(bool_of(&fc, "fast_open"), Some(true));
        assert_eq!(bool_of(&fc, "use_syslog"), Some(true));
        assert_eq!(bool_of(&fc, "ipv6_first"), Some(false));
        assert_eq!(bool_of(&fc, "reuse_port"), Some(true));
        assert_eq!(text_of(&fc, "user"), Some("nobody"));
        assert!(fc.warnings.is_empty());
        assert!(!format!("{fc:?}").contains("hunter2"));
    }

    #[test]
    fn comments_and_trailing_commas() {
        let fc = parse(
            "// leading comment\n{\n  \"plugin_opts\": \"path=/a//b\", // not a comment inside\n  \
             /* block\n comment */ \"password\": \"p/*x*/\\\"q\",\n  \"server_port\": 1,\n}\n",
        );
        assert_eq!(text_of(&fc, "plugin_opts"), Some("path=/a//b"));
        assert_eq!(secret_of(&fc, "password"), Some("p/*x*/\"q"));
        assert_eq!(num_of(&fc, "server_port"), Some(1));
        let fc = parse("{\"server\": [\"a\", \"b\",\n ],}");
        assert_eq!(hosts_of(&fc, "server").len(), 2);
        assert!(err("{ /* never closed").contains("never closed"));
    }

    #[test]
    fn bom_is_skipped() {
        assert_eq!(
            num_of(&parse("\u{feff}{\"local_port\": 1}"), "local_port"),
            Some(1)
        );
    }

    #[test]
    fn server_string_array_and_ports() {
        let fc =
            parse(r#"{"server": ["198.51.100.1", "[2001:db8::1]:8443", "ss.example:9000", "::"]}"#);
        let server = hosts_of(&fc, "server");
        let got: Vec<(&str, Option<u16>)> =
            server.iter().map(|h| (h.host.as_str(), h.port)).collect();
        assert_eq!(
            got,
            vec![
                ("198.51.100.1", None),
                ("2001:db8::1", Some(8443)),
                ("ss.example", Some(9000)),
                ("::", None)
            ]
        );
        assert!(err(r#"{"server": []}"#).contains("empty list"));
        assert!(err(r#"{"server": ""}"#).contains("\"server\" must not be empty"));
        assert!(err(r#"{"server": [true]}"#).starts_with("\"server\" must be a host name"));
    }

    #[test]
    fn numbers_as_strings() {
        let fc = parse(
            r#"{"server_port": "8388", "local_port": " 1080 ", "timeout": "60", "fwmark": "0xff"}"#,
        );
        assert_eq!(num_of(&fc, "server_port"), Some(8388));
        assert_eq!(num_of(&fc, "local_port"), Some(1080));
        assert_eq!(num_of(&fc, "timeout"), Some(60));
        assert_eq!(num_of(&fc, "fwmark"), Some(255));
    }

    #[test]
    fn wrong_types_name_the_key() {
        assert_eq!(
            err(r#"{"server_port": "abc"}"#),
            "\"server_port\" must be a port number (1-65535), got \"abc\""
        );
        assert_eq!(
            err(r#"{"server_port": 70000}"#),
            "\"server_port\" must be a port number (1-65535), got 70000"
        );
        assert!(err(r#"{"local_port": -1}"#).starts_with("\"local_port\" must be a port"));
        assert!(err(r#"{"local_port": 1.5}"#).starts_with("\"local_port\" must be a port"));
        // A number that is not an integer is quoted as written.
        assert_eq!(
            err(r#"{"local_port": 1.08E3}"#),
            "\"local_port\" must be a port number (1-65535), got 1.08E3"
        );
        assert_eq!(
            err(r#"{"fast_open": "yes"}"#),
            "\"fast_open\" must be true or false, got \"yes\""
        );
        assert!(err(r#"{"timeout": 0}"#).starts_with("\"timeout\" must be a number of seconds"));
        assert!(err(r#"{"mode": "tcp"}"#).starts_with("\"mode\" must be \"tcp_only\""));
        assert!(err(r#"{"method": ["x"]}"#).starts_with("\"method\" must be a string"));
        assert!(err(r#"{"pool_blocks": 0}"#).starts_with("\"pool_blocks\""));
        assert!(err(r#"{"local_address": "1.2.3.4:5"}"#).starts_with("\"local_address\""));
    }

    #[test]
    fn server_defence_keys() {
        let fc = parse(
            r#"{"replay_capacity": 131072, "ban_failures": 0, "ban_window": "30",
                "ban_time": 600, "allow_private_targets": true}"#,
        );
        assert_eq!(num_of(&fc, "replay_capacity"), Some(131_072));
        assert_eq!(num_of(&fc, "ban_failures"), Some(0));
        assert_eq!(
            (num_of(&fc, "ban_window"), num_of(&fc, "ban_time")),
            (Some(30), Some(600))
        );
        assert_eq!(bool_of(&fc, "allow_private_targets"), Some(true));
        assert!(fc.warnings.is_empty());
        let fc = parse(r#"{"ban_failures": null, "allow_private_targets": null}"#);
        assert_eq!(
            (
                num_of(&fc, "ban_failures"),
                bool_of(&fc, "allow_private_targets")
            ),
            (None, None)
        );

        assert_eq!(
            err(r#"{"replay_capacity": 0}"#),
            "\"replay_capacity\" must be a salt count (1-4194304), got 0"
        );
        assert!(err(r#"{"replay_capacity": 5000000}"#).starts_with("\"replay_capacity\""));
        assert!(err(r#"{"replay_capacity": [1]}"#).starts_with("\"replay_capacity\""));
        assert!(err(r#"{"ban_failures": -1}"#).starts_with("\"ban_failures\" must be a failure"));
        assert!(err(r#"{"ban_failures": 2.5}"#).starts_with("\"ban_failures\""));
        assert!(err(r#"{"ban_window": 0}"#).starts_with("\"ban_window\" must be a number of"));
        assert!(err(r#"{"ban_time": true}"#).starts_with("\"ban_time\" must be a number of"));
        assert_eq!(
            err(r#"{"allow_private_targets": "yes"}"#),
            "\"allow_private_targets\" must be true or false, got \"yes\""
        );
        assert_eq!(
            parse(r#"{"ban-time": 1}"#).warnings,
            vec!["unknown key \"ban-time\" ignored (did you mean \"ban_time\"?)".to_string()]
        );
    }

    #[test]
    fn secrets_are_not_echoed() {
        let e = err(r#"{"password": true}"#);
        assert_eq!(e, "\"password\" must be a string, got true");
        let e = err(r#"{"key": {"a": "sekrit"}}"#);
        assert!(!e.contains("sekrit"), "{e}");
        // Integers are accepted as passwords, as libev does.
        let fc = parse(r#"{"password": 12345678}"#);
        assert_eq!(secret_of(&fc, "password"), Some("12345678"));
    }

    #[test]
    fn null_means_absent() {
        let fc = parse(r#"{"server": null, "plugin": "", "mode": null}"#);
        assert!(hosts_of(&fc, "server").is_empty());
        assert_eq!(fc.get("plugin"), None);
        assert_eq!(mode_of(&fc), None);
    }

    #[test]
    fn unknown_keys_warn_once_each() {
        let fc = parse(
            r#"{"fast-open": 1, "bogus": 2, "acl": "/etc/x.acl", "workers": 4, "_comment": "x"}"#,
        );
        assert_eq!(
            fc.warnings,
            vec![
                "key \"acl\" ignored: access control lists are not supported; all traffic is \
                 treated alike"
                    .to_string(),
                "unknown key \"bogus\" ignored".to_string(),
                "unknown key \"fast-open\" ignored (did you mean \"fast_open\"?)".to_string(),
            ]
        );
        assert_eq!(fc.ignored.len(), 2);
    }

    #[test]
    fn misspelt_keys_that_matter_are_errors() {
        assert_eq!(
            err(r#"{"methd": "aes-256-gcm", "password": "x"}"#),
            "unknown key \"methd\" (did you mean \"method\"?); a misspelt method would \
             silently use the default cipher"
        );
        assert!(err(r#"{"server-port": 1}"#)
            .starts_with("unknown key \"server-port\" (did you mean \"server_port\"?); "));
        assert!(err(r#"{"Password": "x"}"#).contains("did you mean \"password\""));
        assert!(err(r#"{"plugin_opt": "x"}"#).contains("did you mean \"plugin_opts\""));
        // The value of a misspelt secret is never shown.
        assert!(!err(r#"{"pasword": "hunter2"}"#).contains("hunter2"));
        // With the real key present too, the stray one is only a warning.
        let fc = parse(r#"{"method": "aes-256-gcm", "methd": "aes-128-gcm"}"#);
        assert_eq!(
            fc.warnings,
            vec!["unknown key \"methd\" (did you mean \"method\"?); ignored".to_string()]
        );
        assert_eq!(text_of(&fc, "method"), Some("aes-256-gcm"));
    }

    #[test]
    fn nameserver_forms() {
        let fc = parse(r#"{"nameserver": "192.0.2.1, 192.0.2.2:5353"}"#);
        assert_eq!(nameservers_of(&fc), vec!["192.0.2.1:53", "192.0.2.2:5353"]);
        let fc = parse(r#"{"nameserver": ["2001:db8::1"]}"#);
        assert_eq!(nameservers_of(&fc), vec!["[2001:db8::1]:53"]);
        assert!(err(r#"{"nameserver": "dns.example"}"#).starts_with("\"nameserver\""));
    }

    #[test]
    fn syntax_errors_and_non_objects() {
        assert!(err("{\"server\": \"x\" \"server_port\": 1}").contains("not valid JSON"));
        assert!(err("").contains("is empty"));
        assert!(err("   // only a comment\n").contains("is empty"));
        assert_eq!(err("[1]"), "must be a JSON object { … }, got a list");
        assert!(err("\"x").contains("not valid JSON"));
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A cheap stand-in for the fuzz target: every prefix of tricky inputs.
        let samples = [
            "{\"server\":[\"[::1]:\",\"a:b:c\",{}],\"key\":\"\\u0000\"}",
            "{\"timeout\": 18446744073709551616, \"mtu\": -0, \"a\": [[[[[[[[]]]]]]]]}",
            "/*/ */{\"x\":\"\\\"//\"}//",
            "{\"server_port\": 1e3, \"local_port\": \"0x\", \"nameserver\": \",,\"}",
        ];
        for s in samples {
            for (i, _) in s.char_indices() {
                let _ = parse_json_config(&s[..i]);
            }
        }
        let deep = "[".repeat(100_000);
        let _ = parse_json_config(&deep);
    }

    #[test]
    fn mutated_configs_never_panic() {
        let base = br#"{"server":["[2001:db8::1]:8388","h:1"],"server_port":"8388", /* c */
            "local_port":1080,"password":"p\"w","key":"AAAA","mode":"tcp_and_udp",
            "fast_open":true,"mtu":1500,"nameserver":"192.0.2.1,[::1]:53","fwmark":"0x10",
            "timeout":60,"tunnel_address":"x:1",} // end"#;
        let alphabet = b"{}[]\",:/*\\ 0123456789-.eE[]tfnu\x00\xff";
        // A small xorshift keeps the test deterministic without a dependency.
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..20_000 {
            let mut bytes = base.to_vec();
            for _ in 0..(next() % 4 + 1) {
                let pos = (next() as usize) % bytes.len();
                let b = alphabet[(next() as usize) % alphabet.len()];
                match next() % 3 {
                    0 => bytes[pos] = b,
                    1 => bytes.insert(pos, b),
                    _ => {
                        bytes.remove(pos);
                    }
                }
            }
            let _ = parse_json_config(&String::from_utf8_lossy(&bytes));
        }
    }

    #[test]
    fn file_errors_name_the_file() {
        let path = std::env::temp_dir().join(format!("ss-smol-file-{}.json", std::process::id()));
        std::fs::write(&path, "{\"server_port\": \"abc\"}").unwrap();
        let e = read_config_file(&path).unwrap_err();
        assert_eq!(
            e,
            format!(
                "config {}: \"server_port\" must be a port number (1-65535), got \"abc\"",
                path.display()
            )
        );
        std::fs::write(&path, "{nope").unwrap();
        let e = read_config_file(&path).unwrap_err();
        assert!(
            e.starts_with(&format!("config {}: ", path.display())),
            "{e}"
        );
        std::fs::remove_file(&path).unwrap();
        let e = read_config_file(&path).unwrap_err();
        assert!(e.contains("cannot open"), "{e}");
    }
}
