//! Which revision's scripts a hook runs from (pure): the current deployment's, the
//! last successfully installed one, or the most recently downloaded one.

use crate::deployment_spec::Direction;
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

pub fn revision_for(event: &LifecycleEvent, direction: Direction) -> RevisionChoice {
    use Direction::*;
    use LifecycleEvent::*;
    use PreviousRevision::*;
    match (event, direction) {
        (ApplicationStop, _) => RevisionChoice::Previous(LastSuccessful),
        (BeforeBlockTraffic | AfterBlockTraffic, Forward) => {
            RevisionChoice::Previous(LastSuccessful)
        }
        (BeforeBlockTraffic | AfterBlockTraffic, BlueGreenRollback) => {
            RevisionChoice::Previous(MostRecent)
        }
        (BeforeAllowTraffic | AfterAllowTraffic, BlueGreenRollback) => {
            RevisionChoice::Previous(LastSuccessful)
        }
        _ => RevisionChoice::Current,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use LifecycleEvent::*;

    #[test]
    fn revision_table_of_the_spec() {
        use Direction::*;
        use PreviousRevision::*;
        use RevisionChoice::*;
        let cases = [
            (ApplicationStop, Forward, Previous(LastSuccessful)),
            (BeforeBlockTraffic, Forward, Previous(LastSuccessful)),
            (AfterBlockTraffic, Forward, Previous(LastSuccessful)),
            (BeforeInstall, Forward, Current),
            (AfterInstall, Forward, Current),
            (ApplicationStart, Forward, Current),
            (ValidateService, Forward, Current),
            (BeforeAllowTraffic, Forward, Current),
            (AfterAllowTraffic, Forward, Current),
            (ApplicationStop, BlueGreenRollback, Previous(LastSuccessful)),
            (BeforeBlockTraffic, BlueGreenRollback, Previous(MostRecent)),
            (AfterBlockTraffic, BlueGreenRollback, Previous(MostRecent)),
            (BeforeInstall, BlueGreenRollback, Current),
            (ValidateService, BlueGreenRollback, Current),
            (
                BeforeAllowTraffic,
                BlueGreenRollback,
                Previous(LastSuccessful),
            ),
            (
                AfterAllowTraffic,
                BlueGreenRollback,
                Previous(LastSuccessful),
            ),
        ];
        for (event, direction, expected) in cases {
            assert_eq!(
                revision_for(&event, direction),
                expected,
                "{event} {direction:?}"
            );
        }
    }
}
