//! Where the records come from: Kubernetes objects, read from manifest
//! files (or the embedded seed scenario) into an [`Objects`] that
//! `records::RecordTable::build` turns into the record table, or watched on
//! the API server ([`kube`], the live source), whose updates change the
//! table one service at a time. [`cluster_dns`] follows the cluster DNS
//! Service for the userspace server and the kernel.
pub mod cluster_dns;
pub mod kube;
mod manifest;

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};

use crate::k8s::Objects;
pub use manifest::{SkippedKinds, parse_manifests, parse_manifests_counted};

/// The embedded default record source (see `deploy/examples/seed.yaml`).
pub const SEED_YAML: &str = include_str!("../../../deploy/examples/seed.yaml");
const SEED_ORIGIN: &str = "deploy/examples/seed.yaml";

/// Loads manifests from files and directories. A directory contributes its
/// `*.yaml` and `*.yml` files (not recursively, like `kubectl apply -f dir`),
/// in name order so the result does not depend on the file system. Any
/// error fails the whole load: a half-loaded record set would answer
/// authoritatively with missing names.
pub fn load_paths(paths: &[PathBuf]) -> Result<Objects> {
    let mut files = Vec::new();
    for path in paths {
        let meta = fs::metadata(path).with_context(|| format!("{}", path.display()))?;
        if meta.is_dir() {
            let found = manifest_files(path)?;
            if found.is_empty() {
                bail!(
                    "{}: directory holds no *.yaml or *.yml file",
                    path.display()
                );
            }
            files.extend(found);
        } else {
            files.push(path.clone());
        }
    }
    let mut loader = manifest::Loader::default();
    for file in &files {
        let text = fs::read_to_string(file).with_context(|| format!("{}", file.display()))?;
        loader.add(&file.display().to_string(), &text)?;
    }
    let (objects, skipped) = loader.finish();
    log_skipped("manifests", &skipped);
    Ok(objects)
}

/// The seed scenario compiled into the binary.
pub fn embedded_seed() -> Objects {
    // The file is part of the source tree and a unit test loads it, so a
    // failure here is a build defect, not a runtime condition.
    parse_manifests(SEED_ORIGIN, SEED_YAML).expect("embedded seed.yaml is valid")
}

fn manifest_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).with_context(|| format!("{}", dir.display()))? {
        let entry = entry.with_context(|| format!("{}", dir.display()))?;
        let path = entry.path();
        let is_manifest = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| e == "yaml" || e == "yml");
        if is_manifest && entry.file_type()?.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

fn log_skipped(origin: &str, skipped: &SkippedKinds) {
    for (kind, n) in skipped {
        log::debug!("{origin}: ignored {n} {kind} object(s)");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("hsdns-source-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        fs::File::create(&path)
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        path
    }

    fn service(ns: &str, name: &str, ip: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: {ns}\n\
             spec:\n  clusterIP: {ip}\n  clusterIPs: [{ip}]\n"
        )
    }

    #[test]
    fn embedded_seed_holds_the_headless_service_and_both_slices() {
        let seed = embedded_seed();
        assert_eq!(seed.services.len(), 1);
        let svc = &seed.services[0];
        assert_eq!(svc.metadata.name.as_deref(), Some("nginx-headless"));
        assert_eq!(svc.metadata.namespace.as_deref(), Some("test"));
        let mut types: Vec<_> = seed
            .slices
            .iter()
            .map(|s| s.address_type.as_str())
            .collect();
        types.sort();
        assert_eq!(types, ["IPv4", "IPv6"]);
        for slice in &seed.slices {
            let hosts: Vec<_> = slice
                .endpoints
                .iter()
                .map(|e| e.hostname.as_deref().unwrap())
                .collect();
            assert_eq!(hosts, ["nginx-0", "nginx-1", "nginx-2"]);
        }
    }

    #[test]
    fn directory_files_load_in_name_order_and_skip_other_extensions() {
        let dir = temp_dir("order");
        write(&dir, "b.yml", &service("ns", "second", "169.254.0.2"));
        write(&dir, "a.yaml", &service("ns", "first", "169.254.0.1"));
        write(&dir, "c.txt", "not: [yaml");
        let objects = load_paths(std::slice::from_ref(&dir)).unwrap();
        let names: Vec<_> = objects
            .services
            .iter()
            .map(|s| s.metadata.name.clone().unwrap())
            .collect();
        assert_eq!(names, ["first", "second"]);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn one_bad_file_fails_the_whole_load_naming_it() {
        let dir = temp_dir("bad");
        let good = write(&dir, "good.yaml", &service("ns", "ok", "169.254.0.1"));
        let bad = write(&dir, "bad.yaml", &service("ns", "broken", "169.254.0"));
        let err = load_paths(&[good, bad.clone()]).unwrap_err().to_string();
        assert!(err.starts_with(&bad.display().to_string()), "{err}");
        assert!(err.contains("Service ns/broken"), "{err}");
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn the_same_object_in_two_files_is_an_error() {
        let dir = temp_dir("dup");
        let a = write(&dir, "a.yaml", &service("ns", "twice", "169.254.0.1"));
        let b = write(&dir, "b.yaml", &service("ns", "twice", "169.254.0.2"));
        let err = load_paths(&[a, b]).unwrap_err().to_string();
        assert!(
            err.contains("Service ns/twice") && err.contains("a.yaml"),
            "{err}"
        );
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn missing_paths_and_empty_directories_are_errors() {
        let dir = temp_dir("empty");
        assert!(load_paths(std::slice::from_ref(&dir)).is_err());
        assert!(load_paths(&[dir.join("absent.yaml")]).is_err());
        fs::remove_dir_all(dir).unwrap();
    }
}
