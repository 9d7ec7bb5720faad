//! A plugin version: the sha256 of its `.wasm` bytes.
//!
//! Content addressing means two deployments of the same file are the same version whatever
//! they are called, and a report ("version 3f2a9c… answered") points at exactly one binary.

use std::fmt;

use sha2::{Digest, Sha256};

/// The sha256 of a plugin's bytes. `Display` shows the short form (12 hex digits).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Version([u8; 32]);

impl Version {
    /// How many hex digits [`Version::short`] and `Display` show: enough to tell versions apart
    /// in logs and headers, short enough to read.
    pub const SHORT_LEN: usize = 12;

    /// Hashes the plugin's bytes.
    pub fn of(bytes: &[u8]) -> Self {
        Self(Sha256::digest(bytes).into())
    }

    /// The full sha256, 64 hex digits.
    pub fn hex(&self) -> String {
        self.digits(self.0.len() * 2)
    }

    /// The first [`Version::SHORT_LEN`] hex digits.
    pub fn short(&self) -> String {
        self.digits(Self::SHORT_LEN)
    }

    /// The first `n` hex digits, written in one allocation: a dead letter names its plugin's
    /// version, so this runs once per failed message (formatting each byte into a `String` of
    /// its own was ~5% of B10's pool task).
    fn digits(&self, n: usize) -> String {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut hex = String::with_capacity(n);
        for byte in &self.0 {
            for nibble in [byte >> 4, byte & 0xf] {
                if hex.len() == n {
                    return hex;
                }
                hex.push(char::from(HEX[usize::from(nibble)]));
            }
        }
        hex
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.short())
    }
}

impl fmt::Debug for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Version({})", self.short())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_is_the_sha256_of_the_bytes() {
        let v = Version::of(b"abc");
        assert_eq!(
            v.hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(v.to_string(), "ba7816bf8f01");
        assert_eq!(v.short(), "ba7816bf8f01");
        assert_eq!(Version::of(b"").hex().len(), 64);
    }
}
