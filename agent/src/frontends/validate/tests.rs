//! Tests of the validate front-end: parser messages without positions, and the order and summary of a report.

use super::*;

#[test]
fn positions_are_not_repeated_in_messages() {
    let cases = [
        ("bad value at line 24 column 16", "bad value"),
        (
            "bad at line 3 value at line 2 column 1",
            "bad at line 3 value",
        ),
        (
            "did not find expected key at line 6 column 4, while parsing a block mapping",
            "did not find expected key, while parsing a block mapping",
        ),
        ("no position here", "no position here"),
        ("ends at line x column 2", "ends at line x column 2"),
    ];
    for (message, expected) in cases {
        assert_eq!(without_position(message), expected);
    }
}

#[test]
fn reports_list_errors_first_then_by_line() {
    let report = Report {
        file: "b/appspec.yml".into(),
        findings: vec![
            Finding::warning(Some(2), "w"),
            Finding::error(Some(9), "late"),
            Finding::error(None, "nowhere"),
            Finding::error(Some(3), "early"),
        ],
    };
    assert_eq!(
        report.lines(),
        [
            "b/appspec.yml:3: error: early",
            "b/appspec.yml:9: error: late",
            "b/appspec.yml: error: nowhere",
            "b/appspec.yml:2: warning: w",
        ]
    );
    assert_eq!(report.summary(), "b/appspec.yml: 3 problems, 1 warning");
    let clean = Report {
        file: "x".into(),
        findings: vec![],
    };
    assert_eq!(clean.summary(), "x: valid (0 warnings)");
}
