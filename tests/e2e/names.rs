//! Hostile names (issue 20): an entry whose name holds a newline would have
//! put a second path in the cleanup file, which the group's next Install
//! unlinked as root. Through the agent's own entry points: the daemon refuses
//! such a bundle with the entry named escaped, and a hostile record in a
//! cleanup file (as the old writer made it) never makes the next Install
//! remove a path that Install did not record; `validate` and `codedeploy-local`
//! refuse the same names.

use std::path::Path;

use codedeploy_e2e::{BundleType, Deployment, Revision, TestBed};

use crate::local::run_local;
use crate::support::*;

const BUCKET: &str = "names-revisions";

fn revision(install: &Path, extra: &str) -> Revision {
    Revision::new()
        .file("appspec.yml", appspec("site", install, &[]))
        .file("site/index.html", "<p>site</p>\n")
        .file(&format!("site/{extra}"), "x\n")
}

#[test]
fn a_newline_in_an_entry_name_never_reaches_the_cleanup_file() {
    let bed = TestBed::start("hostile-names");
    let install = bed.path().join("srv/site");
    let victim = bed.path().join("victim.conf");
    std::fs::write(&victim, "precious\n").expect("the victim file");
    bed.start_agent(&agent_binary());

    // A first, honest deployment leaves its cleanup file and install.json.
    let honest = bed.upload(
        BUCKET,
        "honest.tgz",
        &revision(&install, "a.txt"),
        BundleType::Tgz,
    );
    let first = Deployment::new("Names", "Names-Group", honest.clone());
    bed.emulator.add_deployment(first.clone());
    expect_success(&bed, &first);
    let instructions = bed.root_dir().join("deployment-instructions");
    let cleanup = instructions.join(format!("{}-cleanup", first.group_id));
    let recorded = read(&cleanup);
    ensure!(
        bed,
        recorded.contains(&install.join("a.txt").display().to_string()),
        "the cleanup file lists a.txt: {recorded:?}"
    );

    // The hostile bundle: an entry named `evil` + newline + the victim's path.
    let hostile_name = format!("evil\n{}", victim.display());
    let hostile = bed.upload(
        BUCKET,
        "hostile.tgz",
        &revision(&install, &hostile_name),
        BundleType::Tgz,
    );
    let second = Deployment::next_in_group(&first, hostile);
    bed.emulator.add_deployment(second.clone());
    let failed = expect_failure_at(&bed, &second, "DownloadBundle");
    let message = failed
        .diagnostics()
        .map(|d| d.message.clone())
        .unwrap_or_default();
    ensure!(
        bed,
        // The bundle lists the entry's directories first: `site/evil\n/`
        // is the first entry refused.
        message
            .contains("entry 'site/evil\\n/': its name holds the control character \\n at byte 9")
            && !message.chars().any(char::is_control),
        "the service is told which entry, escaped: {message:?}"
    );

    // What the old writer made of such an entry: its second line names the
    // victim. install.json (which the first Install wrote) does not list it.
    std::fs::write(&cleanup, format!("{recorded}{}\n", victim.display())).expect("plant");
    let third = Deployment::next_in_group(&first, honest);
    bed.emulator.add_deployment(third.clone());
    expect_success(&bed, &third);
    ensure_eq!(
        bed,
        read(&victim),
        "precious\n",
        "a record that Install did not make is never replayed"
    );
    ensure!(
        bed,
        bed.agent_output().contains(&format!(
            "cleanup record '{}' is not replayed",
            victim.display()
        )),
        "the agent log names the refused record"
    );
    ensure_eq!(
        bed,
        read(&install.join("a.txt")),
        "x\n",
        "the honest revision is in place"
    );
}

/// `codedeploy-agent validate PATH`'s output, once it has exited 1.
fn validate_refuses(path: &Path) -> String {
    let output = std::process::Command::new(agent_binary())
        .arg("validate")
        .arg(path)
        .output()
        .expect("validate runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    stdout
}

#[test]
fn validate_and_codedeploy_local_refuse_the_same_names() {
    let tmp = tempfile::tempdir().expect("a temporary directory");
    let install = tmp.path().join("srv/site");
    let bundle = tmp.path().join("bundle");
    write_tree(&revision(&install, "title\u{1b}]0;owned\u{7}"), &bundle);
    let escaped_entry =
        "'site/title\\u{1b}]0;owned\\u{7}': its name holds the control character \\u{1b} at byte 5";

    let stdout = validate_refuses(&bundle);
    assert!(
        stdout.contains(escaped_entry) && !stdout.contains('\u{1b}'),
        "validate names the entry escaped: {stdout:?}"
    );

    let tar = tmp.path().join("bundle.tar");
    std::fs::write(
        &tar,
        revision(&install, "x\n/etc/passwd")
            .build(BundleType::Tar)
            .expect("a tar"),
    )
    .expect("write the tar");
    let stdout = validate_refuses(&tar);
    assert!(
        stdout.contains("entry 'site/x\\n/': its name holds the control character \\n at byte 6"),
        "validate refuses the tar: {stdout:?}"
    );

    let config = tmp.path().join("codedeployagent.yml");
    std::fs::write(
        &config,
        format!(
            "---\n:root_dir: {}\n:log_dir: {}\n",
            tmp.path().join("deployment-root").display(),
            tmp.path().join("log").display()
        ),
    )
    .expect("the configuration file");
    let location = bundle.display().to_string();
    let config = config.display().to_string();
    let run = run_local(
        tmp.path(),
        &["-c", &config, "-l", &location, "-a", "Names"],
        &[],
    );
    let text = run.describe();
    assert!(
        text.contains(escaped_entry) && !text.contains('\u{1b}'),
        "codedeploy-local names the entry escaped: {text:?}"
    );
    assert!(!install.exists(), "nothing was installed");
}
