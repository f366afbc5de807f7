//! The planner against an in-memory revision and host: each rule of
//! LIFECYCLE.md "Install" as a table row.

use std::collections::BTreeMap;

use super::*;
use crate::appspec::parse;

/// An in-memory revision under `/archive`.
struct Tree(BTreeMap<PathBuf, SourceKind>);

impl Tree {
    fn new(entries: &[(&str, SourceKind)]) -> Tree {
        let mut map: BTreeMap<PathBuf, SourceKind> = entries
            .iter()
            .map(|(p, k)| (PathBuf::from(p), k.clone()))
            .collect();
        map.insert(PathBuf::new(), SourceKind::Directory);
        Tree(map)
    }
}

impl RevisionTree for Tree {
    fn kind(&self, relative: &Path) -> Option<SourceKind> {
        self.0.get(relative).cloned()
    }
    fn children(&self, relative: &Path) -> Vec<OsString> {
        self.0
            .keys()
            .filter(|p| p.parent() == Some(relative) && !p.as_os_str().is_empty())
            .map(|p| p.file_name().unwrap().to_os_string())
            .collect()
    }
    fn absolute(&self, relative: &Path) -> PathBuf {
        Path::new("/archive").join(relative)
    }
}

use SourceKind::{Directory as D, File as F};

fn revision() -> Tree {
    Tree::new(&[
        ("appspec.yml", F),
        ("scripts", D),
        ("scripts/start.sh", F),
        ("scripts/lib", D),
        ("scripts/lib/util.sh", F),
        ("config", D),
        ("config/app.conf", F),
        ("config/current", SourceKind::FileLink),
    ])
}

fn render(plan: &InstallPlan) -> Vec<String> {
    plan.instructions
        .iter()
        .map(|i| match i {
            Instruction::Copy {
                source,
                destination,
            } => format!("copy {} {}", source.display(), destination.display()),
            Instruction::Mkdir { directory } => format!("mkdir {}", directory.display()),
            Instruction::Chmod { file, mode } => format!("chmod {mode} {}", file.display()),
            Instruction::SetAcl { file, acl } => format!(
                "setfacl {} {}",
                acl.iter()
                    .map(|a| a.to_string())
                    .collect::<Vec<_>>()
                    .join(","),
                file.display()
            ),
            Instruction::SetContext { file, context } => {
                format!("semanage {} {}", context.type_, file.display())
            }
            Instruction::Chown { file, owner, group } => {
                format!(
                    "chown {}:{} {}",
                    owner.as_deref().unwrap_or(""),
                    group.as_deref().unwrap_or(""),
                    file.display()
                )
            }
        })
        .collect()
}

/// The host: `/`, `/var`, `/etc`, `/srv`, `/srv/app` exist as directories, and
/// `/srv/app/appspec.yml` and `/srv/file` as files.
fn host(path: &Path) -> Existing {
    match path.to_str().unwrap() {
        "/" | "/var" | "/etc" | "/srv" | "/srv/app" => Existing::Directory,
        "/srv/app/appspec.yml" | "/srv/file" => Existing::Other,
        _ => Existing::Missing,
    }
}

fn plan_for(body: &str, tree: &Tree, behavior: FileExistsBehavior) -> Result<Vec<String>, String> {
    let appspec = parse(
        &format!("version: 0.0\nos: linux\n{body}"),
        Path::new("appspec.yml"),
    )
    .unwrap();
    plan(&appspec, tree, &host, behavior)
        .map(|p| render(&p))
        .map_err(|e| e.to_string())
}

const WHOLE_REVISION_TO_NEW_DIR: &str = "files:\n  - source: /\n    destination: /var/www/app\n";

#[test]
fn files_become_mkdir_and_copy_instructions() {
    use FileExistsBehavior::*;
    let cases: &[(&str, FileExistsBehavior, &[&str])] = &[
        (
            WHOLE_REVISION_TO_NEW_DIR,
            Disallow,
            &[
                "mkdir /var/www",
                "mkdir /var/www/app",
                "copy /archive/appspec.yml /var/www/app/appspec.yml",
                "mkdir /var/www/app/config",
                "copy /archive/config/app.conf /var/www/app/config/app.conf",
                "copy /archive/config/current /var/www/app/config/current",
                "mkdir /var/www/app/scripts",
                "mkdir /var/www/app/scripts/lib",
                "copy /archive/scripts/lib/util.sh /var/www/app/scripts/lib/util.sh",
                "copy /archive/scripts/start.sh /var/www/app/scripts/start.sh",
            ],
        ),
        // A directory source into an existing directory: no mkdir for it.
        (
            "files:\n  - source: scripts/lib\n    destination: /etc\n",
            Disallow,
            &["copy /archive/scripts/lib/util.sh /etc/util.sh"],
        ),
        // A file source lands under destination/<name>, parents made.
        (
            "files:\n  - source: config/app.conf\n    destination: /etc/app/conf.d\n",
            Disallow,
            &["mkdir /etc/app", "mkdir /etc/app/conf.d", "copy /archive/config/app.conf /etc/app/conf.d/app.conf"],
        ),
        // Two mappings sharing new parents make each directory once.
        (
            "files:\n  - source: config/app.conf\n    destination: /var/x/a\n  - source: appspec.yml\n    destination: /var/x/b\n",
            Disallow,
            &[
                "mkdir /var/x",
                "mkdir /var/x/a",
                "copy /archive/config/app.conf /var/x/a/app.conf",
                "mkdir /var/x/b",
                "copy /archive/appspec.yml /var/x/b/appspec.yml",
            ],
        ),
        // Existing files: OVERWRITE copies, RETAIN skips.
        (
            "files:\n  - source: appspec.yml\n    destination: /srv/app\n",
            Overwrite,
            &["copy /archive/appspec.yml /srv/app/appspec.yml"],
        ),
        ("files:\n  - source: appspec.yml\n    destination: /srv/app\n", Retain, &[]),
    ];
    for (body, behavior, expected) in cases {
        assert_eq!(
            plan_for(body, &revision(), *behavior).unwrap(),
            *expected,
            "{body}"
        );
    }
}

#[test]
fn conflicts_fail_the_plan() {
    use FileExistsBehavior::*;
    let cases: &[(&str, FileExistsBehavior, &str)] = &[
        (
            "files:\n  - source: appspec.yml\n    destination: /srv/app\n",
            Disallow,
            "The deployment failed because a specified file already exists at this location: /srv/app/appspec.yml",
        ),
        (
            "files:\n  - source: appspec.yml\n    destination: /srv/x\n  - source: config/../appspec.yml\n    destination: /srv/x\n",
            Disallow,
            "copies two sources, /archive/appspec.yml and /archive/appspec.yml, to the same destination /srv/x/appspec.yml",
        ),
        (
            "files:\n  - source: scripts/lib/util.sh\n    destination: /srv/new/scripts\n  - source: scripts/lib\n    destination: /srv/new/scripts/util.sh\n",
            Disallow,
            "must create the directory /srv/new/scripts/util.sh, where the AppSpec file also installs the file /archive/scripts/lib/util.sh",
        ),
        (
            "files:\n  - source: config/app.conf\n    destination: /srv/new\n  - source: scripts/lib\n    destination: /srv/new/app.conf\n",
            Disallow,
            "must create the directory /srv/new/app.conf, where the AppSpec file also installs the file /archive/config/app.conf",
        ),
        (
            "files:\n  - source: scripts\n    destination: /srv/file\n",
            Overwrite,
            "must create the directory /srv/file, but a file already exists there",
        ),
        (
            "files:\n  - source: scripts\n    destination: /srv/new\n  - source: scripts/start.sh\n    destination: /srv/new/lib/x\n  - source: appspec.yml\n    destination: /srv/new\n  - source: appspec.yml\n    destination: /srv/new\n",
            Disallow,
            "copies two sources",
        ),
        (
            "files:\n  - source: missing.txt\n    destination: /srv\n",
            Disallow,
            "The source 'missing.txt' of a files entry does not exist in the revision (expected at /archive/missing.txt)",
        ),
    ];
    for (body, behavior, fragment) in cases {
        match plan_for(body, &revision(), *behavior) {
            Err(message) => assert!(
                message.contains(fragment),
                "{body}\nexpected «{fragment}» in {message}"
            ),
            Ok(plan) => panic!("{body}: expected an error, planned {plan:?}"),
        }
    }
}

#[test]
fn a_file_copied_onto_a_directory_this_plan_makes_fails() {
    let tree = Tree::new(&[("a", D), ("a/x", D), ("a/x/y", F), ("x", F)]);
    let err = plan_for(
        "files:\n  - source: a\n    destination: /srv/d\n  - source: x\n    destination: /srv/d\n",
        &tree,
        FileExistsBehavior::Disallow,
    )
    .unwrap_err();
    assert!(err.contains("installs the file /archive/x at /srv/d/x, where this deployment also creates a directory"), "{err}");
}

#[test]
fn an_existing_directory_is_never_overwritten_by_a_file() {
    let tree = Tree::new(&[("srv", F)]);
    let err = plan_for(
        "files:\n  - source: srv\n    destination: /\n",
        &tree,
        FileExistsBehavior::Overwrite,
    )
    .unwrap_err();
    assert!(err.contains("/srv exists and is a directory"), "{err}");
    assert!(plan_for(
        "files:\n  - source: srv\n    destination: /\n",
        &tree,
        FileExistsBehavior::Retain
    )
    .unwrap()
    .is_empty());
}

#[test]
fn directory_links_are_followed_inside_the_revision_only() {
    let inside = |p: &str| SourceKind::DirectoryLink {
        inside: Some(PathBuf::from(p)),
        target: PathBuf::from(p),
    };
    let tree = Tree::new(&[("real", D), ("real/f", F), ("alias", inside("real"))]);
    assert_eq!(
        plan_for(
            WHOLE_REVISION_TO_NEW_DIR
                .replace("/var/www/app", "/srv/n")
                .as_str(),
            &tree,
            FileExistsBehavior::Disallow
        )
        .unwrap(),
        [
            "mkdir /srv/n",
            "mkdir /srv/n/alias",
            "copy /archive/real/f /srv/n/alias/f",
            "mkdir /srv/n/real",
            "copy /archive/real/f /srv/n/real/f"
        ]
    );

    let outside = SourceKind::DirectoryLink {
        inside: None,
        target: PathBuf::from("/etc"),
    };
    let tree = Tree::new(&[("etc", outside)]);
    let err = plan_for(
        "files:\n  - source: /\n    destination: /srv/n\n",
        &tree,
        FileExistsBehavior::Disallow,
    )
    .unwrap_err();
    assert!(
        err.contains(
            "symbolic link /archive/etc points to a directory outside the revision (/etc)"
        ),
        "{err}"
    );

    let tree = Tree::new(&[("sub", D), ("sub/up", inside(""))]);
    let err = plan_for(
        "files:\n  - source: /\n    destination: /srv/n\n",
        &tree,
        FileExistsBehavior::Disallow,
    )
    .unwrap_err();
    assert!(err.contains("/archive/sub/up leads back"), "{err}");

    let tree = Tree::new(&[("fifo", SourceKind::Unsupported)]);
    let err = plan_for(
        "files:\n  - source: /\n    destination: /srv/n\n",
        &tree,
        FileExistsBehavior::Disallow,
    )
    .unwrap_err();
    assert!(err.contains("/archive/fifo is neither a file"), "{err}");
}

const PERMISSION_FILES: &str = "files:\n  - source: /\n    destination: /var/app\n";

#[test]
fn permissions_apply_to_what_this_deployment_installs() {
    let cases: &[(&str, &[&str])] = &[
        // Everything below the object, files first then directories.
        (
            "  - object: /var/app\n    mode: 640\n",
            &[
                "chmod 640 /var/app/appspec.yml",
                "chmod 640 /var/app/config/app.conf",
                "chmod 640 /var/app/config/current",
                "chmod 640 /var/app/scripts/lib/util.sh",
                "chmod 640 /var/app/scripts/start.sh",
                "chmod 640 /var/app/config",
                "chmod 640 /var/app/scripts",
                "chmod 640 /var/app/scripts/lib",
            ],
        ),
        // A pattern reaches direct children only.
        ("  - object: /var/app/scripts\n    pattern: \"*.sh\"\n    mode: 755\n", &["chmod 755 /var/app/scripts/start.sh"]),
        (
            "  - object: /var/app\n    pattern: \"*\"\n    except: [\"*.yml\", config]\n    owner: www\n",
            &["chown www: /var/app/scripts"],
        ),
        // type restricts the kinds.
        (
            "  - object: /var/app/scripts\n    type: [directory]\n    group: ops\n",
            &["chown :ops /var/app/scripts/lib"],
        ),
        // The object itself when it is a copied file; order: mode, acls, context, owner.
        (
            "  - object: /var/app/appspec.yml\n    owner: a\n    mode: 600\n    acls: [\"u:bob:r\"]\n    context: {type: t}\n",
            &[
                "chmod 600 /var/app/appspec.yml",
                "setfacl user:bob:r-- /var/app/appspec.yml",
                "semanage t /var/app/appspec.yml",
                "chown a: /var/app/appspec.yml",
            ],
        ),
        ("  - object: /var/app/appspec.yml\n    type: [directory]\n    mode: 600\n", &[]),
        // A directory made by the deployment is not its own match.
        ("  - object: /var/app/config\n    type: [directory]\n    mode: 700\n", &[]),
        // Neither copied nor a directory: nothing.
        ("  - object: /var/elsewhere\n    mode: 700\n", &[]),
        // An existing host directory: only what is installed below it.
        ("  - object: /var\n    pattern: \"*\"\n    mode: 711\n", &["chmod 711 /var/app"]),
        // Default acls on directories.
        ("  - object: /var/app/scripts\n    type: [directory]\n    acls: [\"d:u:bob:rx\"]\n", &["setfacl default:user:bob:r-x /var/app/scripts/lib"]),
    ];
    for (permissions, expected) in cases {
        let body = format!("{PERMISSION_FILES}permissions:\n{permissions}");
        let planned = plan_for(&body, &revision(), FileExistsBehavior::Disallow).unwrap();
        let permission_steps: Vec<&String> = planned
            .iter()
            .filter(|s| !s.starts_with("copy ") && !s.starts_with("mkdir "))
            .collect();
        assert_eq!(permission_steps, *expected, "{permissions}");
    }
}

#[test]
fn invalid_permissions_fail_the_plan() {
    let cases: &[(&str, &str)] = &[
        ("  - object: /var/app/appspec.yml\n    pattern: \"*.yml\"\n", "give pattern *.yml; a pattern applies only to directory objects"),
        ("  - object: /var/app/appspec.yml\n    except: [x]\n", "give except"),
        ("  - object: /var/app/appspec.yml\n    acls: [\"d:u:bob:r\"]\n", "default (d:) acl entry would apply to the file /var/app/appspec.yml"),
        ("  - object: /var/app/scripts\n    acls: [\"d:u:bob:r\"]\n", "would apply to the file /var/app/scripts/lib/util.sh"),
        (
            "  - object: /var/app/scripts\n    mode: 700\n  - object: /var/app/scripts/start.sh\n    mode: 755\n",
            "the permissions for /var/app/scripts/start.sh are specified more than once",
        ),
    ];
    for (permissions, fragment) in cases {
        let body = format!("{PERMISSION_FILES}permissions:\n{permissions}");
        let err = plan_for(&body, &revision(), FileExistsBehavior::Disallow).unwrap_err();
        assert!(
            err.contains(fragment),
            "{permissions}\nexpected «{fragment}» in {err}"
        );
    }
}

#[test]
fn only_entries_that_install_into_one_tree_share_it() {
    let roots = |paths: &[Option<&str>]| -> Vec<Option<PathBuf>> {
        paths.iter().map(|p| p.map(PathBuf::from)).collect()
    };
    let cases: &[(&[Option<&str>], &[bool])] = &[
        (&[Some("/srv/app")], &[false]),
        (&[Some("/srv/app"), Some("/srv/web")], &[false, false]),
        (&[Some("/srv/app"), Some("/srv/app/conf")], &[true, true]),
        (&[Some("/srv/app/conf/a.conf"), Some("/srv")], &[true, true]),
        (&[Some("/srv/app"), Some("/srv/app")], &[true, true]),
        (
            &[Some("/srv/app"), Some("/srv/application")],
            &[false, false],
        ),
        (
            &[Some("/srv/app"), None, Some("/opt/x")],
            &[false, false, false],
        ),
        (
            &[Some("/a"), Some("/b"), Some("/a/c")],
            &[true, false, true],
        ),
    ];
    for (paths, expected) in cases {
        let roots = roots(paths);
        let shared: Vec<bool> = (0..roots.len())
            .map(|at| shares_a_tree(&roots, at))
            .collect();
        assert_eq!(&shared, expected, "{paths:?}");
    }
}
