//! How `files` entries map a revision onto the host, as the official agent
//! maps them: `source: /` copies the whole revision (appspec and scripts
//! included), a file source lands in `<destination>/<file name>`, two
//! directory sources merge into one destination, empty directories are made,
//! a trailing slash on a destination is the same destination, a link to a
//! directory is copied as a real directory, and missing ancestors are made
//! (and recorded for cleanup).

use std::collections::BTreeSet;

use codedeploy_e2e::{BundleType, Deployment, Revision, TestBed};

use super::instructions_file;
use crate::support::*;

#[test]
fn files_entries_map_sources_onto_the_host_like_the_official_agent() {
    let bed = TestBed::start("parity-files-entries");
    let root = bed.path().join("host");
    let whole = root.join("opt/inventory");
    let etc = root.join("etc/inventory");
    let web = root.join("var/www/inventory");
    std::fs::create_dir_all(root.join("var/www")).unwrap();
    let appspec_text = format!(
        "version: 0.0
os: linux
files:
  - source: /
    destination: {whole}
  - source: config/inventory.env
    destination: {etc}/
  - source: web
    destination: {web}
  - source: assets
    destination: {web}
",
        whole = whole.display(),
        etc = etc.display(),
        web = web.display()
    );
    let revision = Revision::new()
        .file("appspec.yml", appspec_text.clone())
        .file("config/inventory.env", "DB=inventory\n")
        .file("config/unused.env", "UNUSED=1\n")
        .file("web/index.html", "<h1>inventory</h1>\n")
        .file("assets/css/site.css", "h1 { color: teal; }\n")
        .dir("web/uploads", 0o755)
        // A link to a directory inside the revision is followed: its content
        // lands in a real directory.
        .symlink("web/styles", "../assets/css")
        .script("scripts/start.sh", "#!/bin/sh\n");
    let location = bed.upload(
        "inventory-revisions",
        "inventory.tar",
        &revision,
        BundleType::Tar,
    );
    let deployment = Deployment::new("Inventory", "Inventory-Fleet", location);
    bed.emulator.add_deployment(deployment.clone());
    bed.start_agent(&agent_binary());
    expect_success(&bed, &deployment);

    // source: / copies everything, the appspec itself included.
    ensure_eq!(
        bed,
        read(&whole.join("appspec.yml")),
        appspec_text,
        "source / installs the appspec too"
    );
    for relative in [
        "config/inventory.env",
        "config/unused.env",
        "web/index.html",
        "assets/css/site.css",
        "scripts/start.sh",
    ] {
        ensure!(
            bed,
            whole.join(relative).is_file(),
            "source / installs {relative}"
        );
    }
    ensure!(
        bed,
        whole.join("web/uploads").is_dir(),
        "source / makes the empty web/uploads directory"
    );
    // A file source: <destination>/<file name>, nothing else from its folder.
    ensure_eq!(
        bed,
        read(&etc.join("inventory.env")),
        "DB=inventory\n",
        "a file source lands under its destination"
    );
    ensure!(
        bed,
        !etc.join("unused.env").exists() && !etc.join("config").exists(),
        "a file source copies only that file"
    );
    // Two directory sources merge into one destination.
    ensure_eq!(
        bed,
        read(&web.join("index.html")),
        "<h1>inventory</h1>\n",
        "web/ merged into the destination"
    );
    ensure_eq!(
        bed,
        read(&web.join("css/site.css")),
        "h1 { color: teal; }\n",
        "assets/ merged into the destination"
    );
    ensure!(
        bed,
        web.join("uploads").is_dir(),
        "the empty uploads directory is made"
    );
    let styles = web.join("styles");
    ensure!(
        bed,
        std::fs::symlink_metadata(&styles).is_ok_and(|m| m.is_dir()),
        "a link to a directory is installed as a real directory"
    );
    ensure_eq!(
        bed,
        read(&styles.join("site.css")),
        "h1 { color: teal; }\n",
        "with the linked directory's content"
    );

    // Made ancestors are recorded; pre-existing ones (var/www) are not.
    let cleanup = read(&instructions_file(&bed, &deployment.group_id, "-cleanup"));
    let listed: BTreeSet<&str> = cleanup.lines().collect();
    for made in [
        root.join("opt"),
        whole.clone(),
        root.join("etc"),
        etc.clone(),
        web.clone(),
        web.join("uploads"),
        web.join("css/site.css"),
    ] {
        ensure!(
            bed,
            listed.contains(made.to_string_lossy().as_ref()),
            "{} is in the cleanup file:\n{cleanup}",
            made.display()
        );
    }
    ensure!(
        bed,
        !listed.contains(root.join("var/www").to_string_lossy().as_ref()),
        "a directory that existed before is not in the cleanup file:\n{cleanup}"
    );
    ensure_eq!(
        bed,
        listed.len(),
        cleanup.lines().count(),
        "no path is listed twice in the cleanup file:\n{cleanup}"
    );
}
