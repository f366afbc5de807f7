//! What kind of archive a file is, from its first bytes (for local bundles
//! and `validate`, where no BundleType is given). Pure.

use crate::deployment_spec::BundleType;

/// The archive type the first 512 bytes of a file show: gzip and zip by their
/// magic numbers, tar by the `ustar` magic of its first header.
pub fn sniff_archive(head: &[u8]) -> Option<BundleType> {
    if head.starts_with(&[0x1f, 0x8b]) {
        Some(BundleType::Tgz)
    } else if head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06") {
        Some(BundleType::Zip)
    } else if head.get(257..262) == Some(b"ustar") {
        Some(BundleType::Tar)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archives_are_recognised_by_their_first_bytes() {
        let mut tar = vec![0u8; 512];
        tar[257..262].copy_from_slice(b"ustar");
        let cases: &[(&[u8], Option<BundleType>)] = &[
            (&[0x1f, 0x8b, 8, 0], Some(BundleType::Tgz)),
            (b"PK\x03\x04rest", Some(BundleType::Zip)),
            (b"PK\x05\x06", Some(BundleType::Zip)),
            (&tar, Some(BundleType::Tar)),
            (b"version: 0.0\n", None),
            (b"", None),
        ];
        for (head, expected) in cases {
            assert_eq!(sniff_archive(head), *expected, "{head:?}");
        }
    }
}
