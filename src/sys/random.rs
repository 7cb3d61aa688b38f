//! Salts from the OS CSPRNG. The protocol layer takes salts as input; this is where they come
//! from.

use crate::proto::cipher::MAX_SALT_LEN;

/// Fills `salt` with bytes from the OS CSPRNG, taken from a per-thread reserve that one
/// `getrandom` call refills 16 salts' worth at a time: a salt per connection, and per UDP
/// packet, was a system call each. Bytes are used once and wiped from the reserve as they are
/// handed out.
pub fn random_salt(salt: &mut [u8]) -> Result<(), getrandom::Error> {
    const RESERVE: usize = 16 * MAX_SALT_LEN;
    // The count of bytes not handed out yet, which are the reserve's last ones. Starting at 0
    // (empty, filled on first use) keeps the thread-local all zeros: in .tbss, not 520 bytes
    // of .tdata in the binary.
    thread_local! {
        static RESERVE_BYTES: core::cell::RefCell<([u8; RESERVE], usize)> =
            const { core::cell::RefCell::new(([0; RESERVE], 0)) };
    }
    if salt.len() > RESERVE {
        return getrandom::fill(salt);
    }
    RESERVE_BYTES.with(|r| {
        let mut r = r.borrow_mut();
        let (bytes, left) = &mut *r;
        if *left < salt.len() {
            getrandom::fill(bytes)?;
            *left = RESERVE;
        }
        let start = RESERVE - *left;
        let taken = &mut bytes[start..start + salt.len()];
        salt.copy_from_slice(taken);
        taken.fill(0);
        *left -= salt.len();
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn salts_from_the_reserve_are_never_repeated() {
        let mut seen = std::collections::HashSet::new();
        for len in [16, 24, 32, 32, 16].iter().cycle().take(200) {
            let mut salt = [0u8; MAX_SALT_LEN];
            random_salt(&mut salt[..*len]).unwrap();
            assert!(salt[..*len].iter().any(|&b| b != 0));
            assert!(seen.insert(salt[..*len].to_vec()), "a salt came out twice");
        }
        let mut big = [0u8; 1000];
        random_salt(&mut big).unwrap();
        assert!(big.iter().any(|&b| b != 0));
    }
}
