//! Salts from the OS CSPRNG. The protocol layer takes salts as input; this is where they come
//! from.

use crate::proto::cipher::MAX_SALT_LEN;

/// Fills `salt` with bytes from the OS CSPRNG, taken from a per-thread reserve that one
/// `getrandom` call refills 16 salts' worth at a time: a salt per connection, and per UDP
/// packet, was a system call each. Bytes are used once and wiped from the reserve as they are
/// handed out.
pub fn random_salt(salt: &mut [u8]) -> Result<(), getrandom::Error> {
    const RESERVE: usize = 16 * MAX_SALT_LEN;
    thread_local! {
        static RESERVE_BYTES: core::cell::RefCell<([u8; RESERVE], usize)> =
            const { core::cell::RefCell::new(([0; RESERVE], RESERVE)) };
    }
    if salt.len() > RESERVE {
        return getrandom::fill(salt);
    }
    RESERVE_BYTES.with(|r| {
        let mut r = r.borrow_mut();
        let (bytes, used) = &mut *r;
        if RESERVE - *used < salt.len() {
            getrandom::fill(bytes)?;
            *used = 0;
        }
        let taken = &mut bytes[*used..*used + salt.len()];
        salt.copy_from_slice(taken);
        taken.fill(0);
        *used += salt.len();
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
