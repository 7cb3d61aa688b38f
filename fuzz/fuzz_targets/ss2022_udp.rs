//! The Shadowsocks 2022 UDP decoders (`proto::ss2022::udp`): `open_separate_header` then
//! `open_body`, and the packet-id window after them.
//!
//! Input: `[method][mode][rest]`; the method is `METHODS[byte % 3]` with a fixed PSK.
//!
//! * even `mode`: `rest` is a raw datagram, opened as from a client and as from a server; a
//!   payload range, if any, lies inside the packet.
//! * odd `mode`: `rest` describes a packet (`[mutation][position u32][flags][session id 8]
//!   [packet id 8][padding u16][target len][target…][payload…]`) that `seal_packet` seals;
//!   intact it opens to exactly that (and the window accepts its id once), truncated it is
//!   `ShortPacket` or `BadTag`, with a bit flipped it is `BadTag`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ss_smol::proto::address::Address;
use ss_smol::proto::ss2022::udp::{self, Header, Sender, UdpCipher};
use ss_smol::proto::ss2022::window::PacketWindow;
use ss_smol::proto::ss2022::{Error, Psk, METHODS, TAG_LEN};

const NOW: u64 = 1_700_000_000;

struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn byte(&mut self) -> u8 {
        let (&b, rest) = self.0.split_first().unwrap_or((&0, &[]));
        self.0 = rest;
        b
    }
    fn u64(&mut self) -> u64 {
        u64::from_be_bytes(std::array::from_fn(|_| self.byte()))
    }
    fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        head
    }
}

fn open(cipher: &UdpCipher, buf: &mut [u8], sender: Sender) -> Result<udp::Packet, Error> {
    let sep = udp::open_separate_header(cipher, buf)?;
    let session = cipher.session(sep.session_id);
    let p = udp::open_body(cipher, &session, sep, buf, NOW, sender)?;
    assert!(p.payload.start <= p.payload.end && p.payload.end <= buf.len());
    Ok(p)
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let method = METHODS[input.byte() as usize % METHODS.len()];
    let psk = Psk::from_bytes(method, &[0x42; 32][..method.key_len()]).unwrap();
    let cipher = UdpCipher::new(&psk);
    let mode = input.byte();

    if mode % 2 == 0 {
        for sender in [Sender::Client, Sender::Server] {
            let mut buf = input.0.to_vec();
            let _ = open(&cipher, &mut buf, sender);
        }
        return;
    }

    let mutation = (mode >> 1) % 3;
    let position = u32::from_be_bytes(std::array::from_fn(|_| input.byte())) as usize;
    let flags = input.byte();
    let server = flags & 1 == 1;
    let session_id = input.u64();
    let packet_id = input.u64();
    let padding = u16::from_be_bytes([input.byte(), input.byte()]) % 1500;
    let tlen = input.byte() as usize;
    let target = Address::parse(input.take(tlen))
        .map(|(a, _)| a)
        .unwrap_or_else(|_| Address::from_host_port("[2001:db8::1]:53").unwrap());
    let payload = input.take(input.0.len().min(2048)).to_vec();
    let nonce: [u8; 24] = std::array::from_fn(|i| (i as u8) ^ flags);
    let h = Header {
        session_id,
        packet_id,
        timestamp: NOW,
        client_session_id: server.then_some(!session_id),
        padding,
        target: &target,
    };
    let prefix = udp::prefix_len(method, &h);
    let mut wire = vec![0u8; prefix + payload.len() + TAG_LEN];
    wire[prefix..prefix + payload.len()].copy_from_slice(&payload);
    udp::seal_packet(&cipher, &cipher.session(session_id), &h, &nonce, &mut wire)
        .expect("room was made");
    let sender = if server { Sender::Server } else { Sender::Client };
    match mutation {
        0 => {
            let p = open(&cipher, &mut wire, sender).expect("sealed packet opens");
            assert_eq!((p.session_id, p.packet_id), (session_id, packet_id));
            assert_eq!(p.client_session_id, h.client_session_id);
            assert_eq!((p.padding, &p.address), (padding, &target));
            assert_eq!(&wire[p.payload], &payload[..]);
            let mut w = PacketWindow::new();
            assert!(w.accept(packet_id));
            assert!(!w.accept(packet_id));
        }
        1 => {
            let cut = position % wire.len();
            wire.truncate(cut);
            let got = open(&cipher, &mut wire, sender);
            assert!(matches!(got, Err(Error::ShortPacket | Error::BadTag)), "cut {cut}: {got:?}");
        }
        _ => {
            let bit = position % (wire.len() * 8);
            wire[bit / 8] ^= 1 << (bit % 8);
            let got = open(&cipher, &mut wire, sender);
            assert_eq!(got.err(), Some(Error::BadTag), "bit {bit}");
        }
    }
});
