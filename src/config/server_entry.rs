//! One server as a provider hands it out: an `ss://` link (SIP002), an entry of a SIP008
//! document, or an object of the config file's `servers` array. Syntax only; the method and
//! key are checked by the caller (`config::servers`), the same way for all three.
//!
//! ```text
//! ss://USERINFO@HOST:PORT[/][?plugin=PLUGIN][#TAG]
//!      │        │         └ percent-encoded "name;opt=v;opt=v"     └ percent-encoded name
//!      │        └ name, IPv4, or [IPv6]
//!      └ base64url("method:password"), padding optional, or percent-encoded "method:password"
//!        (the form 2022 methods must use: their password is already base64)
//! ss://BASE64("method:password@host:port")[#TAG]      the older form, still emitted by some
//! ```
//!
//! Errors name what is wrong and never hold the password: a link is one secret as a whole, so
//! at most its host or tag is quoted.

use super::json::{Number, Value};
use super::value::decode_base64_key;
use crate::quote::Quoted;
use std::fmt;
use std::net::Ipv6Addr;

/// A server as a link, a server list or the `servers` array gives it.
#[derive(Clone, PartialEq, Eq)]
pub struct ServerEntry {
    /// As given; an IPv6 address without brackets.
    pub host: String,
    pub port: u16,
    pub method: String,
    /// The password, or for a 2022 method the base64 key.
    pub password: String,
    pub plugin: Option<String>,
    pub plugin_opts: Option<String>,
    pub remarks: Option<String>,
}

impl fmt::Debug for ServerEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the password.
        f.debug_struct("ServerEntry")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("method", &self.method)
            .field("plugin", &self.plugin)
            .field("plugin_opts", &self.plugin_opts)
            .field("remarks", &self.remarks)
            .finish_non_exhaustive()
    }
}

/// Reads an `ss://` link.
pub fn parse_ss_url(link: &str) -> Result<ServerEntry, String> {
    let rest = link
        .trim()
        .strip_prefix("ss://")
        .ok_or("not an ss:// link")?;
    let (rest, tag) = match rest.split_once('#') {
        Some((r, t)) => (
            r,
            Some(percent_decode(t).ok_or("bad %-escape in the #tag")?),
        ),
        None => (rest, None),
    };
    let remarks = tag.filter(|t| !t.is_empty());
    let Some((userinfo, hostpart)) = rest.rsplit_once('@') else {
        return legacy(rest, remarks);
    };
    let (hostport, query) = match hostpart.split_once('?') {
        Some((h, q)) => (h, Some(q)),
        None => (hostpart, None),
    };
    let hostport = hostport.strip_suffix('/').unwrap_or(hostport);
    let (host, port) = host_port(hostport)?;
    let creds = if userinfo.contains(':') || userinfo.contains('%') {
        percent_decode(userinfo).ok_or("bad %-escape in the method and password")?
    } else {
        let bytes = decode_base64_key(userinfo).ok_or("the method and password are not base64")?;
        String::from_utf8(bytes).map_err(|_| "the method and password are not text")?
    };
    let (method, password) = method_password(&creds)?;
    let (plugin, plugin_opts) = match query.and_then(plugin_param) {
        Some(p) => split_plugin(&percent_decode(p).ok_or("bad %-escape in plugin=")?),
        None => (None, None),
    };
    Ok(ServerEntry {
        host,
        port,
        method,
        password,
        plugin,
        plugin_opts,
        remarks,
    })
}

/// `ss://BASE64(method:password@host:port)`.
fn legacy(encoded: &str, remarks: Option<String>) -> Result<ServerEntry, String> {
    let encoded = encoded.strip_suffix('/').unwrap_or(encoded);
    let bytes = decode_base64_key(encoded).ok_or("no '@' before the host, and not base64")?;
    let text = String::from_utf8(bytes).map_err(|_| "the link does not decode to text")?;
    let (creds, hostport) = text
        .rsplit_once('@')
        .ok_or("no '@' between the password and the host")?;
    let (host, port) = host_port(hostport)?;
    let (method, password) = method_password(creds)?;
    Ok(ServerEntry {
        host,
        port,
        method,
        password,
        plugin: None,
        plugin_opts: None,
        remarks,
    })
}

fn method_password(creds: &str) -> Result<(String, String), String> {
    let (method, password) = creds
        .split_once(':')
        .ok_or("no ':' between the method and the password")?;
    if method.is_empty() {
        return Err("the method is empty".into());
    }
    if password.is_empty() {
        return Err("the password is empty".into());
    }
    Ok((method.to_string(), password.to_string()))
}

/// `host:port`, `[v6]:port`.
fn host_port(s: &str) -> Result<(String, u16), String> {
    let (host, port) = match s.strip_prefix('[') {
        Some(v6) => {
            let (addr, after) = v6
                .split_once(']')
                .ok_or("'[' without ']' around the host")?;
            addr.parse::<Ipv6Addr>()
                .map_err(|_| format!("{} is not an IPv6 address", Quoted(addr)))?;
            let port = after.strip_prefix(':').ok_or("no :PORT after the host")?;
            (addr, port)
        }
        None => {
            let (host, port) = s.rsplit_once(':').ok_or("no :PORT after the host")?;
            // An IPv6 address goes in brackets; nothing else a link could mean belongs in a name.
            if host.contains(|c: char| ":[]/?#@".contains(c) || c.is_whitespace() || c.is_control())
            {
                return Err(format!("{} is not a host name or address", Quoted(host)));
            }
            (host, port)
        }
    };
    if host.is_empty() {
        return Err("the host is empty".into());
    }
    let port = port
        .parse::<u16>()
        .ok()
        .filter(|&p| p > 0)
        .ok_or_else(|| format!("the port of {} is not 1-65535", Quoted(host)))?;
    Ok((host.to_string(), port))
}

/// The raw value of `plugin=` in a query.
fn plugin_param(query: &str) -> Option<&str> {
    query.split('&').find_map(|kv| kv.strip_prefix("plugin="))
}

/// `name;opts` → the program and its options (none when empty), split at the first
/// unescaped `;` as SIP003 escapes.
fn split_plugin(s: &str) -> (Option<String>, Option<String>) {
    let (name, opts) = super::sip003::split_plugin(s);
    if name.is_empty() {
        // Options of no plugin mean nothing.
        return (None, None);
    }
    let opts = (!opts.is_empty()).then(|| opts.to_string());
    (Some(name), opts)
}

/// `%XX` escapes to bytes; the result must be UTF-8. `+` stays `+`.
fn percent_decode(s: &str) -> Option<String> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        if b != b'%' {
            out.push(b);
            continue;
        }
        let hex = |c: Option<u8>| char::from(c?).to_digit(16);
        let (hi, lo) = (hex(bytes.next())?, hex(bytes.next())?);
        out.push((hi * 16 + lo) as u8);
    }
    String::from_utf8(out).ok()
}

/// Escapes everything but RFC 3986's unreserved characters.
fn percent_encode(s: &str, out: &mut String) {
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 15)]));
        }
    }
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// Writes `e` as an `ss://` link: percent-encoded userinfo for 2022 methods (SIP002 requires
/// it), base64url without padding for the others.
pub fn format_ss_url(e: &ServerEntry) -> String {
    let mut link = String::from("ss://");
    if e.method.starts_with("2022-") {
        percent_encode(&e.method, &mut link);
        link.push(':');
        percent_encode(&e.password, &mut link);
    } else {
        base64url(format!("{}:{}", e.method, e.password).as_bytes(), &mut link);
    }
    link.push('@');
    if e.host.contains(':') {
        link.push('[');
        link.push_str(&e.host);
        link.push(']');
    } else {
        link.push_str(&e.host);
    }
    link.push(':');
    link.push_str(&e.port.to_string());
    if let Some(p) = &e.plugin {
        link.push_str("/?plugin=");
        let mut value = String::new();
        for c in p.chars() {
            if matches!(c, ';' | '\\') {
                value.push('\\');
            }
            value.push(c);
        }
        if let Some(o) = &e.plugin_opts {
            value.push(';');
            value.push_str(o);
        }
        percent_encode(&value, &mut link);
    }
    if let Some(r) = &e.remarks {
        link.push('#');
        percent_encode(r, &mut link);
    }
    link
}

fn base64url(bytes: &[u8], out: &mut String) {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            let six = (n >> (18 - 6 * i)) & 63;
            out.push(char::from(ALPHABET[six as usize]));
        }
    }
}

/// `e` as a config file for it (the keys libev's clients read), for `ss-smol url LINK`.
pub fn to_json(e: &ServerEntry) -> String {
    let mut out = String::from("{\n    \"server\": ");
    json_string(&e.host, &mut out);
    out.push_str(",\n    \"server_port\": ");
    out.push_str(&e.port.to_string());
    let fields = [
        ("method", Some(&e.method)),
        ("password", Some(&e.password)),
        ("plugin", e.plugin.as_ref()),
        ("plugin_opts", e.plugin_opts.as_ref()),
        ("remarks", e.remarks.as_ref()),
    ];
    for (key, value) in fields {
        if let Some(v) = value {
            out.push_str(",\n    \"");
            out.push_str(key);
            out.push_str("\": ");
            json_string(v, &mut out);
        }
    }
    out.push_str("\n}");
    out
}

fn json_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 => {
                let b = c as u8;
                out.push_str("\\u00");
                out.push(char::from(HEX[usize::from(b >> 4)]));
                out.push(char::from(HEX[usize::from(b & 15)]));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// An object of the `servers` array (shadowsocks-rust's form) or of a SIP008 document:
/// `server`, `server_port`, `method`, `password`, `plugin`, `plugin_opts`, `remarks`; other
/// keys (`id`, usage counters) are ignored. Errors name the key.
pub fn entry_from_json(v: &Value) -> Result<ServerEntry, String> {
    let Value::Object(map) = v else {
        return Err("not an object".into());
    };
    let text = |key: &str| -> Result<Option<String>, String> {
        match map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(format!("\"{key}\": must be a string")),
        }
    };
    let required = |key: &str| -> Result<String, String> {
        text(key)?
            .filter(|s| !s.is_empty())
            .ok_or_else(|| format!("\"{key}\": missing"))
    };
    let port = match map.get("server_port") {
        Some(Value::Number(Number::U64(n))) => u16::try_from(*n).ok(),
        Some(Value::String(s)) => s.parse::<u16>().ok(),
        None | Some(Value::Null) => return Err("\"server_port\": missing".into()),
        Some(_) => None,
    }
    .filter(|&p| p > 0)
    .ok_or("\"server_port\": must be 1-65535")?;
    let host = required("server")?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .map_or(host.clone(), str::to_string);
    Ok(ServerEntry {
        host,
        port,
        method: required("method")?,
        password: required("password")?,
        plugin: text("plugin")?.filter(|s| !s.is_empty()),
        plugin_opts: text("plugin_opts")?.filter(|s| !s.is_empty()),
        remarks: text("remarks")?.filter(|s| !s.is_empty()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(host: &str, method: &str, password: &str) -> ServerEntry {
        ServerEntry {
            host: host.into(),
            port: 8888,
            method: method.into(),
            password: password.into(),
            plugin: None,
            plugin_opts: None,
            remarks: None,
        }
    }

    #[test]
    fn sip002_examples() {
        let e = parse_ss_url("ss://YWVzLTEyOC1nY206dGVzdA@192.168.100.1:8888#Example1").unwrap();
        assert_eq!(
            e,
            ServerEntry {
                remarks: Some("Example1".into()),
                ..entry("192.168.100.1", "aes-128-gcm", "test")
            }
        );
        let e = parse_ss_url(
            "ss://2022-blake3-aes-256-gcm:YctPZ6U7xPPcU%2Bgp3u%2BTrPZgBgTPhH2vTaMaP6WKaLI%3D\
             @192.168.100.1:8888#Example3",
        )
        .unwrap();
        assert_eq!(e.method, "2022-blake3-aes-256-gcm");
        assert_eq!(e.password, "YctPZ6U7xPPcU+gp3u+TrPZgBgTPhH2vTaMaP6WKaLI=");
        let e = parse_ss_url(
            "ss://cmM0LW1kNTpwYXNzd2Q@192.168.100.1:8888/?plugin=obfs-local%3Bobfs%3Dhttp%3B\
             obfs-host%3Dgoogle.com#Example2",
        )
        .unwrap();
        assert_eq!(e.method, "rc4-md5");
        assert_eq!(e.plugin.as_deref(), Some("obfs-local"));
        assert_eq!(
            e.plugin_opts.as_deref(),
            Some("obfs=http;obfs-host=google.com")
        );
        let e = parse_ss_url("ss://YWVzLTEyOC1nY206dGVzdA==@[2001:db8::1]:8388").unwrap();
        assert_eq!((e.host.as_str(), e.port), ("2001:db8::1", 8388));
        // The older whole-base64 form: "aes-128-gcm:test@192.0.2.1:8388".
        let e = parse_ss_url("ss://YWVzLTEyOC1nY206dGVzdEAxOTIuMC4yLjE6ODM4OA#old").unwrap();
        assert_eq!(e.host, "192.0.2.1");
        assert_eq!(e.remarks.as_deref(), Some("old"));
    }

    #[test]
    fn malformed_links_are_errors_without_the_password() {
        for bad in [
            "http://x",
            "ss://",
            "ss://YWVzLTEyOC1nY206dGVzdA@192.0.2.1",
            "ss://YWVzLTEyOC1nY206dGVzdA@192.0.2.1:0",
            "ss://YWVzLTEyOC1nY206dGVzdA@192.0.2.1:65536",
            "ss://YWVzLTEyOC1nY206dGVzdA@:8388",
            "ss://YWVzLTEyOC1nY206dGVzdA@[2001:db8::1:8388",
            "ss://YWVzLTEyOC1nY206dGVzdA@[nope]:8388",
            "ss://!!!@192.0.2.1:8388",
            "ss://aes-128-gcm:s3cret%zz@192.0.2.1:8388",
            "ss://aes-128-gcm@192.0.2.1:8388",
            "ss://:s3cret@192.0.2.1:8388",
            "ss://aes-128-gcm:@192.0.2.1:8388",
            "ss://aes-128-gcm:s3cret@192.0.2.1:8388#%",
            "ss://bm9wZQ",
        ] {
            let e = parse_ss_url(bad).unwrap_err();
            assert!(!e.contains("s3cret"), "{bad}: {e}");
        }
    }

    #[test]
    fn links_round_trip() {
        let passwords = [
            "p",
            "a:b@c",
            "100%",
            "#/?&=+ ;",
            "пароль",
            "YctPZ6U7xPPcU+gp3u+TrPZg=",
        ];
        let mut n = 0;
        for method in [
            "aes-256-gcm",
            "2022-blake3-aes-128-gcm",
            "chacha20-ietf-poly1305",
        ] {
            for pw in passwords {
                for host in ["example.com", "192.0.2.9", "2001:db8::7"] {
                    for plugin in [
                        None,
                        Some(("v2ray-plugin", None)),
                        Some(("obfs-local", Some("obfs=tls;a=b"))),
                    ] {
                        n += 1;
                        let e = ServerEntry {
                            plugin: plugin.map(|(p, _)| p.to_string()),
                            plugin_opts: plugin.and_then(|(_, o)| o.map(str::to_string)),
                            remarks: (n % 2 == 0).then(|| format!("tag #{n} ✓")),
                            ..entry(host, method, pw)
                        };
                        let link = format_ss_url(&e);
                        assert_eq!(parse_ss_url(&link).as_ref(), Ok(&e), "{link}");
                    }
                }
            }
        }
    }

    /// xorshift64: the same entries on every run, so a failure names a case that can be rerun.
    struct Gen(u64);

    impl Gen {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % n as u64) as usize
        }

        fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
            from.get(self.below(from.len()))
                .copied()
                .unwrap_or_default()
        }

        /// 1 to 12 characters of `alphabet`.
        fn text(&mut self, alphabet: &[char]) -> String {
            let len = 1 + self.below(12);
            (0..len)
                .map(|_| {
                    alphabet
                        .get(self.below(alphabet.len()))
                        .copied()
                        .unwrap_or('x')
                })
                .collect()
        }
    }

    #[test]
    fn generated_links_round_trip() {
        // Every character a link gives a meaning to, and some that need more than one byte.
        let tricky: Vec<char> = "aZ09:@%#/?&=+ ;\\'\"~-._!$,[]\té✓密🔑".chars().collect();
        let name: Vec<char> = "abcxyz0189-.%~_é".chars().collect();
        let mut g = Gen(0x5eed_0002_11f5);
        for n in 0..2000 {
            let host = match g.below(3) {
                0 => g.text(&name),
                1 => format!("192.0.2.{}", g.below(256)),
                _ => g
                    .pick(&["2001:db8::1", "::1", "fe80::a:b", "::ffff:192.0.2.1"])
                    .to_string(),
            };
            let plugin = (g.below(3) > 0).then(|| g.text(&tricky));
            let e = ServerEntry {
                host,
                port: u16::try_from(1 + g.below(65535)).unwrap(),
                method: g
                    .pick(&[
                        "aes-128-gcm",
                        "chacha20-ietf-poly1305",
                        "2022-blake3-aes-256-gcm",
                        "2022-blake3-chacha20-poly1305",
                    ])
                    .to_string(),
                password: g.text(&tricky),
                plugin_opts: plugin
                    .as_ref()
                    .and_then(|_| (g.below(2) == 0).then(|| g.text(&tricky))),
                plugin,
                remarks: (g.below(2) == 0).then(|| g.text(&tricky)),
            };
            let link = format_ss_url(&e);
            assert_eq!(parse_ss_url(&link).as_ref(), Ok(&e), "case {n}: {link}");
        }
    }

    #[test]
    fn a_link_as_json_reads_back_as_the_same_server() {
        let e = ServerEntry {
            plugin: Some("obfs-local".into()),
            plugin_opts: Some("obfs=http".into()),
            remarks: Some("a \"quoted\" \\ tag\n".into()),
            ..entry("2001:db8::1", "aes-128-gcm", "p\"w")
        };
        let json = to_json(&e);
        let v = super::super::json::parse(&json).unwrap();
        assert_eq!(entry_from_json(&v).unwrap(), e, "{json}");
    }

    #[test]
    fn json_entries_name_the_key() {
        let v = |t: &str| super::super::json::parse(t).unwrap();
        let e = entry_from_json(&v(
            r#"{"server": "[2001:db8::1]", "server_port": "8388", "method": "aes-128-gcm",
                "password": "pw", "plugin": "", "remarks": "home", "id": "x"}"#,
        ))
        .unwrap();
        assert_eq!(
            (e.host.as_str(), e.port, e.plugin),
            ("2001:db8::1", 8388, None)
        );
        assert_eq!(e.remarks.as_deref(), Some("home"));
        for (text, want) in [
            (
                r#"{"server_port": 1, "method": "m", "password": "p"}"#,
                "\"server\": missing",
            ),
            (
                r#"{"server": "h", "method": "m", "password": "p"}"#,
                "\"server_port\": missing",
            ),
            (
                r#"{"server": "h", "server_port": 0, "method": "m", "password": "p"}"#,
                "\"server_port\": must be 1-65535",
            ),
            (
                r#"{"server": "h", "server_port": 1, "password": "p"}"#,
                "\"method\": missing",
            ),
            (
                r#"{"server": "h", "server_port": 1, "method": 3, "password": "p"}"#,
                "\"method\": must be a string",
            ),
            ("[1]", "not an object"),
        ] {
            assert_eq!(entry_from_json(&v(text)).unwrap_err(), want, "{text}");
        }
    }
}
