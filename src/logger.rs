//! The process logger: one line per event on stderr (procd forwards it to logd), or syslog
//! datagrams to /dev/log when the config says `use_syslog`.
//!
//! Call `init` first thing, so config errors are logged in the usual format, then `configure`
//! once the config is known. Settings live in atomics and `OnceLock`s because `log` requires a
//! `Sync` logger, although the program runs on one thread.

use log::{Level, LevelFilter, Log, Metadata, Record};
use std::fmt::Write as _;
use std::io::Write as _;
use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

const SYSLOG_PATH: &str = "/dev/log";
/// LOG_DAEMON: OpenWrt's logread and journald file a service's lines under it.
const FACILITY_DAEMON: u8 = 3;

struct Logger;

static LOGGER: Logger = Logger;
static PROGRAM: OnceLock<&'static str> = OnceLock::new();
static SYSLOG: OnceLock<UnixDatagram> = OnceLock::new();
static USE_SYSLOG: AtomicBool = AtomicBool::new(false);
static VERBOSE: AtomicBool = AtomicBool::new(false);

/// Installs the logger at info level, writing to stderr. Safe to call more than once.
pub fn init(program: &'static str) {
    let _ = PROGRAM.set(program);
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(LevelFilter::Info);
    }
}

/// Applies `-v` and `use_syslog`. If /dev/log cannot be reached, says so once and keeps
/// logging to stderr rather than going silent.
pub fn configure(verbose: bool, use_syslog: bool) {
    VERBOSE.store(verbose, Ordering::Relaxed);
    log::set_max_level(if verbose {
        LevelFilter::Debug
    } else {
        LevelFilter::Info
    });
    if !use_syslog {
        USE_SYSLOG.store(false, Ordering::Relaxed);
        return;
    }
    if SYSLOG.get().is_none() {
        match connect_syslog(SYSLOG_PATH) {
            Ok(sock) => {
                let _ = SYSLOG.set(sock);
            }
            Err(e) => {
                log::warn!("cannot log to syslog ({SYSLOG_PATH}: {e}); logging to stderr");
                return;
            }
        }
    }
    USE_SYSLOG.store(true, Ordering::Relaxed);
}

/// Lines one module may write at one level per window before the rest are counted instead.
const BURST: u32 = 30;
/// The window, in seconds.
const WINDOW: u64 = 10;
/// Modules tracked at once; the one whose window began first gives way.
const SITES: usize = 32;
/// Bytes of a left-out line kept to show in the summary.
const SAMPLE: usize = 100;

static LIMITS: Mutex<Limits> = Mutex::new(Limits { sites: Vec::new() });

/// A module that logs at one level, and its current window.
struct Site {
    module: &'static str,
    level: Level,
    since: u64,
    written: u32,
    left_out: u32,
    /// The last line left out, cut to [`SAMPLE`] bytes.
    sample: String,
}

/// Per-place log limits: at most [`BURST`] lines per [`WINDOW`] seconds from one place, then a
/// summary with the count of the rest.
struct Limits {
    sites: Vec<Site>,
}

impl Limits {
    /// Whether the line may be written now, and the summary of an ended window to write first.
    fn check(
        &mut self,
        (module, level): (&'static str, Level),
        now: u64,
        msg: &str,
    ) -> (Option<String>, bool) {
        let at = match self
            .sites
            .iter()
            .position(|s| s.level == level && s.module == module)
        {
            Some(at) => at,
            None => {
                if self.sites.len() >= SITES {
                    self.retire_oldest(now);
                }
                self.sites.push(Site {
                    module,
                    level,
                    since: now,
                    written: 0,
                    left_out: 0,
                    sample: String::new(),
                });
                self.sites.len() - 1
            }
        };
        let Some(site) = self.sites.get_mut(at) else {
            return (None, true);
        };
        // A clock stepped back (NTP at boot) starts a new window too.
        let summary = if now >= site.since.saturating_add(WINDOW) || now < site.since {
            let s = summary(site, now);
            site.since = now;
            site.written = 0;
            s
        } else {
            None
        };
        if site.written < BURST {
            site.written += 1;
            return (summary, true);
        }
        site.left_out = site.left_out.saturating_add(1);
        site.sample.clear();
        let mut cut = msg.len().min(SAMPLE);
        while !msg.is_char_boundary(cut) {
            cut -= 1;
        }
        site.sample.push_str(msg.get(..cut).unwrap_or_default());
        (summary, false)
    }

    /// Summaries of windows that have ended with lines left out.
    fn due(&mut self, now: u64) -> Vec<(Level, String)> {
        let mut out = Vec::new();
        for site in &mut self.sites {
            if now >= site.since.saturating_add(WINDOW) {
                if let Some(s) = summary(site, now) {
                    out.push((site.level, s));
                }
            }
        }
        out
    }

    fn retire_oldest(&mut self, now: u64) {
        let oldest = self
            .sites
            .iter()
            .enumerate()
            .min_by_key(|(_, s)| s.since)
            .map(|(i, _)| i);
        if let Some(i) = oldest {
            let mut site = self.sites.swap_remove(i);
            if let Some(s) = summary(&mut site, now) {
                emit(site.level, &s);
            }
        }
    }
}

/// "… 7893 more like "…" in the last 10 s", once per window that left lines out.
fn summary(site: &mut Site, now: u64) -> Option<String> {
    if site.left_out == 0 {
        return None;
    }
    let n = std::mem::take(&mut site.left_out);
    let secs = now.saturating_sub(site.since).max(1);
    Some(format!(
        "… {n} more like \"{}…\" in the last {secs} s",
        site.sample
    ))
}

fn connect_syslog(path: &str) -> std::io::Result<UnixDatagram> {
    let sock = UnixDatagram::unbound()?;
    sock.connect(path)?;
    // A stalled log daemon must not stall the relay thread; such lines go to stderr instead.
    sock.set_nonblocking(true)?;
    Ok(sock)
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        let max = if VERBOSE.load(Ordering::Relaxed) {
            Level::Debug
        } else {
            Level::Info
        };
        // Debug lines from dependencies would drown ours; they still get warnings through.
        metadata.level() <= max
            && (metadata.level() <= Level::Info || metadata.target().starts_with("ss_smol"))
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let msg = one_line(record.args());
        // Warnings and notes the network can repeat at will are limited per module;
        // errors (start-up, the few fatal ones) and -v's debug lines are not.
        if matches!(record.level(), Level::Warn | Level::Info) {
            // By module and level: router builds keep no locations (-Zlocation-detail=none), and
            // a module's warnings are mostly of one kind (a front door's bad requests).
            let site = (record.module_path_static().unwrap_or(""), record.level());
            let (summary, write) = match LIMITS.lock() {
                Ok(mut limits) => limits.check(site, unix_secs(), &msg),
                Err(_) => (None, true),
            };
            if let Some(summary) = summary {
                emit(record.level(), &summary);
            }
            if !write {
                return;
            }
        }
        emit(record.level(), &msg);
    }

    fn flush(&self) {
        let _ = std::io::stderr().flush();
    }
}

/// Writes the summaries of floods that have ended (their window passed with lines left out).
/// Called now and then from the event loop, so the count of a flood that stopped is not lost.
pub fn flush_summaries() {
    let due = match LIMITS.lock() {
        Ok(mut limits) => limits.due(unix_secs()),
        Err(_) => Vec::new(),
    };
    for (level, line) in due {
        emit(level, &line);
    }
}

fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// One line to syslog or stderr.
fn emit(level: Level, msg: &str) {
    if USE_SYSLOG.load(Ordering::Relaxed) {
        if let Some(sock) = SYSLOG.get() {
            let program = PROGRAM.get().copied().unwrap_or("ss-smol");
            let dgram = syslog_datagram(program, std::process::id(), level, msg);
            if send_syslog(sock, SYSLOG_PATH, dgram.as_bytes()) {
                return;
            }
        }
    }
    let line = format_line(unix_secs(), level, msg);
    // Nowhere to report a failed write to stderr; never panic over a log line.
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// Sends one datagram; reconnects once if the log daemon was restarted since we connected.
fn send_syslog(sock: &UnixDatagram, path: &str, dgram: &[u8]) -> bool {
    if sock.send(dgram).is_ok() {
        return true;
    }
    sock.connect(path).is_ok() && sock.send(dgram).is_ok()
}

/// Formats the event and escapes control characters: messages carry peer-supplied text (host
/// names, errors) that must not be able to start a fake log line.
fn one_line(args: &std::fmt::Arguments<'_>) -> String {
    let mut raw = String::new();
    let _ = raw.write_fmt(*args);
    if !raw.chars().any(char::is_control) {
        return raw;
    }
    let mut out = String::with_capacity(raw.len() + 8);
    for c in raw.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// `YYYY-MM-DD HH:MM:SS LEVEL: message\n` in UTC.
pub fn format_line(unix_secs: u64, level: Level, msg: &str) -> String {
    let (y, mo, d) = civil_from_days(unix_secs / 86_400);
    let rem = unix_secs % 86_400;
    format!(
        "{y:04}-{mo:02}-{d:02} {:02}:{:02}:{:02} {level}: {msg}\n",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// `<PRI>program[pid]: message`, without a timestamp: the receiving daemon stamps it.
pub fn syslog_datagram(program: &str, pid: u32, level: Level, msg: &str) -> String {
    let severity: u8 = match level {
        Level::Error => 3,
        Level::Warn => 4,
        Level::Info => 6,
        Level::Debug | Level::Trace => 7,
    };
    let pri = FACILITY_DAEMON * 8 + severity;
    format!("<{pri}>{program}[{pid}]: {msg}")
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's `civil_from_days`). Eras are 400-year cycles of 146097 days.
pub fn civil_from_days(days: u64) -> (u64, u32, u32) {
    // Shift the epoch to 0000-03-01 so leap days fall at the end of each year.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    // day <= 31 and month <= 12 by construction.
    (year, month as u32, day as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn days(y: u64, m: u32, d: u32) -> u64 {
        // Naive count for cross-checking, day by day from the epoch.
        let leap =
            |y: u64| (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400);
        let mut n = 0;
        for yy in 1970..y {
            n += if leap(yy) { 366 } else { 365 };
        }
        let lens = [
            31,
            if leap(y) { 29 } else { 28 },
            31,
            30,
            31,
            30,
            31,
            31,
            30,
            31,
            30,
            31,
        ];
        for len in lens.iter().take(m as usize - 1) {
            n += len;
        }
        n + u64::from(d) - 1
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(59), (1970, 3, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(11_017), (2000, 3, 1));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
        assert_eq!(civil_from_days(47_482), (2100, 1, 1));
        // 2100 is not a leap year.
        assert_eq!(civil_from_days(47_540), (2100, 2, 28));
        assert_eq!(civil_from_days(47_541), (2100, 3, 1));
        for (y, m, d) in [(1999, 12, 31), (2038, 1, 19), (2400, 2, 29), (2023, 7, 15)] {
            assert_eq!(civil_from_days(days(y, m, d)), (y, m, d));
        }
        // No overflow at the far end.
        let _ = civil_from_days(u64::MAX / 86_400);
    }

    #[test]
    fn every_day_round_trips() {
        let mut prev = civil_from_days(0);
        for n in 1..200_000 {
            let cur = civil_from_days(n);
            assert!(cur > prev, "{n}: {cur:?} after {prev:?}");
            prev = cur;
        }
        assert_eq!(civil_from_days(days(2500, 1, 1)), (2500, 1, 1));
    }

    #[test]
    fn line_format() {
        assert_eq!(
            format_line(1_709_251_199, Level::Info, "listening on 127.0.0.1:1080"),
            "2024-02-29 23:59:59 INFO: listening on 127.0.0.1:1080\n"
        );
        assert_eq!(
            format_line(0, Level::Warn, "x"),
            "1970-01-01 00:00:00 WARN: x\n"
        );
    }

    #[test]
    fn syslog_format() {
        assert_eq!(
            syslog_datagram("ss-local", 42, Level::Error, "boom"),
            "<27>ss-local[42]: boom"
        );
        assert_eq!(
            syslog_datagram("ss-redir", 7, Level::Info, "up"),
            "<30>ss-redir[7]: up"
        );
        assert_eq!(
            syslog_datagram("ss-redir", 7, Level::Debug, "d"),
            "<31>ss-redir[7]: d"
        );
    }

    #[test]
    fn syslog_socket_and_reconnect() {
        let dir = std::env::temp_dir().join(format!("ss-smol-log-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("log");
        let path_str = path.to_str().unwrap();
        let _ = std::fs::remove_file(&path);
        let daemon = UnixDatagram::bind(&path).unwrap();
        let sock = connect_syslog(path_str).unwrap();
        assert!(send_syslog(&sock, path_str, b"<30>ss-local[1]: one"));
        let mut buf = [0u8; 64];
        let n = daemon.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"<30>ss-local[1]: one");
        // The log daemon restarts: a new socket at the same path.
        drop(daemon);
        std::fs::remove_file(&path).unwrap();
        let daemon = UnixDatagram::bind(&path).unwrap();
        assert!(send_syslog(&sock, path_str, b"two"));
        let n = daemon.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"two");
        // No daemon at all: the caller falls back to stderr.
        drop(daemon);
        std::fs::remove_file(&path).unwrap();
        assert!(!send_syslog(&sock, path_str, b"three"));
        assert!(connect_syslog(path_str).is_err());
        std::fs::remove_dir(&dir).unwrap();
    }

    #[test]
    fn one_place_writes_a_burst_per_window_then_a_summary() {
        let mut limits = Limits { sites: Vec::new() };
        let here = ("ss_smol::x", Level::Warn);
        let there = ("ss_smol::x", Level::Info);
        let written = (0..1000)
            .filter(|i| limits.check(here, 100, &format!("bad request {i}")).1)
            .count();
        assert_eq!(written, BURST as usize);
        // Another place is not held back by the flood.
        assert_eq!(limits.check(there, 100, "other"), (None, true));
        assert!(limits.due(105).is_empty(), "window not over");
        let due = limits.due(100 + WINDOW);
        assert_eq!(
            due,
            [(
                Level::Warn,
                format!(
                    "… {} more like \"bad request 999…\" in the last 10 s",
                    1000 - BURST
                )
            )]
        );
        assert!(limits.due(100 + WINDOW).is_empty(), "said once");
        // A later line from the same place starts a new window and is written.
        assert_eq!(limits.check(here, 100 + WINDOW, "again"), (None, true));
    }

    #[test]
    fn the_summary_comes_before_the_next_line_and_samples_are_cut() {
        let mut limits = Limits { sites: Vec::new() };
        let here = ("ss_smol::x", Level::Info);
        let long = "é".repeat(200);
        for _ in 0..=BURST {
            limits.check(here, 0, &long);
        }
        let (summary, write) = limits.check(here, 60, "next");
        assert!(write);
        let summary = summary.unwrap();
        assert!(summary.starts_with("… 1 more like \""), "{summary}");
        assert!(summary.len() < SAMPLE + 40, "{summary}");
        assert!(summary.ends_with("in the last 60 s"));
    }

    #[test]
    fn sites_are_bounded() {
        let mut limits = Limits { sites: Vec::new() };
        let modules: Vec<&'static str> = (0..SITES * 3)
            .map(|i| &*Box::leak(format!("m{i}").into_boxed_str()))
            .collect();
        for (i, m) in modules.iter().enumerate() {
            limits.check((m, Level::Warn), i as u64, "x");
        }
        assert_eq!(limits.sites.len(), SITES);
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(
            one_line(&format_args!("a\nb\r{}", '\u{1b}')),
            "a\\nb\\r\\u{1b}"
        );
        assert_eq!(one_line(&format_args!("plain {}", 1)), "plain 1");
    }
}
