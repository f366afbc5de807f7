//! file_exists_behavior: what Install does with a file already at a
//! destination that no earlier deployment of the group installed. The
//! appspec's own `file_exists_behavior` wins over the deployment's
//! AgentActionOverrides (upper-cased by the agent), and DISALLOW is the
//! default; DISALLOW fails Install with the official message, OVERWRITE
//! replaces the file, RETAIN keeps it and leaves it out of the cleanup file.

use std::os::unix::fs::PermissionsExt;

use codedeploy_e2e::{BundleType, Deployment, Revision, TestBed};

use super::instructions_file;
use crate::support::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Fails,
    Replaced,
    Kept,
}

/// (case, appspec's file_exists_behavior, deployment's override, outcome)
const CASES: &[(&str, Option<&str>, Option<&str>, Expect)] = &[
    ("default", None, None, Expect::Fails),
    ("appspec-disallow", Some("DISALLOW"), None, Expect::Fails),
    (
        "appspec-overwrite",
        Some("OVERWRITE"),
        None,
        Expect::Replaced,
    ),
    ("appspec-retain", Some("RETAIN"), None, Expect::Kept),
    ("override-disallow", None, Some("DISALLOW"), Expect::Fails),
    (
        "override-overwrite",
        None,
        Some("OVERWRITE"),
        Expect::Replaced,
    ),
    ("override-retain", None, Some("RETAIN"), Expect::Kept),
    // The service's value is upper-cased by the agent.
    ("override-lowercase", None, Some("retain"), Expect::Kept),
    // The appspec's own value wins over the deployment's.
    (
        "appspec-disallow-wins",
        Some("DISALLOW"),
        Some("OVERWRITE"),
        Expect::Fails,
    ),
    (
        "appspec-overwrite-wins",
        Some("OVERWRITE"),
        Some("RETAIN"),
        Expect::Replaced,
    ),
    (
        "appspec-retain-wins",
        Some("RETAIN"),
        Some("OVERWRITE"),
        Expect::Kept,
    ),
];

#[test]
fn file_exists_behavior_from_the_appspec_wins_over_the_deployment_override() {
    let bed = TestBed::start("parity-file-exists");
    bed.start_agent(&agent_binary());
    for (case, in_appspec, in_override, expect) in CASES {
        // Each case is the first deployment of its own group, so no cleanup
        // file removes the existing file first.
        let install = bed.path().join("srv").join(case);
        std::fs::create_dir_all(&install).unwrap();
        let existing = install.join("index.html");
        std::fs::write(&existing, "put there by hand\n").unwrap();

        let mut appspec_text = appspec("public", &install, &[]);
        if let Some(behavior) = in_appspec {
            appspec_text.push_str(&format!("file_exists_behavior: {behavior}\n"));
        }
        let revision = Revision::new()
            .file("appspec.yml", appspec_text)
            .file("public/index.html", "from the revision\n")
            .file("public/robots.txt", "User-agent: *\n");
        let location = bed.upload(
            "file-exists-revisions",
            &format!("{case}.tar"),
            &revision,
            BundleType::Tar,
        );
        let mut deployment = Deployment::new("Portal", &format!("Portal-{case}"), location);
        if let Some(behavior) = in_override {
            deployment = deployment.file_exists_behavior(behavior);
        }
        bed.emulator.add_deployment(deployment.clone());

        let robots = install.join("robots.txt");
        match expect {
            Expect::Fails => {
                let failed = expect_failure_at(&bed, &deployment, "Install");
                let diagnostics = failed.diagnostics().cloned();
                ensure_eq!(
                    bed,
                    diagnostics.as_ref().map(|d| (d.error_code, d.message.clone())),
                    Some((
                        5,
                        format!(
                            "The deployment failed because a specified file already exists at this location: {}",
                            existing.display()
                        )
                    )),
                    "{case}: Install fails with the official DISALLOW message"
                );
                ensure!(
                    bed,
                    !robots.exists(),
                    "{case}: nothing is installed when Install fails on an existing file"
                );
            }
            Expect::Replaced | Expect::Kept => {
                expect_success(&bed, &deployment);
                ensure_eq!(
                    bed,
                    read(&robots),
                    "User-agent: *\n",
                    "{case}: the other file is installed"
                );
            }
        }
        let want = match expect {
            Expect::Replaced => "from the revision\n",
            Expect::Fails | Expect::Kept => "put there by hand\n",
        };
        ensure_eq!(
            bed,
            read(&existing),
            want,
            "{case}: index.html after the deployment ({expect:?})"
        );
        if *expect != Expect::Fails {
            let cleanup = read(&instructions_file(&bed, &deployment.group_id, "-cleanup"));
            let existing_listed = cleanup.lines().any(|l| l == existing.to_string_lossy());
            ensure_eq!(
                bed,
                existing_listed,
                *expect == Expect::Replaced,
                "{case}: an overwritten file is in the cleanup file, a retained one is not:\n{cleanup}"
            );
        }
    }
}

#[test]
fn overwrite_writes_through_a_host_link_to_a_file_and_keeps_the_link() {
    let bed = TestBed::start("parity-overwrite-link");
    bed.start_agent(&agent_binary());
    // Hosts often link configuration into place (sites-enabled/x ->
    // sites-available/x). cp -p, and so the official agent's OVERWRITE,
    // writes through such a link: the link stays, its file gets the content.
    for behavior in ["OVERWRITE", "RETAIN"] {
        let shared = bed.path().join(behavior).join("shared");
        let install = bed.path().join(behavior).join("sites-enabled");
        std::fs::create_dir_all(&shared).unwrap();
        std::fs::create_dir_all(&install).unwrap();
        for name in ["site.conf", "tuned.conf"] {
            let real = shared.join(name);
            std::fs::write(&real, "maintained on the host\n").unwrap();
            std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o600)).unwrap();
            std::os::unix::fs::symlink(&real, install.join(name)).unwrap();
        }
        let appspec_text = format!(
            "{}permissions:\n  - object: {}\n    mode: 640\n",
            appspec("conf", &install, &[]),
            install.join("tuned.conf").display()
        );
        let revision = Revision::new()
            .file("appspec.yml", appspec_text)
            .file_with_mode("conf/site.conf", "from the revision\n", 0o644)
            .file_with_mode("conf/tuned.conf", "tuned by the revision\n", 0o644);
        let location = bed.upload(
            "file-exists-revisions",
            &format!("link-{behavior}.tar"),
            &revision,
            BundleType::Tar,
        );
        let deployment = Deployment::new("Sites", &format!("Sites-{behavior}"), location)
            .file_exists_behavior(behavior);
        bed.emulator.add_deployment(deployment.clone());
        expect_success(&bed, &deployment);

        for (name, new_content, new_mode) in [
            ("site.conf", "from the revision\n", 0o644),
            ("tuned.conf", "tuned by the revision\n", 0o640),
        ] {
            let link = install.join(name);
            let real = shared.join(name);
            ensure_eq!(
                bed,
                std::fs::read_link(&link).ok(),
                Some(real.clone()),
                "{behavior}: {name} is still the host's link"
            );
            let (content, mode) = match behavior {
                "OVERWRITE" => (new_content, new_mode),
                _ => ("maintained on the host\n", 0o600),
            };
            ensure_eq!(
                bed,
                (read(&real), super::mode_of(&real)),
                (content.to_string(), Some(mode)),
                "{behavior}: the linked file of {name} (content, mode)"
            );
        }
    }
}
