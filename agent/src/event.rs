//! Lifecycle events: the names the service sends as commands and the keys of an
//! appspec's `hooks` section. Past the parsers, events are this enum, never strings.

use std::fmt;

/// A lifecycle event the agent knows, or a custom event (local CLI only).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LifecycleEvent {
    ApplicationStop,
    DownloadBundle,
    BeforeInstall,
    Install,
    AfterInstall,
    ApplicationStart,
    ValidateService,
    BeforeBlockTraffic,
    BlockTraffic,
    AfterBlockTraffic,
    BeforeAllowTraffic,
    AllowTraffic,
    AfterAllowTraffic,
    /// An event outside the standard set; only meaningful when the deployment lists
    /// it in `AllPossibleLifecycleEvents`.
    Custom(String),
}

impl LifecycleEvent {
    /// Every standard event, in the local CLI's default order.
    pub const STANDARD: [LifecycleEvent; 13] = [
        LifecycleEvent::BeforeBlockTraffic,
        LifecycleEvent::BlockTraffic,
        LifecycleEvent::AfterBlockTraffic,
        LifecycleEvent::ApplicationStop,
        LifecycleEvent::DownloadBundle,
        LifecycleEvent::BeforeInstall,
        LifecycleEvent::Install,
        LifecycleEvent::AfterInstall,
        LifecycleEvent::ApplicationStart,
        LifecycleEvent::ValidateService,
        LifecycleEvent::BeforeAllowTraffic,
        LifecycleEvent::AllowTraffic,
        LifecycleEvent::AfterAllowTraffic,
    ];

    /// Parses an event name exactly as the service and appspec spell it
    /// (PascalCase). Unknown names become [`LifecycleEvent::Custom`].
    pub fn from_name(name: &str) -> LifecycleEvent {
        Self::STANDARD
            .iter()
            .find(|e| e.name() == name)
            .cloned()
            .unwrap_or_else(|| LifecycleEvent::Custom(name.to_string()))
    }

    pub fn name(&self) -> &str {
        match self {
            LifecycleEvent::ApplicationStop => "ApplicationStop",
            LifecycleEvent::DownloadBundle => "DownloadBundle",
            LifecycleEvent::BeforeInstall => "BeforeInstall",
            LifecycleEvent::Install => "Install",
            LifecycleEvent::AfterInstall => "AfterInstall",
            LifecycleEvent::ApplicationStart => "ApplicationStart",
            LifecycleEvent::ValidateService => "ValidateService",
            LifecycleEvent::BeforeBlockTraffic => "BeforeBlockTraffic",
            LifecycleEvent::BlockTraffic => "BlockTraffic",
            LifecycleEvent::AfterBlockTraffic => "AfterBlockTraffic",
            LifecycleEvent::BeforeAllowTraffic => "BeforeAllowTraffic",
            LifecycleEvent::AllowTraffic => "AllowTraffic",
            LifecycleEvent::AfterAllowTraffic => "AfterAllowTraffic",
            LifecycleEvent::Custom(name) => name,
        }
    }

    /// Events whose work is done by the agent itself rather than by hook scripts.
    pub fn is_agent_action(&self) -> bool {
        matches!(
            self,
            LifecycleEvent::DownloadBundle | LifecycleEvent::Install
        )
    }

    /// Events the service performs itself (load balancer) and never sends.
    pub fn is_reserved(&self) -> bool {
        matches!(
            self,
            LifecycleEvent::BlockTraffic | LifecycleEvent::AllowTraffic
        )
    }
}

impl fmt::Display for LifecycleEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_are_custom() {
        for event in LifecycleEvent::STANDARD.iter() {
            assert_eq!(&LifecycleEvent::from_name(event.name()), event);
        }
        assert_eq!(
            LifecycleEvent::from_name("applicationStop"),
            LifecycleEvent::Custom("applicationStop".into())
        );
    }
}
