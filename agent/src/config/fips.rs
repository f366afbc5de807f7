//! Whether `use_fips_mode` can be honoured in the region the agent ended up
//! with. Pure; kept apart from the parser because the region is only known
//! after the identity (IMDS or the on-premises file) has been read.

use super::model::AgentConfig;

/// Regions where the official agent accepts `use_fips_mode`.
const FIPS_REGIONS: &[&str] = &[
    "us-east-1",
    "us-east-2",
    "us-west-1",
    "us-west-2",
    "us-gov-west-1",
    "us-gov-east-1",
];

/// `use_fips_mode` set in a region with no FIPS endpoint.
#[derive(Debug, thiserror::Error)]
#[error("use_fips_mode is set but region {region} has no FIPS endpoint; FIPS is available in {}", FIPS_REGIONS.join(", "))]
pub struct NoFipsEndpoint {
    pub region: String,
}

/// Checks that need more than the file: the region the agent ended up with.
pub fn check_fips_region(config: &AgentConfig, region: &str) -> Result<(), NoFipsEndpoint> {
    if config.use_fips_mode && !FIPS_REGIONS.contains(&region) {
        return Err(NoFipsEndpoint {
            region: region.to_string(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fips_only_in_us_regions() {
        let mut c = AgentConfig {
            use_fips_mode: true,
            ..AgentConfig::default()
        };
        assert!(check_fips_region(&c, "us-west-2").is_ok());
        assert!(check_fips_region(&c, "eu-west-1")
            .unwrap_err()
            .to_string()
            .contains("eu-west-1"));
        c.use_fips_mode = false;
        assert!(check_fips_region(&c, "eu-west-1").is_ok());
    }
}
