//! Hashes that link ledger records: the RFC 6962 leaf hash of each record and a running
//! chain hash over all leaf hashes in seq order.

use sha2::{Digest, Sha256};

/// A SHA-256 digest.
pub type Hash = [u8; 32];

/// Chain hash that precedes the first record: 32 zero bytes.
pub const GENESIS: Hash = [0; 32];

/// Domain-separation prefix of a leaf in RFC 6962 (section 2.1), so that a leaf hash can
/// never equal the hash of an interior Merkle-tree node, which uses 0x01.
const LEAF_PREFIX: u8 = 0x00;

/// Computes the RFC 6962 leaf hash SHA-256(0x00 || canonical).
pub fn leaf_hash(canonical: &[u8]) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([LEAF_PREFIX]);
    hasher.update(canonical);
    hasher.finalize().into()
}

/// Computes SHA-256(previous || leaf): the chain hash of a record whose predecessor has
/// chain hash `previous`.
pub fn chain_hash(previous: &Hash, leaf: &Hash) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update(previous);
    hasher.update(leaf);
    hasher.finalize().into()
}

/// Seq and chain hash of the last record; seq 0 with [`GENESIS`] for an empty ledger.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Head {
    pub seq: i64,
    pub chain_hash: Hash,
}

impl Head {
    pub const EMPTY: Head = Head {
        seq: 0,
        chain_hash: GENESIS,
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaf_hash_of_empty_input_matches_rfc_6962() {
        // The RFC 6962 hash of an empty leaf, as published by Certificate Transparency logs.
        assert_eq!(
            hex::encode(leaf_hash(b"")),
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
        );
    }

    #[test]
    fn leaf_hash_prefixes_zero_byte() {
        // Reference value from `printf '\x00{"a":1}' | sha256sum`.
        assert_eq!(
            hex::encode(leaf_hash(br#"{"a":1}"#)),
            "c7261463ebd776f4650b6d0fe942d9cc38c925d90f77d440ab6df8d5dd258c5f"
        );
    }

    #[test]
    fn chain_hash_of_first_record_starts_from_zeros() {
        // Reference value from Python's hashlib: sha256(bytes(32) + leaf).
        let leaf = leaf_hash(br#"{"a":1}"#);
        assert_eq!(
            hex::encode(chain_hash(&GENESIS, &leaf)),
            "37c086d32b1f152e01511484813cc939e3a7870f95bc573da2677f64001f764b"
        );
    }

    #[test]
    fn chain_hash_depends_on_order() {
        let first = leaf_hash(b"first");
        let second = leaf_hash(b"second");
        let forward = chain_hash(&chain_hash(&GENESIS, &first), &second);
        let swapped = chain_hash(&chain_hash(&GENESIS, &second), &first);
        assert_ne!(forward, swapped);
    }
}
