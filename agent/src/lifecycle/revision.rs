//! Which revision's scripts a hook runs from (pure): the current deployment's, the
//! last successfully installed one, or the most recently downloaded one.

use crate::event::LifecycleEvent;

/// A revision named by the deployment-instructions files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PreviousRevision {
    LastSuccessful,
    MostRecent,
}

/// Where an event's scripts come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevisionChoice {
    Current,
    /// A previous revision, used only while the current deployment has no
    /// `deployment-archive` yet.
    Previous(PreviousRevision),
}

pub fn revision_for(event: &LifecycleEvent, blue_green_rollback: bool) -> RevisionChoice {
    use LifecycleEvent::*;
    use PreviousRevision::*;
    match (event, blue_green_rollback) {
        (ApplicationStop, _) => RevisionChoice::Previous(LastSuccessful),
        (BeforeBlockTraffic | AfterBlockTraffic, false) => RevisionChoice::Previous(LastSuccessful),
        (BeforeBlockTraffic | AfterBlockTraffic, true) => RevisionChoice::Previous(MostRecent),
        (BeforeAllowTraffic | AfterAllowTraffic, true) => RevisionChoice::Previous(LastSuccessful),
        _ => RevisionChoice::Current,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use LifecycleEvent::*;

    #[test]
    fn revision_table_of_the_spec() {
        use PreviousRevision::*;
        use RevisionChoice::*;
        let cases = [
            (ApplicationStop, false, Previous(LastSuccessful)),
            (BeforeBlockTraffic, false, Previous(LastSuccessful)),
            (AfterBlockTraffic, false, Previous(LastSuccessful)),
            (BeforeInstall, false, Current),
            (AfterInstall, false, Current),
            (ApplicationStart, false, Current),
            (ValidateService, false, Current),
            (BeforeAllowTraffic, false, Current),
            (AfterAllowTraffic, false, Current),
            (ApplicationStop, true, Previous(LastSuccessful)),
            (BeforeBlockTraffic, true, Previous(MostRecent)),
            (AfterBlockTraffic, true, Previous(MostRecent)),
            (BeforeInstall, true, Current),
            (ValidateService, true, Current),
            (BeforeAllowTraffic, true, Previous(LastSuccessful)),
            (AfterAllowTraffic, true, Previous(LastSuccessful)),
        ];
        for (event, rollback, expected) in cases {
            assert_eq!(
                revision_for(&event, rollback),
                expected,
                "{event} rollback={rollback}"
            );
        }
    }
}
