//! Sizes and addresses as descriptions write them.

use serde::{Deserialize, Deserializer};

/// Parses `512M`, `2G`, `64K`, a plain number of bytes, or a `0x` hexadecimal
/// number (underscores allowed).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let clean: String = text.trim().chars().filter(|&c| c != '_').collect();
    if let Some(hex) = clean.strip_prefix("0x") {
        return u64::from_str_radix(hex, 16).map_err(|_| format!("`{text}` is not a number"));
    }
    let (digits, shift) = match clean.as_bytes().last() {
        Some(b'K' | b'k') => (&clean[..clean.len() - 1], 10),
        Some(b'M' | b'm') => (&clean[..clean.len() - 1], 20),
        Some(b'G' | b'g') => (&clean[..clean.len() - 1], 30),
        _ => (clean.as_str(), 0),
    };
    let number: u64 = digits
        .parse()
        .map_err(|_| format!("`{text}` is not a size (like 2M, 512K, 4096 or 0x1000)"))?;
    number
        .checked_mul(1 << shift)
        .ok_or_else(|| format!("`{text}` is too large"))
}

/// A size or address written as a number or as a string [`parse_size`] reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bytes(pub u64);

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Bytes, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u64),
            Text(String),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Number(bytes) => Ok(Bytes(bytes)),
            Raw::Text(text) => parse_size(&text)
                .map(Bytes)
                .map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    /// Verifies: SK-CFG-001
    #[test]
    fn sizes_and_addresses() {
        assert_eq!(parse_size("2M"), Ok(2 << 20));
        assert_eq!(parse_size("512K"), Ok(512 << 10));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("0x4000_0000"), Ok(0x4000_0000));
        assert!(parse_size("2X").is_err());
        assert!(parse_size("0xg").is_err());
        assert!(parse_size("99999999999G").is_err());
    }
}
