use super::*;

#[test]
fn modes_are_the_digits_as_written() {
    let cases: &[(&str, Result<u32, ()>)] = &[
        ("644", Ok(0o644)),
        ("0644", Ok(0o644)),
        ("755", Ok(0o755)),
        ("4755", Ok(0o4755)),
        ("7", Ok(0o007)),
        ("44", Ok(0o044)),
        ("0", Ok(0)),
        ("", Err(())),
        ("12345", Err(())),
        ("648", Err(())),
        ("rwx", Err(())),
        ("-644", Err(())),
    ];
    for (digits, expected) in cases {
        assert_eq!(
            Mode::parse(digits).map(Mode::bits).map_err(|_| ()),
            *expected,
            "{digits}"
        );
    }
    assert_eq!(Mode::parse("44").unwrap().to_string(), "044");
    assert_eq!(Mode::parse("2775").unwrap().to_string(), "2775");
}

#[test]
fn acl_entries_parse_in_every_accepted_form() {
    let cases: &[(&str, &str)] = &[
        ("u:alice:rw", "user:alice:rw-"),
        ("user:alice:7", "user:alice:rwx"),
        ("alice:r", "user:alice:r--"),
        ("g:ops:r-x", "group:ops:r-x"),
        ("group:ops:5", "group:ops:r-x"),
        ("m:rw", "mask::rw-"),
        ("m::rw", "mask::rw-"),
        ("mask::0", "mask::---"),
        ("d:u:alice:rw", "default:user:alice:rw-"),
        ("default:g:ops:rx", "default:group:ops:r-x"),
        ("d:alice:rw", "default:user:alice:rw-"),
        ("d:u::rwx", "default:user::rwx"),
        ("d:g::r", "default:group::r--"),
        ("d:o::r", "default:other::r--"),
        ("d:o:r", "default:other::r--"),
        ("d:m::rw", "default:mask::rw-"),
        ("u:alice:xrw", "user:alice:rwx"),
        ("u:alice:", "user:alice:---"),
    ];
    for (written, rendered) in cases {
        let entry = AclEntry::parse(written).unwrap_or_else(|e| panic!("{written}: {e}"));
        assert_eq!(entry.to_string(), *rendered, "{written}");
    }
}

#[test]
fn invalid_acl_entries_are_refused() {
    let cases: &[(&str, &str)] = &[
        ("rw", "expected"),
        ("a:b:c:d:e", "expected"),
        ("x:u:alice:rw", "must start with d:"),
        ("d:d:alice:rw", "not an acl type"),
        ("z:alice:rw", "not an acl type"),
        ("u::rw", "use mode"),
        ("g::r", "use mode"),
        ("o::r", "use mode"),
        ("o:r", "use mode"),
        ("m:bob:rw", "takes no name"),
        ("o:bob:r", "takes no name"),
        ("u:alice:rq", "'q' is not a permission"),
        ("u:alice:8", "'8' is not a permission"),
    ];
    for (written, fragment) in cases {
        let err = AclEntry::parse(written).expect_err(written);
        let fragment = fragment.replace("use mode", "set with mode");
        assert!(err.contains(&fragment), "{written}: {err}");
    }
}

#[test]
fn selinux_ranges_parse_and_render_canonically() {
    let cases: &[(&str, &str)] = &[
        ("s0", "s0"),
        ("s0-s1", "s0-s1"),
        ("s0-s0", "s0"),
        ("s0:c0", "s0:c0"),
        ("s0:c0,c3.c5", "s0:c0,c3.c5"),
        ("s0:c3,c1,c2", "s0:c1.c3"),
        ("s2-s15:c0.c1023", "s2-s15:c0.c1023"),
        ("s99999", "s99999"),
    ];
    for (written, rendered) in cases {
        let range = SeLinuxRange::parse(written).unwrap_or_else(|e| panic!("{written}: {e}"));
        assert_eq!(range.to_string(), *rendered, "{written}");
    }
}

#[test]
fn invalid_selinux_ranges_are_refused() {
    for written in [
        "",
        "0",
        "s",
        "sx",
        "s1-s0",
        "s0-",
        "-s1",
        "s0:",
        "s0:c1024",
        "s0:c5.c3",
        "s0:c1,c1",
        "s0:c0.c2,c1",
        "s0:d1",
        "s0:c",
        "s0:c1.",
        "s0::c1",
    ] {
        assert!(SeLinuxRange::parse(written).is_err(), "{written}");
    }
}

#[test]
fn globs_match_one_name_with_stars() {
    let cases: &[(&str, &str, bool)] = &[
        ("*.sh", "run.sh", true),
        ("*.sh", "run.py", false),
        ("*.sh", ".sh", true),
        ("run*", "runner", true),
        ("*", "anything", true),
        ("a*b*c", "aXbYc", true),
        ("a*b*c", "aXbY", false),
        ("a*a", "aaa", true),
        ("exact", "exact", true),
        ("exact", "exactly", false),
        ("*.sh", "dir/run.sh", false),
        ("**", "x", true),
        ("*x", "", false),
        ("*", "", true),
    ];
    for (pattern, name, expected) in cases {
        assert_eq!(
            Glob::new(*pattern).matches_name(name),
            *expected,
            "{pattern} vs {name}"
        );
    }
}

#[test]
fn glob_matching_stays_fast_on_hostile_patterns() {
    let pattern = Glob::new(format!("{}b", "*a".repeat(50)));
    let name = "a".repeat(5000);
    assert!(!pattern.matches_name(&name));
}

fn permission(object: &str, pattern: &str, except: &[&str]) -> Permission {
    Permission {
        object: PathBuf::from(object),
        pattern: Glob::new(pattern),
        except: except.iter().map(|e| Glob::new(*e)).collect(),
        kinds: ObjectKinds::BOTH,
        owner: None,
        group: None,
        mode: None,
        acls: Vec::new(),
        context: None,
    }
}

#[test]
fn directory_permissions_reach_below_their_object() {
    let cases: &[(&str, &[&str], &str, bool)] = &[
        ("**", &[], "/app/a", true),
        ("**", &[], "/app/a/b/c", true),
        ("**", &[], "/app", false),
        ("**", &[], "/application/x", false),
        ("**", &[], "/other/a", false),
        ("*.sh", &[], "/app/run.sh", true),
        ("*.sh", &[], "/app/bin/run.sh", false),
        ("*.sh", &["secret*"], "/app/secret.sh", false),
        ("**", &["secret*"], "/app/secret.sh", false),
        ("**", &["secret*"], "/app/sub/secret.sh", true),
    ];
    for (pattern, except, path, expected) in cases {
        let p = permission("/app", pattern, except);
        assert_eq!(
            p.reaches_below(Path::new(path)),
            *expected,
            "{pattern} {except:?} {path}"
        );
    }
}

#[test]
fn object_kinds_accept_file_and_directory_only() {
    assert_eq!(
        ObjectKinds::from_names(["file"]).unwrap(),
        ObjectKinds {
            files: true,
            directories: false
        }
    );
    assert_eq!(
        ObjectKinds::from_names(["directory", "file"]).unwrap(),
        ObjectKinds::BOTH
    );
    assert!(ObjectKinds::from_names(["link"])
        .unwrap_err()
        .contains("'link'"));
}
