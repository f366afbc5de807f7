//! Tables of appspecs: every accepted form and every rejection of APPSPEC.md.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;

fn parse_ok(text: &str) -> AppSpec {
    parse(text, Path::new("/r/appspec.yml")).unwrap_or_else(|e| panic!("{text}\n→ {e}"))
}

const HEAD: &str = "version: 0.0\nos: linux\n";

#[test]
fn minimal_appspecs_are_accepted() {
    for text in [
        "version: 0.0\nos: linux\n",
        "version: 0\nos: linux\n",
        "version: 0.00\nos: linux\n",
        "os: linux\nversion: 0.0\n",
        "version: 0.0\nos: linux\nfiles:\npermissions:\nhooks:\nfile_exists_behavior:\n",
        "version: 0.0\nos: linux\nfiles: []\nhooks: {}\n",
        "{version: 0.0, os: linux}",
    ] {
        let spec = parse_ok(text);
        assert_eq!(spec.version, AppSpecVersion::V0_0);
        assert_eq!(spec.os, Os::Linux);
        assert!(spec.files.is_empty() && spec.permissions.is_empty() && spec.hooks.is_empty());
        assert_eq!(spec.file_exists_behavior, None);
        assert!(spec.warnings.is_empty(), "{text}: {:?}", spec.warnings);
    }
}

#[test]
fn file_exists_behavior_values_are_case_sensitive_names() {
    let cases: &[(&str, Option<FileExistsBehavior>)] = &[
        ("DISALLOW", Some(FileExistsBehavior::Disallow)),
        ("OVERWRITE", Some(FileExistsBehavior::Overwrite)),
        ("RETAIN", Some(FileExistsBehavior::Retain)),
        ("\"RETAIN\"", Some(FileExistsBehavior::Retain)),
        ("~", None),
    ];
    for (written, expected) in cases {
        let spec = parse_ok(&format!("{HEAD}file_exists_behavior: {written}\n"));
        assert_eq!(spec.file_exists_behavior, *expected, "{written}");
    }
}

#[test]
fn files_are_parsed_and_normalised() {
    let spec = parse_ok(&format!(
        "{HEAD}files:\n  - source: /\n    destination: /var/www/app/\n  - source: config/app.conf\n    destination: /etc/../etc/app\n"
    ));
    assert_eq!(spec.files.len(), 2);
    assert!(spec.files[0].source.is_root());
    assert_eq!(spec.files[0].destination, PathBuf::from("/var/www/app"));
    assert_eq!(
        spec.files[1].source.relative(),
        Path::new("config/app.conf")
    );
    assert_eq!(spec.files[1].source.written(), "config/app.conf");
    assert_eq!(spec.files[1].destination, PathBuf::from("/etc/app"));
}

#[test]
fn hooks_are_parsed_with_defaults() {
    let spec = parse_ok(&format!(
        "{HEAD}hooks:
  BeforeInstall:
    - location: scripts/deps.sh
      timeout: 300
      runas: deploy
    - location: ' scripts/second.sh '
  ApplicationStart:
    - location: /scripts/start.sh
      sudo: true
  ApplicationStop:
  AfterInstall: []
"
    ));
    let before = spec.hooks_for(&LifecycleEvent::BeforeInstall);
    assert_eq!(
        before,
        &[
            HookScript {
                location: "scripts/deps.sh".into(),
                timeout: Duration::from_secs(300),
                runas: Some("deploy".into()),
                sudo: false,
            },
            HookScript {
                location: "scripts/second.sh".into(),
                timeout: HookScript::DEFAULT_TIMEOUT,
                runas: None,
                sudo: false,
            },
        ]
    );
    let start = spec.hooks_for(&LifecycleEvent::ApplicationStart);
    assert!(start[0].sudo);
    assert_eq!(
        start[0].revision_path().unwrap().relative(),
        Path::new("scripts/start.sh")
    );
    assert!(!spec.has_hooks(&LifecycleEvent::ApplicationStop));
    assert!(!spec.has_hooks(&LifecycleEvent::AfterInstall));
    assert!(!spec.has_hooks(&LifecycleEvent::ValidateService));
    assert!(spec.has_hooks(&LifecycleEvent::BeforeInstall));
}

#[test]
fn timeouts_follow_ruby_to_i() {
    let cases: &[(&str, u64)] = &[
        ("1", 1),
        ("7200", 7200),
        ("\"300\"", 300),
        ("1.9", 1),
        ("86400", 86400),
        ("\"86400\"", 86400),
    ];
    for (written, seconds) in cases {
        let spec = parse_ok(&format!(
            "{HEAD}hooks:\n  ValidateService:\n    - location: v.sh\n      timeout: {written}\n"
        ));
        assert_eq!(
            spec.hooks_for(&LifecycleEvent::ValidateService)[0].timeout,
            Duration::from_secs(*seconds),
            "{written}"
        );
    }
}

#[test]
fn permissions_are_parsed_fully() {
    let spec = parse_ok(&format!(
        "{HEAD}permissions:
  - object: /var/www/app/
    pattern: \"*.sh\"
    except: [secret.sh]
    type: [file]
    owner: www-data
    group: www-data
    mode: 755
    acls: [\"u:alice:rw\", \"d:g:ops:r\"]
    context: {{name: system_u, type: httpd_sys_content_t, range: s0}}
  - object: /etc/app.conf
"
    ));
    let p = &spec.permissions[0];
    assert_eq!(p.object, PathBuf::from("/var/www/app"));
    assert_eq!(p.pattern.as_str(), "*.sh");
    assert_eq!(p.except, vec![Glob::new("secret.sh")]);
    assert_eq!(
        p.kinds,
        ObjectKinds {
            files: true,
            directories: false
        }
    );
    assert_eq!(p.owner.as_deref(), Some("www-data"));
    assert_eq!(p.group.as_deref(), Some("www-data"));
    assert_eq!(p.mode.map(Mode::bits), Some(0o755));
    assert_eq!(p.acls.len(), 2);
    assert!(p.has_default_acl());
    let context = p.context.as_ref().unwrap();
    assert_eq!(context.user.as_deref(), Some("system_u"));
    assert_eq!(context.type_, "httpd_sys_content_t");
    assert_eq!(
        context.range.as_ref().map(|r| r.to_string()).as_deref(),
        Some("s0")
    );

    let defaults = &spec.permissions[1];
    assert!(defaults.pattern.is_everything());
    assert!(defaults.except.is_empty() && defaults.acls.is_empty());
    assert_eq!(defaults.kinds, ObjectKinds::BOTH);
    assert_eq!(
        (defaults.mode, &defaults.owner, &defaults.context),
        (None, &None, &None)
    );
}

#[test]
fn modes_are_the_digits_written_whatever_the_yaml_type() {
    let cases: &[(&str, u32, bool)] = &[
        ("644", 0o644, false),
        ("0644", 0o644, true),
        ("\"644\"", 0o644, false),
        ("'0755'", 0o755, true),
        ("4755", 0o4755, false),
        ("7", 0o007, false),
    ];
    for (written, bits, warns) in cases {
        let spec = parse_ok(&format!(
            "{HEAD}permissions:\n  - object: /app\n    mode: {written}\n"
        ));
        assert_eq!(
            spec.permissions[0].mode.map(Mode::bits),
            Some(*bits),
            "{written}"
        );
        assert_eq!(
            spec.warnings.iter().any(|w| w.contains("official agent")),
            *warns,
            "{written}: {:?}",
            spec.warnings
        );
    }
}

#[test]
fn keys_written_twice_at_any_depth_warn_and_the_last_counts() {
    let spec = parse_ok(&format!(
        "{HEAD}files:\n  - source: a\n    destination: /first\n    destination: /second\n\
         permissions:\n  - object: /second\n    acls: [u:a:r]\n    context: {{type: t, type: u}}\n\
         hooks:\n  BeforeInstall:\n    - location: a.sh\n      timeout: 5\n      timeout: 9\n"
    ));
    assert_eq!(spec.files[0].destination, Path::new("/second"));
    assert_eq!(
        spec.hooks_for(&LifecycleEvent::BeforeInstall)[0].timeout,
        std::time::Duration::from_secs(9)
    );
    assert_eq!(
        spec.warnings,
        [
            "files[0]: 'destination' appears more than once; only the last one counts",
            "permissions[0].context: 'type' appears more than once; only the last one counts",
            "hooks.BeforeInstall[0]: 'timeout' appears more than once; only the last one counts",
        ]
    );
}

#[test]
fn probable_mistakes_are_warnings_not_errors() {
    let cases: &[(&str, &str)] = &[
        ("hook:\n  BeforeInstall: []\n", "unknown top-level key 'hook'"),
        ("os: linux\n", "appears more than once"),
        ("hooks:\n  Applicationstart:\n    - location: a.sh\n", "not a standard lifecycle event"),
        (
            "hooks:\n  BeforeInstall:\n    - location: a.sh\n  BeforeInstall:\n    - location: b.sh\n",
            "'BeforeInstall' appears more than once",
        ),
        (
            "permissions:\n  - object: /a\n    context: {type: t, role: object_r}\n",
            "role 'object_r' is ignored",
        ),
    ];
    for (body, warning) in cases {
        let spec = parse_ok(&format!("{HEAD}{body}"));
        assert!(
            spec.warnings.iter().any(|w| w.contains(warning)),
            "{body}: {:?}",
            spec.warnings
        );
    }
    let spec = parse_ok(&format!(
        "{HEAD}hooks:\n  BeforeInstall:\n    - location: a.sh\n  BeforeInstall:\n    - location: b.sh\n"
    ));
    assert_eq!(
        spec.hooks_for(&LifecycleEvent::BeforeInstall)[0].location,
        "b.sh"
    );
}

/// (appspec text, fragment of the error, 1-based line it must point at or 0 for any).
const INVALID: &[(&str, &str, usize)] = &[
    // Top level.
    ("- version: 0.0\n", "expected a mapping with at least version and os", 1),
    ("version: 0.0\nos: linux\nfiles: [\n", "while parsing", 0),
    ("version: \"0.0\"\nos: linux\n", "version: must be the number 0.0, not the string \"0.0\"", 1),
    ("version: 1.0\nos: linux\n", "version: the number 1 is not supported", 1),
    ("version: 0.1\nos: linux\n", "is not supported", 1),
    ("version: true\nos: linux\n", "is not supported", 1),
    ("os: linux\n", "version is missing", 0),
    ("version: 0.0\n", "os is missing", 0),
    ("version: 0.0\nos: windows\n", "windows is not supported on this host", 2),
    ("version: 0.0\nos: Linux\n", "os: the string \"Linux\" is not supported", 2),
    ("version: 0.0\nos: [linux]\n", "expected linux", 2),
    ("version: 0.0\nos: linux\nfile_exists_behavior: overwrite\n", "'overwrite' is not valid", 3),
    ("version: 0.0\nos: linux\nfile_exists_behavior: 1\n", "DISALLOW, OVERWRITE, RETAIN", 3),
    // files.
    ("version: 0.0\nos: linux\nfiles: /app\n", "expected a list", 3),
    ("version: 0.0\nos: linux\nfiles:\n  - destination: /app\n", "files[0]: this files entry has no source", 4),
    ("version: 0.0\nos: linux\nfiles:\n  - source: app\n", "copies source 'app' but has no destination", 4),
    (
        "version: 0.0\nos: linux\nfiles:\n  - source: /\n    destination: /a\n  - source: x\n    destination: var/www\n",
        "files[1].destination: 'var/www' must be an absolute path",
        7,
    ),
    ("version: 0.0\nos: linux\nfiles:\n  - source: ../etc\n    destination: /a\n", "climbs out of the revision", 4),
    ("version: 0.0\nos: linux\nfiles:\n  - /app\n", "expected a mapping with source and destination", 4),
    // hooks.
    ("version: 0.0\nos: linux\nhooks: [a]\n", "expected a mapping from lifecycle event names", 3),
    ("version: 0.0\nos: linux\nhooks:\n  BeforeInstall: a.sh\n", "hooks.BeforeInstall: invalid type", 4),
    ("version: 0.0\nos: linux\nhooks:\n  BeforeInstall:\n    - timeout: 5\n", "hooks.BeforeInstall[0]: this script has no location", 5),
    ("version: 0.0\nos: linux\nhooks:\n  BeforeInstall:\n    - location:\n", "has no location", 5),
    ("version: 0.0\nos: linux\nhooks:\n  BeforeInstall:\n    - location: '  '\n", "location: is empty", 5),
    ("version: 0.0\nos: linux\nhooks:\n  BeforeInstall:\n    - location: ../../bin/sh\n", "climbs out of the revision", 5),
    ("version: 0.0\nos: linux\nhooks:\n  BeforeInstall:\n    - location: /\n", "names the revision root", 5),
    (
        "version: 0.0\nos: linux\nhooks:\n  BeforeInstall:\n    - location: a.sh\n      timeout: 0\n",
        "hooks.BeforeInstall[0].timeout: the number 0 is not valid",
        6,
    ),
    ("version: 0.0\nos: linux\nhooks:\n  BeforeInstall:\n    - location: a.sh\n      timeout: -5\n", "greater than 0", 6),
    ("version: 0.0\nos: linux\nhooks:\n  BeforeInstall:\n    - location: a.sh\n      timeout: 0.5\n", "greater than 0", 6),
    ("version: 0.0\nos: linux\nhooks:\n  BeforeInstall:\n    - location: a.sh\n      timeout: soon\n", "the string \"soon\"", 6),
    (
        "version: 0.0\nos: linux\nhooks:\n  BeforeInstall:\n    - location: a.sh\n      timeout: 9223372036854775807\n",
        "hooks.BeforeInstall[0].timeout: the number 9223372036854775807 is above the longest timeout this agent accepts, 86400 seconds (24 hours",
        6,
    ),
    ("version: 0.0\nos: linux\nhooks:\n  BeforeInstall:\n    - location: a.sh\n      timeout: 86401\n", "above the longest timeout", 6),
    ("version: 0.0\nos: linux\nhooks:\n  BeforeInstall:\n    - location: a.sh\n      timeout: '100000'\n", "above the longest timeout", 6),
    ("version: 0.0\nos: linux\nhooks:\n  BeforeInstall:\n    - location: a.sh\n      timeout: 1.0e30\n", "above the longest timeout", 6),
    ("version: 0.0\nos: linux\nhooks:\n  BeforeInstall:\n    - location: a.sh\n      runas: -root\n", "runas: '-root' is not a valid user name", 6),
    ("version: 0.0\nos: linux\nhooks:\n  BeforeInstall:\n    - location: a.sh\n      runas: 'a b'\n", "not a valid user name", 6),
    ("version: 0.0\nos: linux\nhooks:\n  BeforeInstall:\n    - location: a.sh\n      runas: ''\n", "not a valid user name", 6),
    ("version: 0.0\nos: linux\nhooks:\n  BeforeInstall:\n    - location: a.sh\n      sudo: yes please\n", "sudo: the string", 6),
    // permissions.
    ("version: 0.0\nos: linux\npermissions:\n  - mode: 644\n", "permissions[0]: this permission has no object", 4),
    ("version: 0.0\nos: linux\npermissions:\n  - object: ''\n", "has no object", 4),
    ("version: 0.0\nos: linux\npermissions:\n  - object: app\n", "object: 'app' must be an absolute path", 4),
    ("version: 0.0\nos: linux\npermissions:\n  - object: /a\n    type: [file, link]\n", "permissions[0].type[1]: permission type 'link'", 5),
    ("version: 0.0\nos: linux\npermissions:\n  - object: /a\n    mode: 649\n", "contains '9'", 5),
    ("version: 0.0\nos: linux\npermissions:\n  - object: /a\n    mode: 12345\n", "one to four octal digits", 5),
    ("version: 0.0\nos: linux\npermissions:\n  - object: /a\n    mode: u+x\n", "not an octal digit", 5),
    ("version: 0.0\nos: linux\npermissions:\n  - object: /a\n    acls: [\"u::rw\"]\n", "permissions[0].acls[0]: acl entry 'u::rw'", 5),
    ("version: 0.0\nos: linux\npermissions:\n  - object: /a\n    context: {name: u}\n", "this context has no type", 5),
    ("version: 0.0\nos: linux\npermissions:\n  - object: /a\n    context: {type: t, range: s1-s0}\n", "SELinux range 's1-s0'", 5),
];

#[test]
fn invalid_appspecs_are_rejected_with_key_and_line() {
    for (text, fragment, line) in INVALID {
        let err = parse(text, Path::new("/r/appspec.yml")).expect_err(text);
        let message = err.to_string();
        assert!(message.contains("/r/appspec.yml"), "{text}: {message}");
        assert!(
            message.contains(fragment),
            "{text}\nexpected «{fragment}» in: {message}"
        );
        if *line != 0 {
            assert_eq!(err.line(), Some(*line), "{text}: {message}");
        }
    }
}

#[test]
fn empty_documents_are_rejected() {
    for text in ["", "\n", "# nothing here\n", "~\n", "---\n"] {
        let err = parse(text, Path::new("/r/appspec.yml")).expect_err(text);
        assert!(matches!(err, AppSpecError::Empty { .. }), "{text:?}: {err}");
        assert!(err
            .to_string()
            .contains("must define at least version and os"));
    }
}

#[test]
fn load_finds_the_named_file_or_the_install_fallbacks() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path();
    std::fs::write(archive.join("appspec.yaml"), HEAD).unwrap();

    // Hooks: exactly the given name.
    let err = load(archive, "appspec.yml", AppSpecLookup::Exact).unwrap_err();
    let message = err.to_string();
    assert!(message.starts_with(&format!(
        "The CodeDeploy agent did not find an AppSpec file within the unpacked revision directory at revision-relative path \"appspec.yml\". The revision was unpacked to directory \"{}\", and the AppSpec file was expected but not found at path \"{}/appspec.yml\".",
        archive.display(),
        archive.display()
    )), "{message}");

    // Install: falls back to appspec.yaml.
    load(archive, "appspec.yml", AppSpecLookup::InstallFallback).unwrap();
    load(archive, "appspec.yaml", AppSpecLookup::Exact).unwrap();

    // Install: the given name wins over the fallbacks.
    std::fs::write(archive.join("custom.yml"), "version: 1.0\nos: linux\n").unwrap();
    let err = load(archive, "custom.yml", AppSpecLookup::InstallFallback).unwrap_err();
    assert!(err.to_string().contains("custom.yml"), "{err}");

    let empty = tempfile::tempdir().unwrap();
    let err = load(empty.path(), "appspec.yml", AppSpecLookup::InstallFallback).unwrap_err();
    assert!(matches!(err, AppSpecError::NotFound { .. }));
}

#[test]
fn all_possible_lifecycle_events_are_checked() {
    let standard: Vec<String> = [
        "BeforeBlockTraffic",
        "AfterBlockTraffic",
        "ApplicationStop",
        "DownloadBundle",
        "BeforeInstall",
        "Install",
        "AfterInstall",
        "ApplicationStart",
        "ValidateService",
        "BeforeAllowTraffic",
        "AfterAllowTraffic",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let with = |extra: &[&str]| -> Vec<String> {
        let mut list = standard.clone();
        list.extend(extra.iter().map(|s| s.to_string()));
        list
    };
    let custom = parse_ok(&format!(
        "{HEAD}hooks:\n  Custom1:\n    - location: c.sh\n  UnknownHook:\n"
    ));

    assert!(custom
        .check_lifecycle_events(&with(&["Custom1", "UnknownHook"]), "appspec.yml")
        .is_ok());
    let err = custom
        .check_lifecycle_events(&with(&["Custom1"]), "appspec.yml")
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "appspec.yml file contains unknown lifecycle events: [\"UnknownHook\"]"
    );
    let err = custom
        .check_lifecycle_events(
            &with(&["Custom1", "UnknownHook", "Missing1", "Missing2"]),
            "app.yml",
        )
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "You specified a lifecycle event which is not a default one and doesn't exist in your app.yml file: Missing1,Missing2"
    );
    // A list without the standard hook events makes them unknown.
    let plain = parse_ok(HEAD);
    let err = plain
        .check_lifecycle_events(&["Install".to_string()], "appspec.yml")
        .unwrap_err();
    assert!(err.to_string().contains("\"ApplicationStop\""), "{err}");
}

/// Hostile appspecs end in a clear error, fast and without holding memory
/// out of proportion to the file.
#[test]
fn hostile_appspecs_are_refused_quickly_with_a_reason() {
    // Nine levels of nine-fold aliases: 9^9 nodes if expanded.
    let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x]\n");
    for level in 1..9 {
        let previous = format!("*a{}", level - 1);
        let list = [previous.as_str(); 9].join(", ");
        bomb.push_str(&format!("a{level}: &a{level} [{list}]\n"));
    }
    // Unused, the anchors cost nothing; used where the appspec reads them,
    // the expansion is stopped at the first node of the wrong shape.
    let unused_bomb = format!("{bomb}version: 0.0\nos: linux\n");
    bomb.push_str("version: 0.0\nos: linux\nhooks:\n  BeforeInstall: *a8\n");
    let deep_flow = format!(
        "{HEAD}hooks:\n  BeforeInstall: {}{}\n",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let deep_maps = format!(
        "{HEAD}files: {}x{}\n",
        "{a: ".repeat(50_000),
        "}".repeat(50_000)
    );
    let deep_block = format!(
        "{HEAD}hooks:\n  BeforeInstall:\n    {}x\n",
        "- ".repeat(50_000)
    );
    let cases: &[(&str, &str, &str)] = &[
        ("alias bomb", &bomb, "hooks.BeforeInstall[0]: invalid type"),
        (
            "deep flow sequences",
            &deep_flow,
            "100000 `[` and `{` characters",
        ),
        (
            "deep flow mappings",
            &deep_maps,
            "50000 `[` and `{` characters",
        ),
        (
            "deep block sequences",
            &deep_block,
            "BeforeInstall[0]: invalid type",
        ),
    ];
    for (what, text, fragment) in cases {
        let started = std::time::Instant::now();
        let err = parse(text, Path::new("/r/appspec.yml")).expect_err(what);
        let message = err.to_string();
        assert!(message.contains(fragment), "{what}: {message}");
        assert!(
            message.contains("/r/appspec.yml"),
            "{what} names the file: {message}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{what} took {:?}",
            started.elapsed()
        );
    }
    let started = std::time::Instant::now();
    let spec = parse_ok(&unused_bomb);
    assert!(spec.hooks.is_empty());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    // Many flow collections side by side are fine up to the bound.
    let siblings = format!(
        "{HEAD}permissions:\n{}",
        "  - object: /a\n    type: [file]\n".repeat(MAX_FLOW_OPENERS)
    );
    assert_eq!(parse_ok(&siblings).permissions.len(), MAX_FLOW_OPENERS);
}

#[test]
fn huge_and_non_utf8_appspec_files_are_refused_by_load() {
    let dir = tempfile::tempdir().unwrap();
    let huge = dir.path().join("huge");
    std::fs::create_dir(&huge).unwrap();
    let mut text = String::from(HEAD);
    text.push_str(&"# padding padding padding padding padding padding\n".repeat(100_000));
    std::fs::write(huge.join("appspec.yml"), &text).unwrap();
    let err = load(&huge, "appspec.yml", AppSpecLookup::Exact).unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains(&format!("is {} bytes", text.len())) && message.contains("refused"),
        "{message}"
    );

    let binary = dir.path().join("binary");
    std::fs::create_dir(&binary).unwrap();
    std::fs::write(
        binary.join("appspec.yml"),
        b"version: 0.0\nos: linux\n\xff\xfe\n",
    )
    .unwrap();
    let message = load(&binary, "appspec.yml", AppSpecLookup::Exact)
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("not UTF-8") && message.contains("offset 23"),
        "{message}"
    );
}

/// A control character in an appspec path would reach the cleanup file (a
/// newline in a destination makes two records) and the terminal.
#[test]
fn paths_with_control_characters_are_refused_escaped() {
    let cases = [
        (
            "files:\n  - source: \"app\\n/etc\"\n    destination: /srv/app\n",
            "'app\\n/etc' holds the control character \\n at byte 3",
        ),
        (
            "files:\n  - source: app\n    destination: \"/srv/app\\n/etc/shadow\"\n",
            "'/srv/app\\n/etc/shadow' holds the control character \\n at byte 8",
        ),
        (
            "permissions:\n  - object: \"/srv/\\e[2Japp\"\n    mode: 644\n",
            "'/srv/\\u{1b}[2Japp' holds the control character \\u{1b} at byte 5",
        ),
        (
            "hooks:\n  AfterInstall:\n    - location: \"run\\0.sh\"\n",
            "'run\\0.sh' holds the control character \\0 at byte 3",
        ),
    ];
    for (body, fragment) in cases {
        let text = format!("{HEAD}{body}");
        let message = parse(&text, Path::new("/r/appspec.yml"))
            .unwrap_err()
            .to_string();
        assert!(
            message.contains(fragment),
            "expected «{fragment}» in {message}"
        );
        assert!(!message.chars().any(char::is_control), "{message:?}");
    }
}

#[test]
fn a_leading_byte_order_mark_is_named_not_mistaken_for_a_key() {
    let spec = parse_ok("\u{feff}os: linux\nversion: 0.0\n");
    assert_eq!(spec.os, Os::Linux);
    assert_eq!(
        spec.warnings,
        ["the file starts with a byte-order mark (U+FEFF), which is ignored; save it as UTF-8 without one"]
    );
    // Inside a key it is part of the key, and the warning shows it.
    let spec = parse_ok("version: 0.0\nos: linux\n\"\u{feff}files\": []\n");
    assert_eq!(
        spec.warnings,
        ["unknown top-level key '\\u{feff}files' is ignored (known keys: version, os, file_exists_behavior, files, permissions, hooks)"]
    );
}
