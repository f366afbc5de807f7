use super::*;

#[test]
fn a_missing_tool_is_named_with_what_to_install() {
    let err = run_tool(Path::new("/srv/app/x"), "setfacl-not-on-this-host", &[]).unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("setfacl-not-on-this-host is not installed on this host"),
        "{message}"
    );
    assert!(missing_tool_hint("setfacl").contains("acl package"));
    assert!(missing_tool_hint("semanage").contains("policycoreutils"));
}

#[test]
fn copies_are_taken_in_turns_of_one_folder_first_turns_first() {
    let paths = |names: &[&str]| -> Vec<PathBuf> { names.iter().map(PathBuf::from).collect() };
    let big: Vec<String> = (0..COPIES_PER_TURN + 10)
        .map(|i| format!("/b/{i}"))
        .collect();
    let big: Vec<&str> = big.iter().map(String::as_str).collect();
    let mut mixed = vec!["/a/1", "/a/2"];
    mixed.extend(&big);
    mixed.extend(["/c/1", "/a/3"]);
    let cases: Vec<(Vec<PathBuf>, Vec<Range<usize>>)> = vec![
        (paths(&[]), vec![]),
        (paths(&["/a/1"]), vec![Range { start: 0, end: 1 }]),
        (
            paths(&["/a/1", "/a/2", "/b/1", "/a/3"]),
            vec![0..2, 2..3, 3..4],
        ),
        (paths(&["/a/1", "/a/x/1", "/a/2"]), vec![0..1, 1..2, 2..3]),
        // A folder larger than a turn is shared; its second turn comes
        // after every folder's first.
        (
            paths(&mixed),
            vec![
                0..2,
                2..2 + COPIES_PER_TURN,
                12 + COPIES_PER_TURN..13 + COPIES_PER_TURN,
                13 + COPIES_PER_TURN..14 + COPIES_PER_TURN,
                2 + COPIES_PER_TURN..12 + COPIES_PER_TURN,
            ],
        ),
    ];
    for (destinations, expected) in cases {
        let refs: Vec<&Path> = destinations.iter().map(PathBuf::as_path).collect();
        assert_eq!(turns(&refs), expected, "{destinations:?}");
    }
}

fn acl(entries: &[&str], mode: u32) -> Vec<String> {
    let entries: Vec<AclEntry> = entries
        .iter()
        .map(|e| AclEntry::parse(e).unwrap())
        .collect();
    full_acl(&entries, mode)
}

#[test]
fn base_entries_come_from_the_current_mode() {
    let cases: &[(&[&str], u32, &[&str])] = &[
        (
            &["u:bob:rw"],
            0o640,
            &[
                "user:bob:rw-",
                "user::rw-",
                "group::r--",
                "other::---",
                "mask::r--",
            ],
        ),
        (
            &["m::rwx", "g:ops:r"],
            0o750,
            &[
                "mask::rwx",
                "group:ops:r--",
                "user::rwx",
                "group::r-x",
                "other::---",
            ],
        ),
        (
            &["d:u:bob:rx"],
            0o755,
            &[
                "default:user:bob:r-x",
                "user::rwx",
                "group::r-x",
                "other::r-x",
                "default:user::rwx",
                "default:group::r-x",
                "default:other::r-x",
                "default:mask::r-x",
            ],
        ),
        (
            &["d:g::r", "d:u::rwx", "d:o::0", "d:m::rw"],
            0o700,
            &[
                "default:group::r--",
                "default:user::rwx",
                "default:other::---",
                "default:mask::rw-",
                "user::rwx",
                "group::---",
                "other::---",
            ],
        ),
    ];
    for (entries, mode, expected) in cases {
        assert_eq!(acl(entries, *mode), *expected, "{entries:?} {mode:o}");
    }
}
