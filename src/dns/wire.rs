//! Sans-IO DNS wire format: the one query we send and the answers we accept (RFC 1035 §4).
//!
//! Only what an A/AAAA stub resolver needs: a query builder, and a checked response parser
//! that matches the ID and question, follows CNAMEs inside the answer section and returns
//! the addresses with the smallest TTL on the chain. Every read goes through `get`, every
//! compression pointer must point strictly backwards (so decoding always terminates), and
//! any input, however truncated or hostile, yields `Ok` or a [`WireError`], never a panic.
//! The layout is drawn in the [module documentation of `dns`](super). The lints below hold
//! that promise at compile time, as in `proto` (see its module documentation).

#![deny(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::unreachable,
    clippy::todo,
    clippy::unimplemented,
    clippy::arithmetic_side_effects
)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub const TYPE_A: u16 = 1;
pub const TYPE_CNAME: u16 = 5;
pub const TYPE_AAAA: u16 = 28;
pub const CLASS_IN: u16 = 1;

pub const RCODE_NOERROR: u8 = 0;
pub const RCODE_FORMERR: u8 = 1;
pub const RCODE_SERVFAIL: u8 = 2;
pub const RCODE_NXDOMAIN: u8 = 3;
pub const RCODE_NOTIMP: u8 = 4;
pub const RCODE_REFUSED: u8 = 5;

/// Header length.
pub const HEADER_LEN: usize = 12;
/// Longest name in wire form, length octets and root label included (RFC 1035 §2.3.4).
pub const MAX_NAME_WIRE: usize = 255;
/// Longest label.
pub const MAX_LABEL: usize = 63;
/// CNAME hops followed inside one answer before giving up (a loop or an absurd chain).
pub const MAX_CNAME_HOPS: usize = 16;
/// Compression pointers followed while reading one name. Pointers only go backwards, so this
/// is a second guard only; 255 bytes of name hold at most 127 labels.
const MAX_POINTERS: usize = 128;

const FLAG_QR: u8 = 0x80;
const FLAG_TC: u8 = 0x02;
const FLAG_RD: u8 = 0x01;
const OPCODE_MASK: u8 = 0x78;

/// Why a name could not be encoded or a message decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WireError {
    /// The host name cannot be put in a query: empty, an empty label, a label over 63 bytes,
    /// over 253 characters, or a byte outside printable ASCII.
    BadName,
    /// The message ends inside the header, a name, a record or its data.
    Short,
    /// The QR bit is clear: a query, not a response.
    NotResponse,
    /// The ID differs from the query's.
    IdMismatch,
    /// The opcode is not a standard query.
    Opcode(u8),
    /// QDCOUNT is not 1 or the question differs from ours (name, type or class).
    QuestionMismatch,
    /// A name has a reserved label type, a forward or looping pointer, or is over 255 bytes.
    BadLabel,
    /// An A record whose data is not 4 bytes, an AAAA not 16, a CNAME not one name.
    BadRdata,
}

impl WireError {
    /// Does this datagram simply not belong to our query (wrong ID, wrong question, not a
    /// response)? Such datagrams are ignored and the wait for the real answer goes on.
    pub fn is_foreign(self) -> bool {
        matches!(
            self,
            WireError::IdMismatch | WireError::QuestionMismatch | WireError::NotResponse
        )
    }
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WireError::BadName => f.write_str("not a valid DNS name"),
            WireError::Short => f.write_str("truncated DNS message"),
            WireError::NotResponse => f.write_str("DNS message is not a response"),
            WireError::IdMismatch => f.write_str("DNS response ID does not match"),
            WireError::Opcode(o) => write!(f, "DNS response has opcode {o}"),
            WireError::QuestionMismatch => f.write_str("DNS response question does not match"),
            WireError::BadLabel => f.write_str("malformed name in DNS response"),
            WireError::BadRdata => f.write_str("malformed record data in DNS response"),
        }
    }
}

/// Human name of a response code, for error messages.
pub fn rcode_name(rcode: u8) -> &'static str {
    match rcode {
        RCODE_NOERROR => "NOERROR",
        RCODE_FORMERR => "FORMERR",
        RCODE_SERVFAIL => "SERVFAIL",
        RCODE_NXDOMAIN => "NXDOMAIN",
        RCODE_NOTIMP => "NOTIMP",
        RCODE_REFUSED => "REFUSED",
        _ => "unknown rcode",
    }
}

/// Checks a host name and returns it without a trailing dot. Labels are 1..=63 bytes of
/// printable ASCII other than '.', at most 253 characters in all.
pub fn check_name(name: &str) -> Result<&str, WireError> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() || name.len() > MAX_NAME_WIRE - 2 {
        return Err(WireError::BadName);
    }
    for label in name.split('.') {
        if label.is_empty()
            || label.len() > MAX_LABEL
            || !label.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(WireError::BadName);
        }
    }
    Ok(name)
}

/// A standard recursive query (RD set, one question, class IN) for `name` of type `qtype`.
pub fn encode_query(id: u16, name: &str, qtype: u16) -> Result<Vec<u8>, WireError> {
    let name = check_name(name)?;
    // check_name bounds the name to 253 bytes.
    let mut q = Vec::with_capacity(name.len().saturating_add(HEADER_LEN + 2 + 4));
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[FLAG_RD, 0]); // QR=0 OPCODE=0 AA=0 TC=0 RD=1 | RA=0 Z=0 RCODE=0
    q.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]); // QDCOUNT=1, AN/NS/ARCOUNT=0
    for label in name.split('.') {
        // check_name bounds every label to 63 bytes.
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&CLASS_IN.to_be_bytes());
    Ok(q)
}

/// What a response to one of our queries says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// RCODE (low 4 bits of the header; no EDNS extended codes since we send no OPT).
    pub rcode: u8,
    /// The TC bit: the server cut the message short. The addresses are those that fit.
    pub truncated: bool,
    /// Addresses of the queried type owned by the end of the CNAME chain, in message order.
    pub addrs: Vec<IpAddr>,
    /// The smallest TTL among the CNAMEs followed and the addresses returned; `None` when
    /// there are no addresses.
    pub ttl: Option<u32>,
}

/// Decodes `msg` as the response to `query` (as built by [`encode_query`]).
///
/// Checks, in order: header present, QR set, ID and question equal to the query's (names
/// compared case-insensitively), standard opcode. For a non-zero RCODE nothing more is read.
/// Otherwise the answer section is walked: A/AAAA records (whichever the query asked for),
/// class IN, owned by the queried name or the name a chain of CNAMEs leads to. Records of
/// other types (RRSIG, …) are skipped. When TC is set, a record cut off at the end of the
/// message ends the walk instead of failing it.
pub fn decode_response(msg: &[u8], query: &[u8]) -> Result<Response, WireError> {
    let (&[qid0, qid1, ..], qquestion) = query
        .split_first_chunk::<HEADER_LEN>()
        .ok_or(WireError::BadName)?;
    let (qname, &[qt0, qt1, _, _]) = qquestion
        .split_last_chunk::<4>()
        .ok_or(WireError::BadName)?;
    let qtype = u16::from_be_bytes([qt0, qt1]);

    let (&[id0, id1, flags0, flags1, qd0, qd1, an0, an1, ..], body) = msg
        .split_first_chunk::<HEADER_LEN>()
        .ok_or(WireError::Short)?;
    if flags0 & FLAG_QR == 0 {
        return Err(WireError::NotResponse);
    }
    if [id0, id1] != [qid0, qid1] {
        return Err(WireError::IdMismatch);
    }
    if u16::from_be_bytes([qd0, qd1]) != 1 {
        return Err(WireError::QuestionMismatch);
    }
    let question = body.get(..qquestion.len()).ok_or(WireError::Short)?;
    if !question.eq_ignore_ascii_case(qquestion) {
        return Err(WireError::QuestionMismatch);
    }
    let opcode = (flags0 & OPCODE_MASK) >> 3;
    if opcode != 0 {
        return Err(WireError::Opcode(opcode));
    }
    let truncated = flags0 & FLAG_TC != 0;
    let rcode = flags1 & 0x0f;
    let mut out = Response {
        rcode,
        truncated,
        addrs: Vec::new(),
        ttl: None,
    };
    if rcode != RCODE_NOERROR {
        return Ok(out);
    }

    // Walk the answer section once, keeping what may matter.
    let ancount = u16::from_be_bytes([an0, an1]);
    // The question lies inside `msg`, so this is a position in it.
    let mut pos = HEADER_LEN.saturating_add(question.len());
    let mut cnames: Vec<(Vec<u8>, Vec<u8>, u32)> = Vec::new();
    let mut found: Vec<(Vec<u8>, IpAddr, u32)> = Vec::new();
    for _ in 0..ancount {
        let rr = match read_record(msg, pos) {
            Ok(rr) => rr,
            Err(WireError::Short) if truncated => break,
            Err(e) => return Err(e),
        };
        pos = rr.next;
        if rr.class != CLASS_IN {
            continue;
        }
        match rr.rtype {
            TYPE_CNAME => {
                let (target, end) = read_name(msg, rr.data_start)?;
                if end != rr.next {
                    return Err(WireError::BadRdata);
                }
                cnames.push((rr.owner, target, rr.ttl));
            }
            TYPE_A | TYPE_AAAA if rr.rtype == qtype => {
                let data = msg.get(rr.data_start..rr.next).ok_or(WireError::Short)?;
                let ip = if let Ok(b) = <[u8; 4]>::try_from(data) {
                    (qtype == TYPE_A).then(|| IpAddr::V4(Ipv4Addr::from(b)))
                } else if let Ok(b) = <[u8; 16]>::try_from(data) {
                    (qtype == TYPE_AAAA).then(|| IpAddr::V6(Ipv6Addr::from(b)))
                } else {
                    None
                };
                found.push((rr.owner, ip.ok_or(WireError::BadRdata)?, rr.ttl));
            }
            _ => {}
        }
    }

    // Follow the chain from the question's name.
    let mut name = qname.to_ascii_lowercase();
    let mut ttl = u32::MAX;
    for _ in 0..MAX_CNAME_HOPS {
        match cnames.iter().find(|(owner, _, _)| *owner == name) {
            Some((_, target, t)) => {
                name.clone_from(target);
                ttl = ttl.min(*t);
            }
            None => break,
        }
    }
    for (owner, ip, t) in found {
        if owner == name {
            out.addrs.push(ip);
            ttl = ttl.min(t);
        }
    }
    if !out.addrs.is_empty() {
        out.ttl = Some(ttl);
    }
    Ok(out)
}

/// One resource record: owner (lowercase wire form), type, class, TTL and where its data is.
struct Record {
    owner: Vec<u8>,
    rtype: u16,
    class: u16,
    ttl: u32,
    data_start: usize,
    /// End of the data, which is where the next record starts.
    next: usize,
}

fn read_record(msg: &[u8], pos: usize) -> Result<Record, WireError> {
    let (owner, pos) = read_name(msg, pos)?;
    let &[t0, t1, c0, c1, ttl0, ttl1, ttl2, ttl3, l0, l1] = msg
        .get(pos..)
        .and_then(<[u8]>::first_chunk::<10>)
        .ok_or(WireError::Short)?;
    let rtype = u16::from_be_bytes([t0, t1]);
    let class = u16::from_be_bytes([c0, c1]);
    // RFC 2181 §8: a TTL with the top bit set is treated as zero.
    let ttl = match u32::from_be_bytes([ttl0, ttl1, ttl2, ttl3]) {
        t if t > i32::MAX as u32 => 0,
        t => t,
    };
    let len = usize::from(u16::from_be_bytes([l0, l1]));
    // The ten bytes were there, so data_start <= msg.len().
    let data_start = pos.saturating_add(10);
    let next = data_start.checked_add(len).ok_or(WireError::Short)?;
    if next > msg.len() {
        return Err(WireError::Short);
    }
    Ok(Record {
        owner,
        rtype,
        class,
        ttl,
        data_start,
        next,
    })
}

/// Reads the (possibly compressed) name at `pos`. Returns it in lowercase wire form (length
/// octets, labels, the root's zero) and the position just after it in the message.
fn read_name(msg: &[u8], mut pos: usize) -> Result<(Vec<u8>, usize), WireError> {
    let mut name = Vec::with_capacity(32);
    let mut end = None;
    let mut pointers = 0usize;
    // `pos` always indexes a byte of `msg` when a step begins, and a step moves it by at most
    // 64 bytes, so none of the sums below can overflow (saturating only makes that explicit).
    loop {
        let (&len, rest) = msg
            .get(pos..)
            .and_then(<[u8]>::split_first)
            .ok_or(WireError::Short)?;
        match len & 0xc0 {
            0x00 if len == 0 => {
                name.push(0);
                if name.len() > MAX_NAME_WIRE {
                    return Err(WireError::BadLabel);
                }
                return Ok((name, end.unwrap_or(pos.saturating_add(1))));
            }
            0x00 => {
                let label = rest.get(..usize::from(len)).ok_or(WireError::Short)?;
                name.push(len);
                name.extend(label.iter().map(u8::to_ascii_lowercase));
                if name.len() >= MAX_NAME_WIRE {
                    return Err(WireError::BadLabel);
                }
                pos = pos.saturating_add(usize::from(len)).saturating_add(1);
            }
            0xc0 => {
                let &low = rest.first().ok_or(WireError::Short)?;
                let target = usize::from(u16::from_be_bytes([len & 0x3f, low]));
                pointers = pointers.saturating_add(1);
                // Strictly backwards: every jump lands earlier, so the walk ends.
                if target >= pos || pointers > MAX_POINTERS {
                    return Err(WireError::BadLabel);
                }
                end.get_or_insert(pos.saturating_add(2));
                pos = target;
            }
            // 0x40 (extended label types) and 0x80 are reserved.
            _ => return Err(WireError::BadLabel),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::indexing_slicing,
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::arithmetic_side_effects
    )]
    use super::*;

    /// `example.com` A, ID 0x1234 (what `dig +norec`-style tools send, with RD set).
    const QUERY_A: &[u8] = &[
        0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, //
        7, b'e', b'x', b'a', b'm', b'p', b'l', b'e', 3, b'c', b'o', b'm', 0, //
        0x00, 0x01, 0x00, 0x01,
    ];

    /// Response to QUERY_A: `www`-less CNAME chain example.com → cdn.example.net (compressed
    /// against the question) → two A records, plus an RRSIG-like record of another type.
    fn response_a() -> Vec<u8> {
        let mut r = vec![
            0x12, 0x34, 0x81, 0x80, 0x00, 0x01, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00, //
            7, b'E', b'x', b'A', b'm', b'p', b'l', b'e', 3, b'c', b'o', b'm', 0, //
            0x00, 0x01, 0x00, 0x01,
        ];
        // example.com CNAME cdn.example.net, TTL 300: name = pointer to 12.
        r.extend_from_slice(&[0xc0, 12, 0, 5, 0, 1, 0, 0, 0x01, 0x2c, 0, 17]);
        let cname_at = r.len();
        r.extend_from_slice(&[3, b'c', b'd', b'n', 7]);
        r.extend_from_slice(b"example");
        r.extend_from_slice(&[3, b'n', b'e', b't', 0]);
        // cdn.example.net A 198.51.100.7 TTL 60 (owner compressed to the CNAME target).
        r.extend_from_slice(&[0xc0, cname_at as u8, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
        r.extend_from_slice(&[198, 51, 100, 7]);
        // A record of type 46 (RRSIG) to skip.
        r.extend_from_slice(&[
            0xc0,
            cname_at as u8,
            0,
            46,
            0,
            1,
            0,
            0,
            0,
            60,
            0,
            3,
            1,
            2,
            3,
        ]);
        // cdn.example.net A 198.51.100.8 TTL 3600.
        r.extend_from_slice(&[0xc0, cname_at as u8, 0, 1, 0, 1, 0, 0, 0x0e, 0x10, 0, 4]);
        r.extend_from_slice(&[198, 51, 100, 8]);
        r
    }

    #[test]
    fn query_golden_bytes() {
        assert_eq!(
            encode_query(0x1234, "example.com", TYPE_A).unwrap(),
            QUERY_A
        );
        assert_eq!(
            encode_query(0x1234, "example.com.", TYPE_A).unwrap(),
            QUERY_A
        );
        let aaaa = encode_query(0xbeef, "v6.test", TYPE_AAAA).unwrap();
        assert_eq!(
            aaaa,
            [
                0xbe, 0xef, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, //
                2, b'v', b'6', 4, b't', b'e', b's', b't', 0, 0, 28, 0, 1
            ]
        );
    }

    #[test]
    fn names_are_checked() {
        for bad in [
            "",
            ".",
            "a..b",
            ".a",
            "a b",
            "a\0b",
            "ünï.test",
            &"a".repeat(64),
            &["a"; 128].join("."),
        ] {
            assert_eq!(
                encode_query(1, bad, TYPE_A),
                Err(WireError::BadName),
                "{bad:?}"
            );
        }
        let longest = [&"a".repeat(63)[..]; 4].join(".")[..253].to_owned();
        assert!(check_name(&longest).is_ok());
        assert_eq!(
            encode_query(1, &longest, TYPE_A).unwrap().len(),
            12 + 255 + 4
        );
        assert!(check_name(&format!("{longest}a")).is_err());
        assert!(check_name(&format!("{longest}.")).is_ok());
    }

    #[test]
    fn cname_chain_and_min_ttl() {
        let r = decode_response(&response_a(), QUERY_A).unwrap();
        assert_eq!(
            r,
            Response {
                rcode: 0,
                truncated: false,
                addrs: vec![
                    "198.51.100.7".parse().unwrap(),
                    "198.51.100.8".parse().unwrap()
                ],
                ttl: Some(60),
            }
        );
    }

    /// Captured from dnsmasq 2.90 (`--cname=chain.test,alias.test --cname=alias.test,both.test
    /// --host-record=both.test,198.51.100.8,2001:db8::8`): a two-hop chain, compressed.
    #[test]
    fn dnsmasq_golden_chain() {
        let hex = "12348580000100030000000005636861696e04746573740000010001c00c000500010000012c\
                   000c05616c696173047465737400c028000500010000012c000b04626f7468047465737400c0\
                   40000100010000012c0004c6336408";
        let r: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        let q = encode_query(0x1234, "chain.test", TYPE_A).unwrap();
        let d = decode_response(&r, &q).unwrap();
        assert_eq!(d.addrs, vec!["198.51.100.8".parse::<IpAddr>().unwrap()]);
        assert_eq!((d.rcode, d.ttl, d.truncated), (0, Some(300), false));
        // The same answer to an AAAA question is a question mismatch.
        let q6 = encode_query(0x1234, "chain.test", TYPE_AAAA).unwrap();
        assert_eq!(decode_response(&r, &q6), Err(WireError::QuestionMismatch));
    }

    #[test]
    fn aaaa_answer() {
        let q = encode_query(7, "v6.test", TYPE_AAAA).unwrap();
        let mut r = q.clone();
        r[2] = 0x85; // QR AA RD
        r[3] = 0x80; // RA
        r[7] = 2; // ANCOUNT
        r.extend_from_slice(&[0xc0, 12, 0, 28, 0, 1, 0, 0, 0, 10, 0, 16]);
        r.extend_from_slice(&"2001:db8::7".parse::<Ipv6Addr>().unwrap().octets());
        // An A record in an AAAA answer is ignored (not the queried type).
        r.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 10, 0, 4, 192, 0, 2, 1]);
        let d = decode_response(&r, &q).unwrap();
        assert_eq!(d.addrs, vec!["2001:db8::7".parse::<IpAddr>().unwrap()]);
        assert_eq!(d.ttl, Some(10));
    }

    #[test]
    fn rcodes_and_mismatches() {
        let mut r = response_a();
        r[3] = 0x83; // NXDOMAIN
        let d = decode_response(&r, QUERY_A).unwrap();
        assert_eq!((d.rcode, d.addrs.len(), d.ttl), (RCODE_NXDOMAIN, 0, None));

        let mut r = response_a();
        r[1] ^= 1;
        assert_eq!(decode_response(&r, QUERY_A), Err(WireError::IdMismatch));
        let mut r = response_a();
        r[2] &= !0x80;
        assert_eq!(decode_response(&r, QUERY_A), Err(WireError::NotResponse));
        let mut r = response_a();
        r[14] = b'q'; // question name differs
        assert_eq!(
            decode_response(&r, QUERY_A),
            Err(WireError::QuestionMismatch)
        );
        let mut r = response_a();
        r[26] = 28; // question type AAAA
        assert_eq!(
            decode_response(&r, QUERY_A),
            Err(WireError::QuestionMismatch)
        );
        let mut r = response_a();
        r[5] = 2; // QDCOUNT
        assert_eq!(
            decode_response(&r, QUERY_A),
            Err(WireError::QuestionMismatch)
        );
        let mut r = response_a();
        r[2] |= 2 << 3; // opcode STATUS
        assert_eq!(decode_response(&r, QUERY_A), Err(WireError::Opcode(2)));
        assert!(WireError::IdMismatch.is_foreign());
        assert!(!WireError::Short.is_foreign());
    }

    #[test]
    fn no_data_and_unrelated_owner() {
        // NOERROR, no answers: NODATA.
        let mut r = QUERY_A.to_vec();
        r[2] = 0x81;
        let d = decode_response(&r, QUERY_A).unwrap();
        assert_eq!((d.rcode, d.addrs.len(), d.ttl), (0, 0, None));
        // An A record for another name is not ours.
        r[7] = 1;
        r.extend_from_slice(&[1, b'x', 0, 0, 1, 0, 1, 0, 0, 0, 9, 0, 4, 192, 0, 2, 9]);
        assert!(decode_response(&r, QUERY_A).unwrap().addrs.is_empty());
    }

    #[test]
    fn truncation() {
        let full = response_a();
        // Without TC, a message cut inside the answers is an error …
        let cut = &full[..full.len() - 3];
        assert_eq!(decode_response(cut, QUERY_A), Err(WireError::Short));
        // … with TC, the answers that fit are used.
        let mut cut = cut.to_vec();
        cut[2] |= FLAG_TC;
        let d = decode_response(&cut, QUERY_A).unwrap();
        assert!(d.truncated);
        assert_eq!(d.addrs, vec!["198.51.100.7".parse::<IpAddr>().unwrap()]);
    }

    #[test]
    fn bad_pointers_and_labels() {
        let mut r = QUERY_A.to_vec();
        r[2] = 0x81;
        r[7] = 1;
        let base = r.clone();
        // Pointer to itself.
        let at = r.len() as u8;
        r.extend_from_slice(&[0xc0, at, 0, 1, 0, 1, 0, 0, 0, 9, 0, 4, 1, 2, 3, 4]);
        assert_eq!(decode_response(&r, QUERY_A), Err(WireError::BadLabel));
        // Pointer forwards.
        let mut r = base.clone();
        r.extend_from_slice(&[0xc0, 200, 0, 1, 0, 1, 0, 0, 0, 9, 0, 4, 1, 2, 3, 4]);
        assert_eq!(decode_response(&r, QUERY_A), Err(WireError::BadLabel));
        // Reserved label type.
        let mut r = base.clone();
        r.extend_from_slice(&[0x41, 0, 0, 1, 0, 1, 0, 0, 0, 9, 0, 4, 1, 2, 3, 4]);
        assert_eq!(decode_response(&r, QUERY_A), Err(WireError::BadLabel));
        // A with 5 data bytes for the queried name.
        let mut r = base.clone();
        r.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 9, 0, 5, 1, 2, 3, 4, 5]);
        assert_eq!(decode_response(&r, QUERY_A), Err(WireError::BadRdata));
        // Names growing through backward pointers: each record's owner is 63 bytes + a
        // pointer to the previous owner. The fourth reaches 4 * 64 + 1 = 257 bytes.
        let mut r = base.clone();
        let mut prev: Option<usize> = None;
        for (n, fill) in [b'a', b'b', b'c', b'd'].into_iter().enumerate() {
            let here = r.len();
            r.push(63);
            r.extend_from_slice(&[fill; 63]);
            match prev {
                None => r.push(0),
                Some(p) => r.extend_from_slice(&[0xc0 | (p >> 8) as u8, p as u8]),
            }
            r.extend_from_slice(&[0, 99, 0, 1, 0, 0, 0, 9, 0, 0]); // type 99, no data
            r[7] = n as u8 + 1;
            prev = Some(here);
            let res = decode_response(&r, QUERY_A);
            if n < 3 {
                assert!(res.is_ok(), "{n}: {res:?}");
            } else {
                assert_eq!(res, Err(WireError::BadLabel));
            }
        }
    }

    #[test]
    fn cname_loop_is_bounded() {
        // a.test CNAME b.test, b.test CNAME a.test: no addresses, no hang.
        let q = encode_query(9, "a.test", TYPE_A).unwrap();
        let mut r = q.clone();
        r[2] = 0x81;
        r[7] = 2;
        r.extend_from_slice(&[0xc0, 12, 0, 5, 0, 1, 0, 0, 0, 9, 0, 4, 1, b'b', 0xc0, 14]);
        let b_at = r.len() - 4;
        r.extend_from_slice(&[0xc0, b_at as u8, 0, 5, 0, 1, 0, 0, 0, 9, 0, 2, 0xc0, 12]);
        let d = decode_response(&r, &q).unwrap();
        assert!(d.addrs.is_empty());
    }

    #[test]
    fn ttl_with_top_bit_is_zero() {
        let q = encode_query(9, "a.test", TYPE_A).unwrap();
        let mut r = q.clone();
        r[2] = 0x81;
        r[7] = 1;
        r.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0x80, 0, 0, 0, 0, 4, 1, 2, 3, 4]);
        assert_eq!(decode_response(&r, &q).unwrap().ttl, Some(0));
    }

    /// xorshift64*, so the garbage is reproducible.
    fn rng(state: &mut u64) -> u64 {
        *state ^= *state >> 12;
        *state ^= *state << 25;
        *state ^= *state >> 27;
        state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    #[test]
    fn truncated_and_garbage_inputs_never_panic() {
        let good = response_a();
        // Every prefix, with and without TC.
        for n in 0..=good.len() {
            let _ = decode_response(&good[..n], QUERY_A);
            let mut tc = good[..n].to_vec();
            if let Some(b) = tc.get_mut(2) {
                *b |= FLAG_TC;
            }
            let _ = decode_response(&tc, QUERY_A);
        }
        // Mutations of the good response, and pure noise behind a valid header + question.
        let mut s = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            let mut m = good.clone();
            for _ in 0..1 + rng(&mut s) % 6 {
                let i = (rng(&mut s) as usize) % m.len();
                m[i] = rng(&mut s) as u8;
            }
            let cut = (rng(&mut s) as usize) % (m.len() + 1);
            let _ = decode_response(&m[..cut], QUERY_A);
            let _ = decode_response(&m, QUERY_A);

            let mut noise = QUERY_A.to_vec();
            noise[2] = 0x81 | (rng(&mut s) as u8 & FLAG_TC);
            noise[7] = rng(&mut s) as u8;
            let len = (rng(&mut s) % 300) as usize;
            noise.extend((0..len).map(|_| match rng(&mut s) % 4 {
                0 => 0xc0,
                1 => 0,
                _ => rng(&mut s) as u8,
            }));
            let _ = decode_response(&noise, QUERY_A);
        }
        // Garbage queries are rejected, not indexed into.
        for q in [&[][..], &[0; 12], &[0; 15], &QUERY_A[..13]] {
            let _ = decode_response(&good, q);
        }
    }
}
