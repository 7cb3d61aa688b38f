//! A plugin's output split into log lines, in fixed memory.
//!
//! ```text
//!   bytes:  "conn ok\nvery long ……………… line\npartial"
//!   lines:  "conn ok" | "very long ……(cut at CAP)…" | (kept until its '\n' or more than CAP)
//! ```
//!
//! A line longer than the buffer is logged cut, and the rest of it, up to its newline, is
//! dropped: a plugin that writes without end cannot grow our memory.

/// Bytes of one line kept for the log.
pub const CAP: usize = 240;

/// Splits a byte stream into lines of at most [`CAP`] bytes.
pub struct Lines {
    buf: [u8; CAP],
    len: usize,
    /// The current line was already logged cut; drop bytes until its end.
    skipping: bool,
}

impl Default for Lines {
    fn default() -> Self {
        Lines {
            buf: [0; CAP],
            len: 0,
            skipping: false,
        }
    }
}

impl Lines {
    /// Feeds `bytes`, calling `emit` with each finished line (without its newline; `cut` when
    /// the line was longer than [`CAP`]).
    pub fn feed(&mut self, bytes: &[u8], mut emit: impl FnMut(&str, bool)) {
        for &b in bytes {
            if b == b'\n' {
                if !self.skipping {
                    self.flush(false, &mut emit);
                }
                self.skipping = false;
                continue;
            }
            if self.skipping {
                continue;
            }
            match self.buf.get_mut(self.len) {
                Some(slot) => {
                    *slot = b;
                    self.len += 1;
                }
                None => {
                    self.flush(true, &mut emit);
                    self.skipping = true;
                }
            }
        }
    }

    /// Emits what is left of an unfinished line (the plugin closed its output).
    pub fn finish(&mut self, mut emit: impl FnMut(&str, bool)) {
        if self.len > 0 && !self.skipping {
            self.flush(false, &mut emit);
        }
    }

    fn flush(&mut self, cut: bool, emit: &mut impl FnMut(&str, bool)) {
        let line = self.buf.get(..self.len).unwrap_or_default();
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        // Invalid UTF-8 is shown as far as it is valid; a cut can split a character.
        let text = match std::str::from_utf8(line) {
            Ok(t) => t,
            Err(e) => std::str::from_utf8(line.get(..e.valid_up_to()).unwrap_or_default())
                .unwrap_or_default(),
        };
        if !text.trim().is_empty() {
            emit(text, cut);
        }
        self.len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines_of(chunks: &[&[u8]]) -> Vec<(String, bool)> {
        let mut l = Lines::default();
        let mut out = Vec::new();
        for c in chunks {
            l.feed(c, |t, cut| out.push((t.to_string(), cut)));
        }
        l.finish(|t, cut| out.push((t.to_string(), cut)));
        out
    }

    #[test]
    fn splits_at_newlines_across_reads() {
        assert_eq!(
            lines_of(&[b"one\ntw", b"o\r\n\nthree"]),
            vec![
                ("one".into(), false),
                ("two".into(), false),
                ("three".into(), false)
            ]
        );
    }

    #[test]
    fn a_long_line_is_cut_once_and_the_rest_dropped() {
        let long = vec![b'x'; CAP * 10];
        let out = lines_of(&[&long, b"\nnext\n"]);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0], ("x".repeat(CAP), true));
        assert_eq!(out[1], ("next".into(), false));
    }

    #[test]
    fn endless_output_without_newline_stays_bounded() {
        let mut l = Lines::default();
        let mut n = 0;
        for _ in 0..10_000 {
            l.feed(&[b'y'; 1000], |_, _| n += 1);
        }
        assert_eq!(n, 1);
        assert!(l.len <= CAP);
    }

    #[test]
    fn invalid_utf8_is_shown_up_to_the_bad_byte() {
        assert_eq!(lines_of(&[b"ok \xff rest\n"]), vec![("ok ".into(), false)]);
    }
}
