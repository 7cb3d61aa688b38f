//! Golden vectors captured from shadowsocks-libev 3.3.5's ss-local (password "golden-pw"):
//! a SOCKS5 CONNECT to example.com:80 followed by `GET / HTTP/1.0\r\n\r\n`, and a SOCKS5 UDP
//! datagram `dns?` to 198.51.100.1:53. Decoding them proves our key derivation, nonce order
//! and framing match the reference peer byte for byte.

#![allow(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::arithmetic_side_effects
)]

use super::address::Address;
use super::cipher::{MasterKey, Method};
use super::tcp::Decryptor;
use super::{udp, ParseError};

struct Vector {
    method: Method,
    tcp: &'static str,
    udp: &'static str,
}

const VECTORS: [Vector; 5] = [
    Vector {
        method: Method::ChaCha20Poly1305,
        tcp: "b9568bdab4d99b8ce527213d00fa64eb7035b1c8cd5622cf52476cca6aeb2d3eed9459e0c69db9b0ae2165beaa46ece84e3b9e515510814483ef06dd2581e8c5ee8ff4944292fd9e7a3e6c10bf88c3009a485efbc2ae826eada3e90567b7bcf8b5357ef6941220d1945b6bfbc594e8365faaac24fe20adf978721adec9e87a090026c72310",
        udp: "cb45b9d5c79889d6e071a8905db1f796a522dfba385fc2693cb0b50bc170f03ccbc48af9aa79904f3860339de75386fe81c162b7fac93ff77350b2",
    },
    Vector {
        method: Method::Aes128Gcm,
        tcp: "29d898b68d9a8566bcf79d227bb9271c5dce5593183256de260da5860543a9e4ca9e55d56f61f3a7ade58c7c905ca86e49ba4ee6be324c0229332f5e9742d075a3aa065bc5bab564c7c875aa3cba543a815db26cbcac48c9f3e9772dc20f6fbeadd607fb0ef6cbe7f0286017dffb0d5fc8d68b1d55",
        udp: "b647c07077c4fb672e0e2a63b80d48dd0dacd225facb3bcbd329eb1ecfe4998ea0d7f4b1b69dc1053da6c3",
    },
    Vector {
        method: Method::Aes192Gcm,
        tcp: "372b8b49e13c869aaabe3f1ab69f75d76cb818ff2d6bf86080b304f36402e59fc1488526504ff1b8850562f58dca4c2d23c516579751cce79a1772f16fada38c56b2fac49e55cd990bcc837a6cb646e4c998ab28fd32d2cbee458eb804a290d292dd745513fd899896358c42bc4011fad0c6dfe9b4bef31256ba1c9a4a",
        udp: "d131078dbec91abb1486b310267f048ce1513b3259d9ab6e24c79129ee8a759c4ff059d53c380e4573a3b4eeaab5800738ea4e",
    },
    Vector {
        method: Method::Aes256Gcm,
        tcp: "3c5d608d19b076e3ee0bce39d0316e6985b1c888c71796fabcdb420c33a0db03d2c52994782d298828aa78e900635f61ec9512eb9095cb79c0d1daa6014e443fa86be273c38052f56e1e6bbf04391dd32890dd18144952dea2702f12c89df18ffb7a2142ba614583a62a48993a02699b7e2527f43f2dac460c239b003e95f2fa85292e8271",
        udp: "b2290b1b5b54d01de0bdb3629572f762037e3d416b029a21da9837a424bdca126170eb86bf25bf4190dabfa829ee8caacb506d75e36d6943df7747",
    },
    Vector {
        method: Method::XChaCha20Poly1305,
        tcp: "5b45faeb7b32a9d5009b129f9d6f72d5c406fbcb273e9fab6e860b6eae45467907e08a4435ff7a1ecd223cb66f1dbd813d973c946331c19553bd6c93c03384b0b7fd62332828a328f7a91b8ad1f8b86580bb3258f4afd61dc8d0c2a14895ededf9afdb518d6b41b21c1d1d9bd4dff5942ef4cd1cbfc333b6b9688ce6a2cd7ce4abd5292f9a",
        udp: "037779d88ed6dbec70315513d82d7201c1ca242caaaa110100a9afd8b04af13466edfd4ad01afa865d5692470897476e50bd1b06e2c58a514b6a16",
    },
];

use super::hex as unhex;

#[test]
fn libev_tcp_stream_decodes() {
    for v in &VECTORS {
        let key = MasterKey::from_password(v.method, b"golden-pw");
        let mut wire = unhex(v.tcp);
        let mut dec = Decryptor::new(v.method, &key);
        let mut plain = Vec::new();
        let mut at = 0;
        loop {
            match dec.decode(&mut wire[at..]) {
                Ok(step) => {
                    plain.extend_from_slice(&wire[at + step.plain.start..at + step.plain.end]);
                    at += step.consumed;
                }
                Err(ParseError::NeedMore(_)) => break,
                Err(e) => panic!("{:?}: {e}", v.method),
            }
        }
        assert_eq!(at, wire.len(), "{:?}", v.method);
        let (addr, used) = Address::parse(&plain).unwrap();
        assert_eq!(addr, Address::from_host_port("example.com:80").unwrap());
        assert_eq!(&plain[used..], b"GET / HTTP/1.0\r\n\r\n");
    }
}

#[test]
fn libev_udp_packet_opens() {
    for v in &VECTORS {
        let key = MasterKey::from_password(v.method, b"golden-pw");
        let mut pkt = unhex(v.udp);
        let r = udp::open(v.method, &key, &mut pkt).unwrap();
        let (addr, used) = Address::parse(&pkt[r.clone()]).unwrap();
        assert_eq!(addr, Address::from_host_port("198.51.100.1:53").unwrap());
        assert_eq!(&pkt[r.start + used..r.end], b"dns?");
    }
}

#[test]
fn our_encryptor_reproduces_libev_bytes() {
    use super::tcp::{Encryptor, HEADER_LEN, OVERHEAD};
    for v in &VECTORS {
        let key = MasterKey::from_password(v.method, b"golden-pw");
        let wire = unhex(v.tcp);
        let salt = &wire[..v.method.salt_len()];
        let mut enc = Encryptor::new(v.method, &key, salt);
        let mut ours = enc.salt().to_vec();
        // libev sent the address and the request as two chunks.
        let address = Address::from_host_port("example.com:80").unwrap().to_wire();
        for piece in [&address[..], b"GET / HTTP/1.0\r\n\r\n"] {
            let mut frame = vec![0u8; piece.len() + OVERHEAD];
            frame[HEADER_LEN..HEADER_LEN + piece.len()].copy_from_slice(piece);
            enc.seal_chunk(&mut frame).unwrap();
            ours.extend_from_slice(&frame);
        }
        assert_eq!(ours, wire, "{:?}", v.method);
    }
}
