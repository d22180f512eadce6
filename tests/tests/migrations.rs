//! The embedded migrations of each service. Diesel records a migration by the version in
//! front of its folder name, so two folders with one version would let the second one be
//! taken as already applied and never run.

use std::collections::BTreeMap;
use std::path::Path;

#[test]
fn migration_versions_are_unique_per_service() {
    let services = Path::new(env!("CARGO_MANIFEST_DIR")).join("../services");
    for service in ["ticket", "audit", "metrics"] {
        let folder = services.join(service).join("migrations");
        let mut seen: BTreeMap<String, String> = BTreeMap::new();
        let entries = std::fs::read_dir(&folder).unwrap_or_else(|error| panic!("read {}: {error}", folder.display()));
        for entry in entries {
            let name = entry.expect("a directory entry").file_name().to_string_lossy().into_owned();
            let version = name.split('_').next().unwrap_or_default().to_owned();
            assert_eq!(version.len(), 14, "{service}: {name} starts with a 14-digit version");
            if let Some(first) = seen.insert(version.clone(), name.clone()) {
                panic!("{service}: {first} and {name} share the version {version}");
            }
        }
        assert!(!seen.is_empty(), "{service} has migrations");
    }
}
