//! A user's text quoted in a message, `"key"`, and lists: what messages used `{:?}` for, whose
//! Debug machinery (string escaping with Unicode tables, list builders) the router binary
//! need not carry.

use core::fmt::{self, Display, Write};

/// `"text"`, with quotes, backslashes and ASCII control characters escaped as `{:?}` does.
/// Other characters are written as they are: `char::escape_debug` would link Unicode's
/// printable tables (4 KB) for the odd invisible character in a config key.
pub struct Quoted<'a>(pub &'a str);

impl Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_char('"')?;
        for c in self.0.chars() {
            match c {
                '"' => f.write_str("\\\"")?,
                '\\' => f.write_str("\\\\")?,
                '\n' => f.write_str("\\n")?,
                '\r' => f.write_str("\\r")?,
                '\t' => f.write_str("\\t")?,
                '\0' => f.write_str("\\0")?,
                c if c.is_ascii_control() => write!(f, "\\u{{{:x}}}", u32::from(c))?,
                c => f.write_char(c)?,
            }
        }
        f.write_char('"')
    }
}

/// Items separated by ", ", each shown with `Display`.
pub struct List<'a, T>(pub &'a [T]);

impl<T: Display> Display for List<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, item) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            item.fmt(f)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_like_debug() {
        for s in [
            "key",
            "a\"b",
            "tab\there",
            "ünï",
            "nl\n",
            "",
            "\\",
            "\u{1b}[0m\0\r",
        ] {
            assert_eq!(Quoted(s).to_string(), format!("{s:?}"));
        }
        assert_eq!(List(&[1, 2, 3]).to_string(), "1, 2, 3");
        assert_eq!(List::<u8>(&[]).to_string(), "");
    }
}
