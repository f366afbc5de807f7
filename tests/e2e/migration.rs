//! Taking a host over from the official agent: its deployment root and
//! deployment-instructions are laid out exactly as the official agent (1.8.x)
//! leaves them after installing a revision (LIFECYCLE.md, "On-disk layout"),
//! and our agent then performs that deployment group's next deployment from
//! them, as it does after `apt install` / `yum install` of our package over
//! the official one.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use codedeploy_e2e::emulator::{new_deployment_id, new_group_id};
use codedeploy_e2e::{BundleType, Deployment, Revision, TestBed};

use crate::support::*;

const APP: &str = "WebShop";
const GROUP: &str = "WebShop-Production";
const BUCKET: &str = "webshop-revisions";
const KEY: &str = "webshop/webshop.tgz";

/// Where a revision's hooks run: only ApplicationStop in the revision the
/// official agent installed; every event in the new one.
const NEW_HOOKS: [(&str, &str); 5] = [
    ("ApplicationStop", "scripts/stop_webshop.sh"),
    ("BeforeInstall", "scripts/before_install.sh"),
    ("AfterInstall", "scripts/after_install.sh"),
    ("ApplicationStart", "scripts/start_webshop.sh"),
    ("ValidateService", "scripts/validate_webshop.sh"),
];

/// The files of the revision the official agent installed: path in the
/// revision, contents, mode.
fn official_revision_files(install: &Path, hooks_log: &Path) -> Vec<(String, String, u32)> {
    vec![
        (
            "appspec.yml".into(),
            appspec(
                "content",
                install,
                &[hook("ApplicationStop", "scripts/stop_webshop.sh")],
            ),
            0o644,
        ),
        (
            "scripts/stop_webshop.sh".into(),
            recording_hook("official", hooks_log),
            0o755,
        ),
        (
            "content/index.html".into(),
            "<h1>WebShop v1</h1>\n".into(),
            0o644,
        ),
        (
            "content/old-banner.txt".into(),
            "summer sale\n".into(),
            0o644,
        ),
        ("content/lib/legacy.js".into(), "legacy();\n".into(), 0o644),
    ]
}

/// What the official agent left for a group: the deployment folder of its
/// last install and the files that install created, in creation order.
struct OfficialInstall {
    deployment_dir: PathBuf,
    created: Vec<PathBuf>,
}

fn write(path: &Path, contents: &[u8], mode: u32) {
    std::fs::create_dir_all(path.parent().expect("a file has a parent"))
        .unwrap_or_else(|e| panic!("mkdir for {}: {e}", path.display()));
    std::fs::write(path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}

/// Lays out `<root>` as the official agent leaves it after a successful
/// deployment `deployment_id` of group `group_id` that installed `content/`
/// to `install`.
fn official_agent_left(
    root: &Path,
    group_id: &str,
    deployment_id: &str,
    install: &Path,
    hooks_log: &Path,
) -> OfficialInstall {
    let deployment_dir = root.join(group_id).join(deployment_id);
    let archive = deployment_dir.join("deployment-archive");
    let files = official_revision_files(install, hooks_log);

    // <root>/<group>/<deployment>/{bundle.tar, deployment-archive/, logs/scripts.log}
    let mut revision = Revision::new();
    for (path, contents, mode) in &files {
        write(&archive.join(path), contents.as_bytes(), *mode);
        revision = revision.file_with_mode(path, contents.as_str(), *mode);
    }
    let bundle = revision.to_tar().expect("the revision can be archived");
    write(&deployment_dir.join("bundle.tar"), &bundle, 0o644);
    write(
        &deployment_dir.join("logs/scripts.log"),
        b"2025-06-02 09:14:03 LifecycleEvent - ApplicationStop\n",
        0o644,
    );

    // The installed files, and the instructions that made them, in order.
    let mut created = Vec::new();
    let mut instructions = Vec::new();
    std::fs::create_dir_all(install.parent().expect("install has a parent"))
        .expect("the install directory's parent");
    for entry in ["", "index.html", "lib", "lib/legacy.js", "old-banner.txt"] {
        let destination = if entry.is_empty() {
            install.to_path_buf()
        } else {
            install.join(entry)
        };
        let source = archive.join("content").join(entry);
        if source.is_dir() {
            std::fs::create_dir(&destination).expect("mkdir in the install directory");
            instructions.push(serde_json::json!({"type": "mkdir", "directory": destination}));
        } else {
            std::fs::copy(&source, &destination).expect("copy into the install directory");
            instructions.push(
                serde_json::json!({"type": "copy", "source": source, "destination": destination}),
            );
        }
        created.push(destination);
    }

    // <root>/deployment-instructions/: the last install of the group is
    // this deployment (no trailing newline, as the official agent writes it).
    let instructions_dir = root.join("deployment-instructions");
    let folder = deployment_dir.to_string_lossy().into_owned();
    write(
        &instructions_dir.join(format!("{group_id}_last_successful_install")),
        folder.as_bytes(),
        0o644,
    );
    write(
        &instructions_dir.join(format!("{group_id}_most_recent_install")),
        folder.as_bytes(),
        0o644,
    );
    let cleanup: String = created
        .iter()
        .map(|p| format!("{}\n", p.display()))
        .collect();
    write(
        &instructions_dir.join(format!("{group_id}-cleanup")),
        cleanup.as_bytes(),
        0o644,
    );
    write(
        &instructions_dir.join(format!("{group_id}-install.json")),
        serde_json::json!({ "instructions": instructions })
            .to_string()
            .as_bytes(),
        0o644,
    );
    write(
        &root.join("deployment-logs/codedeploy-agent-deployments.log"),
        format!("[2025-06-02 09:14:03.512] [{deployment_id}]LifecycleEvent - ApplicationStop\n")
            .as_bytes(),
        0o644,
    );
    std::fs::create_dir_all(root.join("ongoing-deployment")).expect("ongoing-deployment");

    OfficialInstall {
        deployment_dir,
        created,
    }
}

/// The next revision of the group, deployed by our agent.
fn next_revision(install: &Path, hooks_log: &Path) -> Revision {
    let hooks: Vec<Hook<'_>> = NEW_HOOKS.iter().map(|(e, l)| hook(e, l)).collect();
    let mut revision = Revision::new()
        .file("appspec.yml", appspec("content", install, &hooks))
        .file("content/index.html", "<h1>WebShop v2</h1>\n")
        .file("content/lib/app.js", "app();\n")
        .file("content/new-feature.txt", "gift cards\n");
    for (_, location) in NEW_HOOKS {
        revision = revision.script(location, recording_hook("ours", hooks_log));
    }
    revision
}

#[test]
fn next_deployment_after_the_official_agent_runs_its_application_stop_and_replaces_its_files() {
    let bed = TestBed::start("migration");
    let install = bed.path().join("srv/webshop");
    let hooks_log = bed.path().join("hooks.log");
    let group_id = new_group_id();
    let official = official_agent_left(
        &bed.root_dir(),
        &group_id,
        &new_deployment_id(),
        &install,
        &hooks_log,
    );

    let location = bed.upload(
        BUCKET,
        KEY,
        &next_revision(&install, &hooks_log),
        BundleType::Tgz,
    );
    let next = Deployment::new(APP, GROUP, location).group_id(&group_id);
    bed.emulator.add_deployment(next.clone());
    bed.start_agent(&agent_binary());
    expect_success(&bed, &next);
    ensure_command_cycle(&bed, &next);

    // What the service was told: every command Succeeded, and ApplicationStop
    // had a script to run (the official agent's revision's).
    let record = bed.emulator.deployment(&next.deployment_id).unwrap();
    for command in &record.commands {
        ensure!(
            bed,
            command
                .diagnostics()
                .is_some_and(|d| d.error_code == 0 && d.message.starts_with("Succeeded")),
            "{} should complete Succeeded with error_code 0: {:?}",
            command.command_name,
            command.completion()
        );
    }
    ensure_eq!(
        bed,
        record
            .command("ApplicationStop")
            .and_then(|c| c.acknowledged_noop()),
        Some(false),
        "ApplicationStop runs the script of the revision the official agent installed"
    );

    // The official revision's ApplicationStop ran, with this deployment's
    // environment; every later hook came from the new revision.
    let mut expected = vec![expected_hook_line("official", "ApplicationStop", &next)];
    for event in [
        "BeforeInstall",
        "AfterInstall",
        "ApplicationStart",
        "ValidateService",
    ] {
        expected.push(expected_hook_line("ours", event, &next));
    }
    ensure_eq!(bed, lines(&hooks_log), expected, "hook runs");
    let scripts_log = read(&deployment_dir(&bed, &next).join("logs/scripts.log"));
    ensure!(
        bed,
        scripts_log.contains(&format!(
            "[stdout]official: ApplicationStop hook ran for {}",
            next.deployment_id
        )),
        "the official revision's ApplicationStop writes to this deployment's scripts.log:\n{scripts_log}"
    );

    // The cleanup file removed what the official agent installed (with
    // DISALLOW, index.html would otherwise block the install); the new
    // revision's files are in place.
    for gone in ["old-banner.txt", "lib/legacy.js"] {
        ensure!(
            bed,
            !install.join(gone).exists(),
            "{gone}, listed in the official cleanup file, is removed"
        );
    }
    ensure_eq!(
        bed,
        read(&install.join("index.html")),
        "<h1>WebShop v2</h1>\n",
        "index.html of the new revision"
    );
    ensure_eq!(
        bed,
        read(&install.join("new-feature.txt")),
        "gift cards\n",
        "new-feature.txt of the new revision"
    );
    ensure_eq!(
        bed,
        read(&install.join("lib/app.js")),
        "app();\n",
        "lib/app.js of the new revision"
    );

    // The instructions now describe our install.
    let instructions = bed.root_dir().join("deployment-instructions");
    ensure_eq!(
        bed,
        read(&instructions.join(format!("{group_id}_last_successful_install"))).trim(),
        deployment_dir(&bed, &next).to_string_lossy(),
        "the last successful install is the new deployment"
    );
    let cleanup = lines(&instructions.join(format!("{group_id}-cleanup")));
    ensure!(
        bed,
        cleanup.contains(&install.join("new-feature.txt").display().to_string())
            && official
                .created
                .iter()
                .filter(|p| p.ends_with("old-banner.txt") || p.ends_with("lib/legacy.js"))
                .all(|p| !cleanup.contains(&p.display().to_string())),
        "the cleanup file lists the new revision's files only: {cleanup:?}"
    );
    ensure!(
        bed,
        official
            .deployment_dir
            .join("deployment-archive/appspec.yml")
            .is_file(),
        "the official agent's deployment folder is kept (max_revisions)"
    );
}
