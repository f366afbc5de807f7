//! Which Commands endpoint and signing name the agent uses (pure).

/// The service model the agent talks to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandsService {
    /// `https://...` or the operator's `deploy_control_endpoint`, used as is.
    pub endpoint: String,
    /// The SigV4 service name.
    pub signing_name: &'static str,
    /// The `X-Amz-Target` prefix before `.<Operation>`.
    pub target_prefix: &'static str,
}

/// Inputs for endpoint selection.
#[derive(Debug, Clone)]
pub struct EndpointInputs<'a> {
    pub region: &'a str,
    /// The partition's DNS suffix, e.g. `amazonaws.com`; `None` derives it from the region.
    pub domain: Option<&'a str>,
    pub deploy_control_endpoint: Option<&'a str>,
    pub enable_auth_policy: bool,
    pub use_fips_mode: bool,
}

pub fn commands_service(inputs: &EndpointInputs<'_>) -> CommandsService {
    let (signing_name, target_prefix) = if inputs.enable_auth_policy {
        ("codedeploy-commands-secure", "CodeDeployCommandService")
    } else {
        ("codedeploy-commands", "CodeDeployCommandService_v20141006")
    };
    let endpoint = match inputs.deploy_control_endpoint {
        Some(endpoint) => endpoint.to_string(),
        None => {
            let fips = if inputs.use_fips_mode { "-fips" } else { "" };
            let domain = inputs
                .domain
                .map(str::to_string)
                .unwrap_or_else(|| domain_for_region(inputs.region).to_string());
            format!("https://{signing_name}{fips}.{}.{domain}", inputs.region)
        }
    };
    CommandsService {
        endpoint,
        signing_name,
        target_prefix,
    }
}

/// The DNS suffix of a region when instance metadata cannot tell it.
pub fn domain_for_region(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "amazonaws.com.cn"
    } else if region == "eusc-de-east-1" {
        "amazonaws.eu"
    } else {
        "amazonaws.com"
    }
}

/// A region name the agent will not put into an endpoint host name.
#[derive(Debug, thiserror::Error)]
pub enum InvalidRegion {
    #[error("unknown AWS domain '{0}'")]
    UnknownDomain(String),
    #[error("'{region}' is not a valid region name for {domain}")]
    Name { region: String, domain: String },
}

/// Checks a region name against the rules of its domain.
pub fn validate_region(region: &str, domain: &str) -> Result<(), InvalidRegion> {
    let ok = match domain {
        "amazonaws.com" | "amazonaws.eu" => {
            (1..=20).contains(&region.len())
                && region
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        }
        "amazonaws.com.cn" => {
            let parts: Vec<&str> = region.split('-').collect();
            parts.len() == 3
                && parts[0] == "cn"
                && !parts[1].is_empty()
                && parts[1].chars().all(|c| c.is_alphanumeric() || c == '_')
                && !parts[2].is_empty()
                && parts[2].chars().all(|c| c.is_ascii_digit())
        }
        other => return Err(InvalidRegion::UnknownDomain(other.to_string())),
    };
    if ok {
        Ok(())
    } else {
        Err(InvalidRegion::Name {
            region: region.to_string(),
            domain: domain.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(
        region: &str,
        domain: Option<&str>,
        auth: bool,
        fips: bool,
        over: Option<&str>,
    ) -> String {
        commands_service(&EndpointInputs {
            region,
            domain,
            deploy_control_endpoint: over,
            enable_auth_policy: auth,
            use_fips_mode: fips,
        })
        .endpoint
    }

    /// region, domain, auth policy, FIPS, deploy_control_endpoint, expected endpoint.
    type EndpointCase<'a> = (
        &'a str,
        Option<&'a str>,
        bool,
        bool,
        Option<&'a str>,
        &'a str,
    );

    #[test]
    fn endpoint_table() {
        let cases: &[EndpointCase<'_>] = &[
            (
                "us-east-1",
                None,
                false,
                false,
                None,
                "https://codedeploy-commands.us-east-1.amazonaws.com",
            ),
            (
                "us-east-1",
                None,
                false,
                true,
                None,
                "https://codedeploy-commands-fips.us-east-1.amazonaws.com",
            ),
            (
                "us-east-1",
                None,
                true,
                true,
                None,
                "https://codedeploy-commands-secure-fips.us-east-1.amazonaws.com",
            ),
            (
                "eu-west-1",
                None,
                true,
                false,
                None,
                "https://codedeploy-commands-secure.eu-west-1.amazonaws.com",
            ),
            (
                "cn-north-1",
                None,
                false,
                false,
                None,
                "https://codedeploy-commands.cn-north-1.amazonaws.com.cn",
            ),
            (
                "cn-northwest-1",
                Some("amazonaws.com.cn"),
                false,
                false,
                None,
                "https://codedeploy-commands.cn-northwest-1.amazonaws.com.cn",
            ),
            (
                "us-gov-west-1",
                None,
                false,
                true,
                None,
                "https://codedeploy-commands-fips.us-gov-west-1.amazonaws.com",
            ),
            (
                "eusc-de-east-1",
                None,
                false,
                false,
                None,
                "https://codedeploy-commands.eusc-de-east-1.amazonaws.eu",
            ),
            (
                "us-east-1",
                None,
                true,
                true,
                Some("http://127.0.0.1:8080"),
                "http://127.0.0.1:8080",
            ),
        ];
        for (region, domain, auth, fips, over, expected) in cases {
            assert_eq!(
                &endpoint(region, *domain, *auth, *fips, *over),
                expected,
                "{region} auth={auth} fips={fips}"
            );
        }
    }

    #[test]
    fn auth_policy_switches_signing_name_and_target() {
        let s = commands_service(&EndpointInputs {
            region: "us-east-1",
            domain: None,
            deploy_control_endpoint: None,
            enable_auth_policy: true,
            use_fips_mode: false,
        });
        assert_eq!(s.signing_name, "codedeploy-commands-secure");
        assert_eq!(s.target_prefix, "CodeDeployCommandService");
    }

    #[test]
    fn region_validation_table() {
        assert!(validate_region("us-east-1", "amazonaws.com").is_ok());
        assert!(validate_region("eusc-de-east-1", "amazonaws.eu").is_ok());
        assert!(validate_region("cn-north-1", "amazonaws.com.cn").is_ok());
        assert!(validate_region("US-EAST-1", "amazonaws.com").is_err());
        assert!(validate_region("us-east-1.evil.com", "amazonaws.com").is_err());
        assert!(validate_region("us-east-1", "amazonaws.com.cn").is_err());
        assert!(validate_region("us-east-1", "example.com").is_err());
        assert!(validate_region("", "amazonaws.com").is_err());
    }
}
