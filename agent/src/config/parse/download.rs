//! Reading the bundle download keys of codedeployagent.yml (ours) into
//! [`BundleDownload`]: `:bundle_ranged_download_threshold:` and
//! `:bundle_download_connections:`. Pure. They tune speed only, so a bad value
//! is a warning naming the key and the default applies: an agent must not
//! refuse to start over how fast it downloads.

use super::super::model::{
    AgentConfig, ConfigWarning, DEFAULT_DOWNLOAD_CONNECTIONS, DEFAULT_RANGED_DOWNLOAD_THRESHOLD,
    MAX_DOWNLOAD_CONNECTIONS,
};
use super::hardening::byte_size;
use super::Field;

/// Reads `field` when it is one of the keys this module owns; `false` for
/// any other key.
pub(super) fn read_key(
    field: &Field<'_>,
    config: &mut AgentConfig,
    warnings: &mut Vec<ConfigWarning>,
) -> bool {
    let download = &mut config.bundle_download;
    match field.key {
        "bundle_ranged_download_threshold" => {
            match byte_size(field.value).filter(|size| *size > 0) {
                Some(size) => download.ranged_threshold = size,
                None => warnings.push(field.warning(format!(
                    "must be a size of 1 byte or more (a whole number of bytes, or with B, KB, MB, GB, KiB, MiB or GiB, e.g. \"64MiB\"); using the default, {DEFAULT_RANGED_DOWNLOAD_THRESHOLD} bytes"
                ))),
            }
        }
        "bundle_download_connections" => {
            match field
                .integer()
                .ok()
                .filter(|n| (1..=u64::from(MAX_DOWNLOAD_CONNECTIONS)).contains(n))
            {
                Some(connections) => download.connections = connections as u32,
                None => warnings.push(field.warning(format!(
                    "must be a whole number from 1 (one stream) to {MAX_DOWNLOAD_CONNECTIONS}; using the default, {DEFAULT_DOWNLOAD_CONNECTIONS}"
                ))),
            }
        }
        _ => return false,
    }
    true
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::super::model::BundleDownload;
    use super::super::parse_agent_config;

    fn parse(text: &str) -> (BundleDownload, Vec<String>) {
        let parsed = parse_agent_config(text, Path::new("/etc/codedeployagent.yml"))
            .unwrap_or_else(|e| panic!("{text:?}: {e}"));
        let warnings = parsed
            .warnings
            .iter()
            .map(|w| format!(":{}: line {:?}: {}", w.key, w.line, w.message))
            .collect();
        (parsed.config.bundle_download, warnings)
    }

    #[test]
    fn download_keys_default_to_64_mib_and_8_connections() {
        let (download, warnings) = parse(":max_revisions: 5\n");
        assert_eq!(download.ranged_threshold, 256 * 1024 * 1024);
        assert_eq!(download.connections, 8);
        assert!(warnings.is_empty(), "{warnings:?}");
    }

    #[test]
    fn download_keys_take_sizes_and_connection_counts() {
        let cases: &[(&str, u64, u32)] = &[
            (":bundle_ranged_download_threshold: 1048576", 1 << 20, 8),
            (":bundle_ranged_download_threshold: 256MiB", 256 << 20, 8),
            (
                ":bundle_ranged_download_threshold: '1 GB'",
                1_000_000_000,
                8,
            ),
            (
                ":bundle_download_connections: 1",
                super::DEFAULT_RANGED_DOWNLOAD_THRESHOLD,
                1,
            ),
            (
                ":bundle_download_connections: 32",
                super::DEFAULT_RANGED_DOWNLOAD_THRESHOLD,
                32,
            ),
            (
                "bundle_download_connections: '4'",
                super::DEFAULT_RANGED_DOWNLOAD_THRESHOLD,
                4,
            ),
        ];
        for (text, threshold, connections) in cases {
            let (download, warnings) = parse(text);
            assert_eq!(
                (download.ranged_threshold, download.connections),
                (*threshold, *connections),
                "{text}"
            );
            assert!(warnings.is_empty(), "{text}: {warnings:?}");
        }
    }

    #[test]
    fn bad_download_values_are_warned_about_by_name_and_the_default_applies() {
        let cases: &[(&str, &str)] = &[
            (
                ":bundle_ranged_download_threshold: 0",
                "bundle_ranged_download_threshold",
            ),
            (
                ":bundle_ranged_download_threshold: -1",
                "bundle_ranged_download_threshold",
            ),
            (
                ":bundle_ranged_download_threshold: huge",
                "bundle_ranged_download_threshold",
            ),
            (
                ":bundle_ranged_download_threshold: 1.5GB",
                "bundle_ranged_download_threshold",
            ),
            (
                ":bundle_download_connections: 0",
                "bundle_download_connections",
            ),
            (
                ":bundle_download_connections: 33",
                "bundle_download_connections",
            ),
            (
                ":bundle_download_connections: 2.5",
                "bundle_download_connections",
            ),
            (
                ":bundle_download_connections: many",
                "bundle_download_connections",
            ),
            (
                ":bundle_download_connections: true",
                "bundle_download_connections",
            ),
        ];
        for (text, key) in cases {
            let (download, warnings) = parse(&format!(":max_revisions: 5\n{text}\n"));
            assert_eq!(download, BundleDownload::default(), "{text}");
            assert_eq!(warnings.len(), 1, "{text}: {warnings:?}");
            assert!(
                warnings[0].starts_with(&format!(":{key}: line Some(2): must be"))
                    && warnings[0].contains("using the default"),
                "{text}: {warnings:?}"
            );
        }
    }
}
