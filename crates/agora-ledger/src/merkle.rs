//! The binary Merkle tree that a block header's transaction root is computed with.
//!
//! Leaves and inner nodes are hashed under different domain tags, so a leaf can never be
//! passed off as a node. An odd node at the end of a level is carried up unchanged rather
//! than paired with itself, so two different leaf lists never share a root by duplication.

use agora_core::Hash;

/// The root of an empty list.
pub fn empty_root() -> Hash {
    Hash::tagged("agora/merkle-empty/v1", &[])
}

/// The Merkle root of `leaves`, in order.
pub fn merkle_root(leaves: &[Hash]) -> Hash {
    if leaves.is_empty() {
        return empty_root();
    }
    let mut level: Vec<Hash> = leaves
        .iter()
        .map(|leaf| Hash::tagged("agora/merkle-leaf/v1", &[leaf.as_bytes()]))
        .collect();
    while level.len() > 1 {
        level = level
            .chunks(2)
            .map(|pair| match pair {
                [left, right] => {
                    Hash::tagged("agora/merkle-node/v1", &[left.as_bytes(), right.as_bytes()])
                }
                [single] => *single,
                _ => unreachable!("chunks(2) yields one or two items"),
            })
            .collect();
    }
    level[0]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaves(n: u8) -> Vec<Hash> {
        (0..n).map(|i| Hash::of(&[i])).collect()
    }

    #[test]
    fn order_and_content_matter() {
        let base = merkle_root(&leaves(5));
        let mut swapped = leaves(5);
        swapped.swap(1, 2);
        assert_ne!(merkle_root(&swapped), base);
        assert_ne!(merkle_root(&leaves(4)), base);
        assert_ne!(merkle_root(&leaves(6)), base);
        assert_ne!(merkle_root(&[]), merkle_root(&leaves(1)));
    }

    #[test]
    fn a_leaf_is_not_its_own_root() {
        let one = leaves(1);
        assert_ne!(merkle_root(&one), one[0]);
    }

    #[test]
    fn odd_levels_do_not_collide_with_duplicates() {
        let three = leaves(3);
        let four = vec![three[0], three[1], three[2], three[2]];
        assert_ne!(merkle_root(&three), merkle_root(&four));
    }
}
