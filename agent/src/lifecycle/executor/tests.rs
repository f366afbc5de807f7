use std::path::Path;

use super::*;
use crate::bundle::S3Settings;
use crate::config::Hardening;
use crate::identity::CredentialSource;

fn local_spec(revision: Revision) -> DeploymentSpec {
    DeploymentSpec {
        deployment_id: "d-ABCDEFGHI-local".into(),
        deployment_group_id: "g-local".into(),
        deployment_group_name: "LocalFleet".into(),
        application_name: "app".into(),
        deployment_creator: crate::deployment_spec::DeploymentCreator::user(),
        deployment_type: crate::deployment_spec::DeploymentType::InPlace,
        appspec_filename: "appspec.yml".into(),
        revision,
        file_exists_behavior: None,
        all_possible_lifecycle_events: None,
        reuse_archive_from: None,
    }
}

fn executor(root: &Path) -> Executor {
    let hardening = Hardening::default();
    Executor {
        root: DeploymentRoot::new(root, "ongoing-deployment"),
        max_revisions: 5,
        deployments_log: false,
        fetcher: Fetcher {
            s3: S3Settings {
                region: "us-east-1".into(),
                endpoint_override: None,
                proxy: None,
                download: Default::default(),
            },
            github_endpoint: None,
            credentials: Arc::new(CredentialSource::Static(
                aws_credential_types::Credentials::new("unused", "unused", None, None, "test"),
            )),
            policy: hardening.bundle,
        },
        archive_reuse: true,
        install: hardening.install,
        hooks: HookPolicy::default(),
        hook_bounds: Arc::new(hooks::bounds::Enforcer::disabled()),
    }
}

#[test]
fn the_service_never_gets_local_revisions_or_custom_events() {
    let tmp = tempfile::tempdir().unwrap();
    let bundle = tmp.path().join("bundle");
    std::fs::create_dir_all(&bundle).unwrap();
    std::fs::write(bundle.join("appspec.yml"), "version: 0.0\nos: linux\n").unwrap();
    let executor = executor(&tmp.path().join("root"));
    let spec = local_spec(Revision::LocalDirectory {
        location: bundle.display().to_string(),
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (_trigger, shutdown) = crate::shutdown::channel();
    let run = |origin, event: LifecycleEvent| {
        let command = executor.prepare(origin, event, spec.clone())?;
        runtime.block_on(executor.execute(&command, shutdown.clone()))
    };
    let custom = LifecycleEvent::Custom("Warmup".into());
    assert_eq!(
        run(CommandOrigin::Service, custom.clone())
            .unwrap_err()
            .to_string(),
        "Unsupported command type: Warmup."
    );
    assert!(run(CommandOrigin::Service, LifecycleEvent::DownloadBundle)
        .unwrap_err()
        .to_string()
        .contains("only deployed by codedeploy-local"));
    run(CommandOrigin::LocalCli, LifecycleEvent::DownloadBundle).unwrap();
    let archive = executor
        .root
        .deployment(&spec.deployment_group_id, &spec.deployment_id)
        .archive_dir();
    assert!(archive.join("appspec.yml").is_file());
    // A custom event without scripts in the appspec runs nothing.
    let prepared = executor
        .prepare(CommandOrigin::LocalCli, custom.clone(), spec.clone())
        .unwrap();
    assert!(prepared.is_noop());
    run(CommandOrigin::LocalCli, custom).unwrap();
}
