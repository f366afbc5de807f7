//! Which old deployment folders of a group to delete (pure): keep at most
//! `max_revisions` counting the current one, never the current one nor the last
//! successful one, oldest first by modification time.

use std::time::SystemTime;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeploymentFolder {
    pub name: String,
    pub modified: SystemTime,
}

pub fn folders_to_delete(
    folders: &[DeploymentFolder],
    current: &str,
    last_successful: Option<&str>,
    max_revisions: u32,
) -> Vec<String> {
    let mut others: Vec<&DeploymentFolder> = folders.iter().filter(|f| f.name != current).collect();
    others.sort_by(|a, b| {
        a.modified
            .cmp(&b.modified)
            .then_with(|| a.name.cmp(&b.name))
    });
    // The current deployment counts towards the limit.
    let keep = (max_revisions as usize).saturating_sub(1);
    let excess = others.len().saturating_sub(keep);
    others
        .into_iter()
        .filter(|f| Some(f.name.as_str()) != last_successful)
        .take(excess)
        .map(|f| f.name.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn folder(name: &str, age: u64) -> DeploymentFolder {
        DeploymentFolder {
            name: name.into(),
            modified: SystemTime::UNIX_EPOCH + Duration::from_secs(1000 - age),
        }
    }

    #[test]
    fn keeps_the_newest_up_to_the_limit() {
        let folders = [
            folder("d-1", 40),
            folder("d-2", 30),
            folder("d-3", 20),
            folder("d-4", 10),
            folder("d-5", 0),
        ];
        assert_eq!(
            folders_to_delete(&folders, "d-5", None, 2),
            vec!["d-1", "d-2", "d-3"]
        );
        assert_eq!(
            folders_to_delete(&folders, "d-5", None, 5),
            Vec::<String>::new()
        );
        assert_eq!(
            folders_to_delete(&folders, "d-5", None, 1),
            vec!["d-1", "d-2", "d-3", "d-4"]
        );
    }

    #[test]
    fn never_deletes_the_current_or_last_successful() {
        let folders = [
            folder("d-1", 40),
            folder("d-2", 30),
            folder("d-3", 20),
            folder("cur", 50),
        ];
        assert_eq!(
            folders_to_delete(&folders, "cur", Some("d-1"), 2),
            vec!["d-2", "d-3"]
        );
        assert_eq!(
            folders_to_delete(&folders, "cur", Some("d-3"), 3),
            vec!["d-1"]
        );
    }
}
