//! `buf ^= keystream`, with the XOR done here rather than by the `cipher` crate.
//!
//! `cipher` XORs one byte at a time and relies on LLVM's loop vectorizer to widen that, but in
//! our release build the vectorizer never runs: the binary is built with opt-level "z" and fat
//! LTO, and LTO's post-link pipeline, where vectorization happens, follows the binary's
//! opt-level. The byte loop then took as long as ChaCha20 itself (45 % of the client's CPU on
//! x86_64 in a perf profile). Asking the cipher for keystream only and XORing eight bytes at a
//! time needs no vectorizer.

use chacha20::cipher::StreamCipher;

/// Keystream generated per step: a multiple of every block size (ChaCha 64, AES 16), small
/// enough for the stack, and 16 ChaCha blocks, the widest batch of the AVX-512 backend (8
/// went through its narrower path).
pub const STEP: usize = 1024;

/// Keystream is asked of the `chacha20` crate in multiples of this: two blocks. A request
/// that ends inside a block, or is a single block, takes its SIMD backends' one-block path,
/// which calls its rotate intrinsics as functions (they need AVX-512VL, the path enables only
/// AVX-512F): on a Xeon 64 bytes took 430 ns, 66 bytes 775 ns, 128 bytes 100 ns.
pub const BATCH: usize = 128;

/// XORs `buf` with the next `buf.len()` bytes of `cipher`'s keystream, then leaves `cipher`
/// anywhere up to `BATCH` bytes further: it serves one message only. Fails (leaving `buf`
/// partly processed) only if the keystream runs out, which our chunk sizes never reach.
pub fn apply(cipher: &mut dyn StreamCipher, buf: &mut [u8]) -> Result<(), ()> {
    let mut ks = [0u8; STEP];
    for piece in buf.chunks_mut(STEP) {
        let want = piece.len().next_multiple_of(BATCH).min(STEP);
        cipher
            .try_write_keystream(&mut ks[..want])
            .map_err(|_| ())?;
        xor(piece, &ks[..piece.len()]);
    }
    Ok(())
}

/// `data ^= ks` over the shorter of the two: eight bytes at a time on 64-bit targets, whose
/// unaligned loads cost nothing extra; byte by byte on 32-bit ones. There a word loop needs
/// `lwl`/`lwr` pairs on MIPS for the unaligned chunk payloads (they start 50 bytes into a
/// buffer), and qemu, which the router benchmark runs under, emulates those slowly: with words
/// the mipsel client reached 0.31-0.34x libev's ChaCha20 throughput, with bytes 0.46-0.68x.
pub fn xor(data: &mut [u8], ks: &[u8]) {
    if cfg!(target_pointer_width = "64") {
        xor_words(data, ks);
    } else {
        for (d, k) in data.iter_mut().zip(ks) {
            *d ^= k;
        }
    }
}

fn xor_words(data: &mut [u8], ks: &[u8]) {
    // Equal lengths, so that both remainders below line up.
    let n = data.len().min(ks.len());
    let (data, ks) = (&mut data[..n], &ks[..n]);
    let mut words = data.chunks_exact_mut(8);
    let mut ks_words = ks.chunks_exact(8);
    for (d, k) in words.by_ref().zip(ks_words.by_ref()) {
        let (mut a, mut b) = ([0u8; 8], [0u8; 8]);
        a.copy_from_slice(d);
        b.copy_from_slice(k);
        d.copy_from_slice(&(u64::from_ne_bytes(a) ^ u64::from_ne_bytes(b)).to_ne_bytes());
    }
    for (d, k) in words.into_remainder().iter_mut().zip(ks_words.remainder()) {
        *d ^= k;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xor_matches_bytewise_for_every_length_and_offset() {
        let ks: [u8; 40] = core::array::from_fn(|i| (i * 37 + 11) as u8);
        for len in 0..40 {
            for off in 0..8 {
                let mut data: [u8; 48] = core::array::from_fn(|i| (i * 101) as u8);
                let mut want = data;
                for i in 0..len {
                    want[off + i] ^= ks[i];
                }
                let mut bytes = data;
                xor(&mut data[off..off + len], &ks[..len]);
                assert_eq!(data, want, "len {len} offset {off}");
                xor_words(&mut bytes[off..off + len], &ks[..len]);
                assert_eq!(bytes, want, "words, len {len} offset {off}");
                // A longer keystream: only the data's length is used.
                let mut again = want;
                xor(&mut again[off..off + len], &ks[..len]);
                xor(&mut again[off..off + len], &ks);
                assert_eq!(again, want, "longer keystream, len {len} offset {off}");
                xor_words(&mut again[off..off + len], &ks[..len]);
                xor_words(&mut again[off..off + len], &ks);
                assert_eq!(
                    again, want,
                    "words, longer keystream, len {len} offset {off}"
                );
            }
        }
    }
}
