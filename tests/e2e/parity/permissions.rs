//! Modes and owners on disk after Install: the archive's modes and (tar, as
//! root) owners are kept on copied files, directories Install makes get the
//! default mode, and the appspec's `permissions` (object, pattern, except,
//! type, mode, owner, group) reach exactly what this deployment installed,
//! never what was there before.

use std::path::Path;

use codedeploy_e2e::{BundleType, Deployment, Revision, TestBed};

use super::accounts::{skip_unless_root, HostGroup, HostUser};
use super::{default_directory_mode, mode_of, owner_of};
use crate::support::*;

fn permissions_appspec(install: &Path, user: &str, group: &str) -> String {
    let install = install.display();
    format!(
        "version: 0.0
os: linux
files:
  - source: app
    destination: {install}
permissions:
  # Direct children of the destination named *.sh, except the secret one.
  - object: {install}
    pattern: \"*.sh\"
    except: [\"secret-*.sh\"]
    owner: {user}
    group: {group}
    mode: 750
    type:
      - file
  # Everything below conf/, at any depth, files only.
  - object: {install}/conf
    owner: {user}
    group: {group}
    mode: 640
    type: [file]
  # Directories below data/ get the setgid bit and the group.
  - object: {install}/data
    group: {group}
    mode: 2775
    type: [directory]
  # A file object.
  - object: {install}/README.txt
    owner: {user}
    mode: 444
"
    )
}

#[test]
fn permissions_reach_what_the_deployment_installs_with_pattern_except_and_type() {
    if skip_unless_root(
        "permissions_reach_what_the_deployment_installs_with_pattern_except_and_type",
    ) {
        return;
    }
    let owner = HostUser::create("own");
    let group = HostGroup::create("grp");
    let bed = TestBed::start("parity-permissions");
    let install = bed.path().join("srv/billing");
    // Present before the deployment, and matching "*.sh": never touched.
    std::fs::create_dir_all(&install).unwrap();
    std::fs::write(install.join("legacy.sh"), "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(
        install.join("legacy.sh"),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();

    let revision = Revision::new()
        .file(
            "appspec.yml",
            permissions_appspec(&install, &owner.name, &group.name),
        )
        .script("app/start.sh", "#!/bin/sh\necho start\n")
        .script("app/stop.sh", "#!/bin/sh\necho stop\n")
        .file_with_mode("app/secret-rotate.sh", "#!/bin/sh\n", 0o700)
        .file("app/README.txt", "billing service\n")
        // A tar keeps setuid through unpack (tar -p) and Install (cp -p).
        .file_with_mode("app/bin/billing-helper", "#!/bin/sh\n", 0o4755)
        .file("app/notes.txt", "not matched by any permission\n")
        .script("app/tools/migrate.sh", "#!/bin/sh\n")
        .file("app/conf/billing.conf", "rate=1\n")
        .file("app/conf/tenants/acme.conf", "tenant=acme\n")
        .dir("app/data/cache", 0o700)
        .file("app/data/cache/.keep", "")
        .dir("app/private", 0o700)
        .file_with_mode("app/private/key.pem", "-----BEGIN KEY-----\n", 0o600)
        // Archived by another user: a root Install keeps the owner (cp -p).
        .file("app/vendor.txt", "vendored\n")
        .owned_by("app/vendor.txt", owner.uid, owner.gid);
    let location = bed.upload(
        "billing-revisions",
        "billing.tgz",
        &revision,
        BundleType::Tgz,
    );
    let deployment = Deployment::new("Billing", "Billing-Fleet", location);
    bed.emulator.add_deployment(deployment.clone());
    bed.start_agent(&agent_binary());
    expect_success(&bed, &deployment);

    let dir_mode = default_directory_mode();
    let (user, grp) = (owner.uid, group.gid);
    // (path under the install, mode, owner uid, group gid)
    let expected: &[(&str, u32, u32, u32)] = &[
        ("start.sh", 0o750, user, grp),
        ("stop.sh", 0o750, user, grp),
        ("secret-rotate.sh", 0o700, 0, 0),
        ("README.txt", 0o444, user, 0),
        ("notes.txt", 0o644, 0, 0),
        ("bin/billing-helper", 0o4755, 0, 0),
        // "*.sh" matches direct children only.
        ("tools/migrate.sh", 0o755, 0, 0),
        ("tools", dir_mode, 0, 0),
        ("conf/billing.conf", 0o640, user, grp),
        ("conf/tenants/acme.conf", 0o640, user, grp),
        // type [file]: the directories below conf/ are left alone.
        ("conf/tenants", dir_mode, 0, 0),
        ("conf", dir_mode, 0, 0),
        // The object itself is not below itself.
        ("data", dir_mode, 0, 0),
        ("data/cache", 0o2775, 0, grp),
        // type [directory]: files below data/ are left alone.
        ("data/cache/.keep", 0o644, 0, 0),
        // A directory Install makes gets the default mode, not the archive's.
        ("private", dir_mode, 0, 0),
        ("private/key.pem", 0o600, 0, 0),
        ("vendor.txt", 0o644, owner.uid, owner.gid),
        // Not installed by this deployment.
        ("legacy.sh", 0o700, 0, 0),
    ];
    for (relative, mode, uid, gid) in expected {
        let path = install.join(relative);
        let actual = (mode_of(&path), owner_of(&path));
        ensure_eq!(
            bed,
            actual,
            (Some(*mode), Some((*uid, *gid))),
            "{relative}: (mode, (uid, gid)) — expected mode {mode:o}, got {:?}",
            actual.0.map(|m| format!("{m:o}"))
        );
    }

    // The instructions file says the same, in the official order per
    // object: chmod before chown.
    let install_json = read(&super::instructions_file(
        &bed,
        &deployment.group_id,
        "-install.json",
    ));
    let steps: serde_json::Value =
        serde_json::from_str(&install_json).unwrap_or(serde_json::Value::Null);
    let start = install.join("start.sh").to_string_lossy().into_owned();
    let for_start: Vec<String> = steps["instructions"]
        .as_array()
        .map(|all| {
            all.iter()
                .filter(|s| s["file"] == start.as_str() || s["destination"] == start.as_str())
                .map(|s| s["type"].as_str().unwrap_or("?").to_string())
                .collect()
        })
        .unwrap_or_default();
    ensure_eq!(
        bed,
        for_start,
        vec!["copy", "chmod", "chown"],
        "instructions for start.sh in -install.json: {install_json}"
    );
}

/// `getfacl` of `path`, its comment lines left out: one entry per line.
fn acl_entries(path: &Path) -> Result<Vec<String>, String> {
    let output = std::process::Command::new("getfacl")
        .args(["--omit-header", "--numeric"])
        .arg(path)
        .output()
        .map_err(|e| format!("getfacl could not run: {e}"))?;
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).into_owned());
    }
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        // "user:1000:rw-	#effective:r--" keeps only the entry.
        .map(|line| line.split('\t').next().unwrap_or(line).to_string())
        .collect())
}

#[test]
fn acls_from_the_appspec_are_set_with_the_system_tools() {
    if skip_unless_root("acls_from_the_appspec_are_set_with_the_system_tools") {
        return;
    }
    if which("setfacl").is_none() {
        // scripts/setup installs the acl package; a host without it is the
        // other test's subject.
        panic!("setfacl is missing: run scripts/setup (it installs the acl package)");
    }
    let reader = HostUser::create("acl");
    let bed = TestBed::start("parity-acls");
    let install = bed.path().join("srv/reports");
    let appspec = format!(
        "version: 0.0
os: linux
files:
  - source: app
    destination: {install}
permissions:
  # A file object: one named user entry, on top of the mode.
  - object: {install}/report.sh
    mode: 750
    acls:
      - u:{user}:r-x
  # Directories below the object: a named entry and a default one, so files
  # created there later inherit the reader's access.
  - object: {install}
    pattern: \"spool\"
    type: [directory]
    mode: 770
    acls:
      - u:{user}:rwx
      - d:u:{user}:rw-
",
        install = install.display(),
        user = reader.name,
    );
    let revision = Revision::new()
        .file("appspec.yml", appspec)
        .script("app/report.sh", "#!/bin/sh\necho report\n")
        .dir("app/spool", 0o755)
        .file("app/spool/.keep", "");
    let location = bed.upload("acl-revisions", "reports.tgz", &revision, BundleType::Tgz);
    let deployment = Deployment::new("Reports", "Reports-Fleet", location);
    bed.emulator.add_deployment(deployment.clone());
    bed.start_agent(&agent_binary());
    expect_success(&bed, &deployment);

    let uid = reader.uid;
    let file_acl = acl_entries(&install.join("report.sh"));
    ensure_eq!(
        bed,
        file_acl,
        Ok(vec![
            "user::rwx".to_string(),
            format!("user:{uid}:r-x"),
            "group::r-x".to_string(),
            "mask::r-x".to_string(),
            "other::---".to_string(),
        ]),
        "the ACL of report.sh (mode 750 plus the appspec's entry)"
    );
    let dir_acl = acl_entries(&install.join("spool"));
    ensure_eq!(
        bed,
        dir_acl,
        Ok(vec![
            "user::rwx".to_string(),
            format!("user:{uid}:rwx"),
            "group::rwx".to_string(),
            "mask::rwx".to_string(),
            "other::---".to_string(),
            "default:user::rwx".to_string(),
            format!("default:user:{uid}:rw-"),
            "default:group::rwx".to_string(),
            "default:mask::rwx".to_string(),
            "default:other::---".to_string(),
        ]),
        "the ACL of spool/ (mode 770, a named entry and a default entry)"
    );
    // The default entry is real: a file made there later inherits it.
    let later = install.join("spool/later.txt");
    std::fs::write(&later, "x").unwrap();
    let inherited = acl_entries(&later).unwrap_or_default();
    ensure!(
        bed,
        inherited.contains(&format!("user:{uid}:rw-")),
        "a file created in spool/ after the deployment inherits the default entry: {inherited:?}"
    );
}

#[test]
fn a_selinux_context_on_a_host_without_selinux_tools_fails_install_with_the_package_to_install() {
    if which("semanage").is_some() {
        eprintln!(
            "SKIPPED a_selinux_context_on_a_host_without_selinux_tools_fails_install_with_the_package_to_install: \
             this host has semanage, so the missing-tool path cannot be shown here"
        );
        return;
    }
    let bed = TestBed::start("parity-selinux-missing");
    let install = bed.path().join("srv/web");
    let appspec = format!(
        "version: 0.0
os: linux
files:
  - source: app
    destination: {install}
permissions:
  - object: {install}/index.html
    context:
      type: httpd_sys_content_t
",
        install = install.display(),
    );
    let revision = Revision::new()
        .file("appspec.yml", appspec)
        .file("app/index.html", "<p>hello</p>\n");
    let location = bed.upload("selinux-revisions", "web.tgz", &revision, BundleType::Tgz);
    let deployment = Deployment::new("Web", "Web-Fleet", location);
    bed.emulator.add_deployment(deployment.clone());
    bed.start_agent(&agent_binary());
    let failed = expect_failure_at(&bed, &deployment, "Install");
    let message = failed
        .diagnostics()
        .map(|d| d.message.clone())
        .unwrap_or_default();
    ensure!(
        bed,
        message.contains("semanage") && message.contains("policycoreutils"),
        "Install's diagnostic names the missing tool and its package: {message}"
    );
    ensure!(
        bed,
        message.contains("index.html"),
        "Install's diagnostic names the file: {message}"
    );
}

/// The full path of `program` on PATH, if any.
fn which(program: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|candidate| candidate.is_file())
    })
}
