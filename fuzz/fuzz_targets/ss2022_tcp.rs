//! The Shadowsocks 2022 TCP header decoders (`proto::ss2022::tcp`): the server's
//! `open_request_fixed` + `open_request_variable`, the client's `open_response_fixed`, and the
//! chunk `Opener` after them.
//!
//! Input: `[method][mode][rest]`; the method is `METHODS[byte % 3]` with a fixed PSK, the clock
//! a fixed `NOW`.
//!
//! * even `mode`: `rest` is raw wire, tried as a request and as a response (followed by one
//!   chunk). Random bytes never authenticate: framing and `NeedMore` accounting on garbage.
//! * odd `mode`: `rest` describes a request (`[mutation][position u32][timestamp offset i8]
//!   [padding u16][target len][target…][payload…]`) that `seal_request` seals; it is left
//!   intact, truncated, or has one bit flipped. Checked: intact decodes to exactly what was
//!   sealed (or a validation error by cause, never `BadTag`); truncated is `NeedMore` of exactly
//!   the rest of the element; flipped is `BadTag`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ss_smol::proto::address::Address;
use ss_smol::proto::ss2022::salts::SaltPool;
use ss_smol::proto::ss2022::tcp::{self, LENGTH_LEN};
use ss_smol::proto::ss2022::{Error, Psk, METHODS};

const NOW: u64 = 1_700_000_000;

struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn byte(&mut self) -> u8 {
        let (&b, rest) = self.0.split_first().unwrap_or((&0, &[]));
        self.0 = rest;
        b
    }
    fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.byte(), self.byte()])
    }
    fn u32(&mut self) -> u32 {
        u32::from_be_bytes([self.byte(), self.byte(), self.byte(), self.byte()])
    }
    fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        head
    }
}

/// Decodes a request: fixed header, variable header; (target, padding, payload).
fn decode_request(psk: &Psk, wire: &mut [u8]) -> Result<(Address, u16, Vec<u8>), Error> {
    let mut fixed = tcp::open_request_fixed(psk, wire, NOW, &mut SaltPool::new(4))?;
    let rest = &mut wire[tcp::request_fixed_len(psk.method())..];
    let head = tcp::open_request_variable(&mut fixed, rest)?;
    assert!(head.payload.start <= head.payload.end && head.payload.end <= rest.len());
    Ok((head.target, head.padding, rest[head.payload].to_vec()))
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let method = METHODS[input.byte() as usize % METHODS.len()];
    let psk = Psk::from_bytes(method, &[0x42; 32][..method.key_len()]).unwrap();
    let mode = input.byte();

    if mode % 2 == 0 {
        let mut wire = input.0.to_vec();
        if let Err(Error::NeedMore(n)) = decode_request(&psk, &mut wire) {
            assert!(n > 0 && n <= tcp::request_fixed_len(method) + 0xFFFF + 16);
        }
        let mut wire = input.0.to_vec();
        let head = tcp::response_fixed_len(method);
        if let Ok(mut r) = tcp::open_response_fixed(&psk, &[0; 32], &mut wire, NOW) {
            let rest = &mut wire[head..];
            if r.opener.open_payload(r.first_len, rest).is_ok() {
                let at = usize::from(r.first_len) + 16;
                if let Some(chunk) = rest.get_mut(at..) {
                    if let Ok(n) = r.opener.open_length(chunk) {
                        let _ = r.opener.open_payload(n, &mut chunk[LENGTH_LEN..]);
                    }
                }
            }
        }
        return;
    }

    let mutation = (mode >> 1) % 3;
    let position = input.u32() as usize;
    let skew = input.byte() as i8;
    let padding = input.u16() % 1000;
    let tlen = input.byte() as usize;
    let target = Address::parse(input.take(tlen))
        .map(|(a, _)| a)
        .unwrap_or_else(|_| Address::from_host_port("192.0.2.1:80").unwrap());
    let payload = input.take(input.0.len().min(4096)).to_vec();
    let now = NOW.wrapping_add_signed(i64::from(skew));
    let salt = [0x17u8; 32];
    let Some(len) = tcp::request_len(method, &target, padding, payload.len()) else { return };
    let mut wire = vec![0u8; len];
    if tcp::seal_request(&psk, &salt, now, &target, padding, &payload, &mut wire).is_err() {
        // Refused only for what a server would refuse too.
        assert!(padding > 900 || (padding == 0 && payload.is_empty()));
        return;
    }
    let fixed_len = tcp::request_fixed_len(method);
    match mutation {
        0 => match decode_request(&psk, &mut wire) {
            Ok((t, p, body)) => {
                assert_eq!((t, p), (target, padding));
                assert_eq!(body, payload);
                assert!(skew.unsigned_abs() <= 30);
            }
            Err(Error::ClockSkew { .. }) => assert!(skew.unsigned_abs() > 30),
            Err(e) => panic!("sealed request refused: {e:?}"),
        },
        1 => {
            let cut = position % len;
            wire.truncate(cut);
            match decode_request(&psk, &mut wire) {
                Err(Error::NeedMore(n)) => {
                    let end = if cut < fixed_len { fixed_len } else { len };
                    assert_eq!(n, end - cut);
                }
                // The fixed header was whole: its checks run first.
                Err(Error::ClockSkew { .. }) => assert!(cut >= fixed_len),
                other => panic!("truncated request at {cut}: {other:?}"),
            }
        }
        _ => {
            let bit = position % (len * 8);
            wire[bit / 8] ^= 1 << (bit % 8);
            let got = decode_request(&psk, &mut wire);
            assert!(
                got == Err(Error::BadTag)
                    || (bit / 8 >= fixed_len && matches!(got, Err(Error::ClockSkew { .. }))),
                "bit {bit}: {got:?}"
            );
        }
    }
});
