//! The JSON reader for config files: what `file` needs of a document and no more.
//!
//! It accepts exactly the texts miniserde 0.1 (its former reader) accepted, which a test checks
//! against miniserde itself: RFC 8259 JSON, with a number refused when miniserde's `f64` for it
//! overflows. It differs in what it keeps, since a config only ever looks two levels down (the
//! keys of the top object, the items of a list value): containers nested deeper are checked but
//! kept empty, so no value is deep and nothing recurses, whatever the nesting; a number that is
//! not an integer keeps the text it was written as (errors quote it; no float code is linked).
//! Objects keep the last value of a repeated key, and iterate in key order, as miniserde's did.
//!
//! Total: any text gives `Some` or `None`, never a panic (the `json_config` fuzz target).

use std::fmt;

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Number(Number),
    String(String),
    Array(Vec<Value>),
    Object(Object),
}

/// An object's members, sorted by key, the last of duplicate keys kept (as a `BTreeMap`
/// filled in order would: what the config reader always saw). A sorted list: config objects
/// are small, and the map's node code cost the router binary more than the whole list.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Object(Vec<(String, Value)>);

impl Object {
    pub fn get(&self, key: &str) -> Option<&Value> {
        let i = self.0.binary_search_by(|(k, _)| k.as_str().cmp(key)).ok()?;
        self.0.get(i).map(|(_, v)| v)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &Value)> {
        self.0.iter().map(|(k, v)| (k, v))
    }

    pub fn keys(&self) -> impl Iterator<Item = &String> {
        self.0.iter().map(|(k, _)| k)
    }
}

impl From<Vec<(String, Value)>> for Object {
    /// Sorts once, stably, so among equal keys the last given stays: O(n log n) whatever the
    /// order of the keys in the text.
    fn from(mut members: Vec<(String, Value)>) -> Object {
        members.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out: Vec<(String, Value)> = Vec::with_capacity(members.len());
        for m in members {
            match out.last_mut() {
                Some(last) if last.0 == m.0 => *last = m,
                _ => out.push(m),
            }
        }
        Object(out)
    }
}

impl FromIterator<(String, Value)> for Object {
    fn from_iter<I: IntoIterator<Item = (String, Value)>>(iter: I) -> Object {
        Object::from(iter.into_iter().collect::<Vec<_>>())
    }
}

impl IntoIterator for Object {
    type Item = (String, Value);
    type IntoIter = std::vec::IntoIter<(String, Value)>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Number {
    U64(u64),
    I64(i64),
    /// A number with a fraction or an exponent, or an integer outside `u64`/`i64`: its text.
    Other(Box<str>),
}

impl fmt::Display for Number {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Number::U64(n) => fmt::Display::fmt(n, f),
            Number::I64(n) => fmt::Display::fmt(n, f),
            Number::Other(s) => f.write_str(s),
        }
    }
}

/// Containers this deep (the top value is at depth 0) are kept empty. 3: the config's own keys
/// hold lists (depth 1) of objects (depth 2: `users` entries); nothing reads deeper.
const KEPT_DEPTH: usize = 3;

/// An open container: its contents so far (when kept) and, in an object, the key of the value
/// being read.
enum Frame {
    Array(Vec<Value>, bool),
    Object(Vec<(String, Value)>, Option<String>, bool),
}

impl Frame {
    fn add(&mut self, value: Value) {
        match self {
            Frame::Array(items, keep) => {
                if *keep {
                    items.push(value);
                }
            }
            Frame::Object(map, key, keep) => {
                if let (Some(k), true) = (key.take(), *keep) {
                    map.push((k, value));
                }
            }
        }
    }
}

/// Parses one JSON value surrounded by optional whitespace.
pub fn parse(text: &str) -> Option<Value> {
    let mut p = Parser { text, pos: 0 };
    let mut stack: Vec<Frame> = Vec::new();
    loop {
        // A value starts here (after `[`, `,` or a key's `:`, or at the top).
        let mut value = match p.value_start(&mut stack)? {
            Some(v) => v,
            None => match p.skip_ws() {
                Some(close @ (b']' | b'}')) => {
                    p.pos += 1;
                    close_frame(&mut stack, close)?
                }
                _ => {
                    p.element_prefix(&mut stack)?;
                    continue;
                }
            },
        };
        // A value ended: it goes to its container, which then goes on or closes.
        loop {
            let Some(top) = stack.last_mut() else {
                return p.skip_ws().is_none().then_some(value);
            };
            top.add(value);
            match p.skip_ws() {
                Some(b',') => {
                    p.pos += 1;
                    p.element_prefix(&mut stack)?;
                    break;
                }
                Some(close @ (b']' | b'}')) => {
                    p.pos += 1;
                    value = close_frame(&mut stack, close)?;
                }
                _ => return None,
            }
        }
    }
}

fn close_frame(stack: &mut Vec<Frame>, close: u8) -> Option<Value> {
    match (stack.pop()?, close) {
        (Frame::Array(items, _), b']') => Some(Value::Array(items)),
        (Frame::Object(map, _, _), b'}') => Some(Value::Object(Object::from(map))),
        _ => None,
    }
}

struct Parser<'a> {
    text: &'a str,
    pos: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let c = self.peek()?;
        self.pos += 1;
        Some(c)
    }

    fn skip_ws(&mut self) -> Option<u8> {
        while let Some(b' ' | b'\n' | b'\t' | b'\r') = self.peek() {
            self.pos += 1;
        }
        self.peek()
    }

    fn digit(&self) -> Option<u8> {
        self.peek().filter(u8::is_ascii_digit).map(|c| c - b'0')
    }

    /// Reads a scalar (`Some`), or opens a container on the stack (`None` inside).
    fn value_start(&mut self, stack: &mut Vec<Frame>) -> Option<Option<Value>> {
        self.skip_ws();
        let start = self.pos;
        let keep = stack.len() < KEPT_DEPTH;
        Some(Some(match self.next()? {
            b'"' => Value::String(self.string()?),
            b'{' => {
                stack.push(Frame::Object(Vec::new(), None, keep));
                return Some(None);
            }
            b'[' => {
                stack.push(Frame::Array(Vec::new(), keep));
                return Some(None);
            }
            b'n' => self.word("ull", Value::Null)?,
            b't' => self.word("rue", Value::Bool(true))?,
            b'f' => self.word("alse", Value::Bool(false))?,
            b'-' => Value::Number(self.number(start, false)?),
            b'0'..=b'9' => {
                self.pos = start;
                Value::Number(self.number(start, true)?)
            }
            _ => return None,
        }))
    }

    /// What comes between a container's `[`/`{`/`,` and its next value: an object's key.
    fn element_prefix(&mut self, stack: &mut [Frame]) -> Option<()> {
        if let Some(Frame::Object(_, key, _)) = stack.last_mut() {
            if self.skip_ws()? != b'"' {
                return None;
            }
            self.pos += 1;
            *key = Some(self.string()?);
            if self.skip_ws()? != b':' {
                return None;
            }
            self.pos += 1;
        }
        Some(())
    }

    fn word(&mut self, rest: &str, v: Value) -> Option<Value> {
        let end = self.pos.checked_add(rest.len())?;
        (self.text.get(self.pos..end)? == rest).then(|| {
            self.pos = end;
            v
        })
    }

    /// A string's contents, after its opening quote.
    fn string(&mut self) -> Option<String> {
        let mut out = String::new();
        let mut start = self.pos;
        loop {
            match self.next()? {
                b'"' => {
                    out.push_str(self.text.get(start..self.pos - 1)?);
                    return Some(out);
                }
                b'\\' => {
                    out.push_str(self.text.get(start..self.pos - 1)?);
                    out.push(self.escape()?);
                    start = self.pos;
                }
                0..=0x1f => return None,
                _ => {}
            }
        }
    }

    fn escape(&mut self) -> Option<char> {
        Some(match self.next()? {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let n = self.hex4()?;
                match n {
                    0xD800..=0xDBFF => {
                        if self.next()? != b'\\' || self.next()? != b'u' {
                            return None;
                        }
                        let low = self.hex4()?;
                        if !(0xDC00..=0xDFFF).contains(&low) {
                            return None;
                        }
                        char::from_u32((((n - 0xD800) << 10) | (low - 0xDC00)) + 0x1_0000)?
                    }
                    // A lone low surrogate is refused by `from_u32`.
                    _ => char::from_u32(n)?,
                }
            }
            _ => return None,
        })
    }

    fn hex4(&mut self) -> Option<u32> {
        let mut n = 0;
        for _ in 0..4 {
            n = n * 16 + char::from(self.next()?).to_digit(16)?;
        }
        Some(n)
    }

    /// A number whose text starts at `start`; `self.pos` is at its first digit. miniserde's
    /// rules: no leading zeros; an integer that fits is `U64` (`I64` when negative); anything
    /// else is refused only when miniserde's `f64` for it would be infinite.
    fn number(&mut self, start: usize, nonnegative: bool) -> Option<Number> {
        let first = self.digit()?;
        self.pos += 1;
        let mut significand = u64::from(first);
        // Decimal exponent of `significand`, as miniserde keeps it (digits past what fits in a
        // u64 are dropped; those of the integer part are counted).
        let mut exponent: i32 = 0;
        let mut fits = true;
        if first == 0 {
            if self.digit().is_some() {
                return None;
            }
        } else {
            while let Some(d) = self.digit() {
                self.pos += 1;
                match significand
                    .checked_mul(10)
                    .and_then(|s| s.checked_add(d.into()))
                {
                    Some(s) if fits => significand = s,
                    _ => {
                        fits = false;
                        exponent = exponent.saturating_add(1);
                    }
                }
            }
        }
        let mut integer = fits;
        if self.peek() == Some(b'.') {
            integer = false;
            self.pos += 1;
            self.digit()?;
            // As miniserde: digits are taken until the significand would overflow, even after
            // an integer part that already did.
            let mut dropping = false;
            while let Some(d) = self.digit() {
                self.pos += 1;
                match significand
                    .checked_mul(10)
                    .and_then(|s| s.checked_add(d.into()))
                {
                    Some(s) if !dropping => {
                        significand = s;
                        exponent = exponent.saturating_sub(1);
                    }
                    _ => dropping = true,
                }
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            integer = false;
            self.pos += 1;
            let positive = match self.peek() {
                Some(b'-') => {
                    self.pos += 1;
                    false
                }
                Some(b'+') => {
                    self.pos += 1;
                    true
                }
                _ => true,
            };
            self.digit()?;
            let mut exp: i32 = 0;
            let mut overflow = false;
            while let Some(d) = self.digit() {
                self.pos += 1;
                match exp.checked_mul(10).and_then(|e| e.checked_add(d.into())) {
                    Some(e) if !overflow => exp = e,
                    _ => overflow = true,
                }
            }
            if overflow {
                if significand != 0 && positive {
                    return None;
                }
                // miniserde: zero.
                exponent = i32::MIN;
            } else if positive {
                exponent = exponent.saturating_add(exp);
            } else {
                exponent = exponent.saturating_sub(exp);
            }
        }
        if integer {
            if nonnegative {
                return Some(Number::U64(significand));
            }
            // miniserde's test: what does not fit in i64 is a float.
            let neg = (significand as i64).wrapping_neg();
            if neg <= 0 {
                return Some(Number::I64(neg));
            }
        } else if infinite(significand, exponent) {
            return None;
        }
        Some(Number::Other(self.text.get(start..self.pos)?.into()))
    }
}

/// Whether miniserde's `significand as f64 * 1e{exponent}` overflows. Below 10^289 it cannot
/// (a u64 is below 1.85e19, and f64::MAX is 1.797e308), past 10^308 it always does (for a
/// non-zero significand); in between it does from a threshold on (both roundings are monotonic),
/// which a test checks against the float product. (Integers: no soft-float code on MIPS.)
fn infinite(significand: u64, exponent: i32) -> bool {
    if significand == 0 || exponent < 289 {
        return false;
    }
    usize::try_from(exponent - 289)
        .ok()
        .and_then(|i| FIRST_INFINITE.get(i))
        .is_none_or(|&first| significand >= first)
}

/// For 10^289 … 10^308: the least significand whose product with it is infinite.
const FIRST_INFINITE: [u64; 20] = [
    17_976_931_348_623_156_225,
    1_797_693_134_862_315_649,
    179_769_313_486_231_600,
    17_976_931_348_623_158,
    1_797_693_134_862_316,
    179_769_313_486_232,
    17_976_931_348_624,
    1_797_693_134_863,
    179_769_313_487,
    17_976_931_349,
    1_797_693_135,
    179_769_314,
    17_976_932,
    1_797_694,
    179_770,
    17_977,
    1_798,
    180,
    18,
    2,
];

#[cfg(test)]
mod tests {
    use super::*;

    /// miniserde's value as ours keeps it: containers past `KEPT_DEPTH` empty, non-integers as
    /// `Other` (compared by kind only: `None` stands for "some `Other`").
    fn kept(v: &miniserde::json::Value, depth: usize) -> Option<Value> {
        use miniserde::json::{Number as N, Value as V};
        Some(match v {
            V::Null => Value::Null,
            V::Bool(b) => Value::Bool(*b),
            V::Number(N::U64(n)) => Value::Number(Number::U64(*n)),
            V::Number(N::I64(n)) => Value::Number(Number::I64(*n)),
            V::Number(N::F64(_)) => return None,
            V::String(s) => Value::String(s.clone()),
            V::Array(items) if depth < KEPT_DEPTH => Value::Array(
                items
                    .iter()
                    .map(|i| kept(i, depth + 1).unwrap_or(Value::Number(Number::Other("".into()))))
                    .collect(),
            ),
            V::Array(_) => Value::Array(Vec::new()),
            V::Object(map) if depth < KEPT_DEPTH => Value::Object(
                map.iter()
                    .map(|(k, i)| {
                        let i =
                            kept(i, depth + 1).unwrap_or(Value::Number(Number::Other("".into())));
                        (k.clone(), i)
                    })
                    .collect(),
            ),
            V::Object(_) => Value::Object(Object::default()),
        })
    }

    /// Ours with every `Other` text blanked, to compare with `kept`.
    fn blank(v: Value) -> Value {
        match v {
            Value::Number(Number::Other(_)) => Value::Number(Number::Other("".into())),
            Value::Array(items) => Value::Array(items.into_iter().map(blank).collect()),
            Value::Object(map) => {
                Value::Object(map.into_iter().map(|(k, v)| (k, blank(v))).collect())
            }
            v => v,
        }
    }

    fn same_as_miniserde(text: &str) {
        let theirs: Option<miniserde::json::Value> = miniserde::json::from_str(text).ok();
        let ours = parse(text);
        match (&theirs, ours) {
            (None, None) => {}
            (Some(t), Some(o)) => match kept(t, 0) {
                Some(t) => assert_eq!(blank(o), t, "{text:?}"),
                None => assert!(matches!(o, Value::Number(Number::Other(_))), "{text:?}"),
            },
            (t, o) => panic!("{text:?}: miniserde {t:?}, ours {o:?}"),
        }
    }

    const TOKENS: &[&str] = &[
        "{",
        "}",
        "[",
        "]",
        ",",
        ":",
        " ",
        "\n",
        "\t",
        "\r",
        "\u{a0}",
        "\"",
        "\"a\"",
        "\"b\"",
        "\"é\"",
        "\"\\u00e9\"",
        "\"\\ud83d\\ude00\"",
        "\"\\ud800\"",
        "\"\\udc00\"",
        "\"\\ud800\\u0041\"",
        "\"\\x\"",
        "\"\\/\\b\\f\\n\\r\\t\\\"\\\\\"",
        "\"\u{1}\"",
        "\"\\u12G4\"",
        "\"\\uABCD\"",
        "0",
        "-0",
        "-",
        "01",
        "1.",
        ".5",
        "1.5",
        "-1.5e-3",
        "1e5",
        "1E+5",
        "1e",
        "1e+",
        "1e400",
        "-1e400",
        "0e999",
        "1e-400",
        "18446744073709551615",
        "18446744073709551616",
        "-9223372036854775808",
        "-9223372036854775809",
        "1.7976931348623157e308",
        "1.7976931348623159e308",
        "179769313486231580793728971405301e276",
        "17976931348623159.5e292",
        "18446744073709551616.5e288",
        "1e99999999999",
        "0e99999999999",
        "1e-99999999999",
        "0.000000000000000000000000000001e320",
        "true",
        "false",
        "null",
        "tru",
        "nul",
        "x",
        "1x",
        "12345678901234567890123",
        "-12345678901234567890",
    ];

    #[test]
    fn accepts_and_keeps_what_miniserde_did() {
        for t in TOKENS {
            same_as_miniserde(t);
            same_as_miniserde(&format!("[{t}]"));
            same_as_miniserde(&format!("{{\"k\": {t}}}"));
            same_as_miniserde(&format!("{{\"k\": [{t}, [{t}]]}}"));
        }
        // Random token strings, from a fixed xorshift seed.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..200_000 {
            let n = 1 + next() % 14;
            let mut s = String::new();
            for _ in 0..n {
                s.push_str(TOKENS[(next() % TOKENS.len() as u64) as usize]);
            }
            same_as_miniserde(&s);
        }
    }

    #[test]
    fn keys_sorted_last_wins_and_deep_nesting_is_flat() {
        let Some(Value::Object(map)) =
            parse(r#"{"b": 1, "a": [[1], {"x": 2, "y": {"z": 3}}], "b": 2}"#)
        else {
            panic!("not an object");
        };
        let keys: Vec<&str> = map.keys().map(String::as_str).collect();
        assert_eq!(keys, ["a", "b"]);
        assert_eq!(map.get("b"), Some(&Value::Number(Number::U64(2))));
        // Depth 2 (a `users` entry) is kept, depth 3 is not.
        let entry = Object::from(vec![
            ("x".to_string(), Value::Number(Number::U64(2))),
            ("y".to_string(), Value::Object(Object::default())),
        ]);
        assert_eq!(
            map.get("a"),
            Some(&Value::Array(vec![
                Value::Array(vec![Value::Number(Number::U64(1))]),
                Value::Object(entry)
            ]))
        );
        let deep = format!("{}{}", "[".repeat(1 << 20), "]".repeat(1 << 20));
        assert_eq!(
            parse(&deep),
            Some(Value::Array(vec![Value::Array(vec![Value::Array(vec![
                Value::Array(Vec::new())
            ])])]))
        );
        assert_eq!(parse(&"[".repeat(1 << 20)), None);
    }

    #[test]
    fn overflow_thresholds_are_miniserdes() {
        for (i, &first) in FIRST_INFINITE.iter().enumerate() {
            let pow: f64 = format!("1e{}", 289 + i).parse().unwrap();
            assert!((first as f64 * pow).is_infinite(), "1e{}", 289 + i);
            assert!(!((first - 1) as f64 * pow).is_infinite(), "1e{}", 289 + i);
        }
    }

    #[test]
    fn other_numbers_keep_their_text() {
        assert_eq!(
            parse(" 1.50E+2 "),
            Some(Value::Number(Number::Other("1.50E+2".into())))
        );
        assert_eq!(Number::Other("-1e5".into()).to_string(), "-1e5");
        assert_eq!(Number::I64(-3).to_string(), "-3");
    }
}
