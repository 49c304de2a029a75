//! Kubernetes manifests (the YAML `kubectl` reads and prints) to validated
//! objects.
//!
//! Accepted layouts: multi-document YAML, kubectl's `kind: List` (`apiVersion:
//! v1`), and the API server's typed lists (`kind: EndpointSliceList`), whose
//! items carry no `apiVersion`/`kind` of their own. Services (`v1`) and
//! EndpointSlices (`discovery.k8s.io/v1`) are kept; every other kind is
//! counted and ignored, so a whole application manifest can be pointed at.
use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use anyhow::{Result, anyhow, bail};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Deserialize as _;
use serde_yaml::Value;

use crate::k8s::{Objects, SERVICE_NAME_LABEL, is_dns1035_label, is_dns1123_label};

/// Objects that were ignored, counted by `apiVersion/kind`.
pub type SkippedKinds = BTreeMap<String, usize>;

/// Parses one manifest text. `origin` (usually the file name) starts every
/// error message. Either every object in `text` is valid and returned, or
/// the result is an error describing the first bad one.
pub fn parse_manifests(origin: &str, text: &str) -> Result<Objects> {
    let (objects, skipped) = parse_manifests_counted(origin, text)?;
    for (kind, n) in &skipped {
        log::debug!("{origin}: ignored {n} {kind} object(s)");
    }
    Ok(objects)
}

/// [`parse_manifests`], also reporting what it ignored.
pub fn parse_manifests_counted(origin: &str, text: &str) -> Result<(Objects, SkippedKinds)> {
    let mut loader = Loader::default();
    loader.add(origin, text)?;
    Ok(loader.finish())
}

/// Accumulates objects over several files, so duplicates across files are
/// caught like duplicates within one.
#[derive(Default)]
pub(crate) struct Loader {
    objects: Objects,
    skipped: SkippedKinds,
    /// `(kind, namespace, name)` -> where it was first seen.
    seen: BTreeMap<(&'static str, String, String), String>,
}

/// Where an object sits, for error messages: `seed.yaml: document 4 items[1]`.
#[derive(Clone, Copy)]
struct Place<'a> {
    origin: &'a str,
    /// 1-based, as editors count documents.
    document: usize,
    /// 0-based, as the `items[]` path reads.
    item: Option<usize>,
}

impl fmt::Display for Place<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: document {}", self.origin, self.document)?;
        if let Some(i) = self.item {
            write!(f, " items[{i}]")?;
        }
        Ok(())
    }
}

impl Loader {
    pub(crate) fn add(&mut self, origin: &str, text: &str) -> Result<()> {
        for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
            let place = Place {
                origin,
                document: i + 1,
                item: None,
            };
            let value = Value::deserialize(doc).map_err(|e| anyhow!("{place}: {e}"))?;
            self.document(place, value)?;
        }
        Ok(())
    }

    pub(crate) fn finish(self) -> (Objects, SkippedKinds) {
        (self.objects, self.skipped)
    }

    fn document(&mut self, place: Place<'_>, value: Value) -> Result<()> {
        // An empty document (a lone `---`, a file of comments) is no object.
        if value.is_null() {
            return Ok(());
        }
        let (api_version, kind) = type_meta(&value).map_err(|e| anyhow!("{place}: {e}"))?;
        let is_list = kind == "List" || (kind.ends_with("List") && value.get("items").is_some());
        if !is_list {
            return self.object(place, &api_version, &kind, value);
        }
        let items = match value.get("items") {
            None | Some(Value::Null) => return Ok(()),
            Some(Value::Sequence(items)) => items.clone(),
            Some(_) => bail!("{place}: {kind}: items is not a sequence"),
        };
        // A typed list (`EndpointSliceList`) states the item type once.
        let item_type = (kind != "List").then(|| {
            (
                api_version.clone(),
                kind.trim_end_matches("List").to_owned(),
            )
        });
        for (i, mut item) in items.into_iter().enumerate() {
            let place = Place {
                item: Some(i),
                ..place
            };
            if let (Some((api, kind)), Value::Mapping(map)) = (&item_type, &mut item) {
                map.entry("apiVersion".into())
                    .or_insert_with(|| api.as_str().into());
                map.entry("kind".into())
                    .or_insert_with(|| kind.as_str().into());
            }
            let (api_version, kind) = type_meta(&item).map_err(|e| anyhow!("{place}: {e}"))?;
            if kind.ends_with("List") && item.get("items").is_some() {
                bail!("{place}: a {kind} inside a list is not supported");
            }
            self.object(place, &api_version, &kind, item)?;
        }
        Ok(())
    }

    fn object(
        &mut self,
        place: Place<'_>,
        api_version: &str,
        kind: &str,
        value: Value,
    ) -> Result<()> {
        let what = describe(kind, &value);
        match (api_version, kind) {
            ("v1", "Service") => {
                let svc: Service =
                    serde_yaml::from_value(value).map_err(|e| anyhow!("{place} ({what}): {e}"))?;
                let (ns, name) =
                    validate_service(&svc).map_err(|e| anyhow!("{place} ({what}): {e}"))?;
                self.remember("Service", ns, name, place, &what)?;
                self.objects.services.push(svc);
            }
            ("v1", "Namespace") => {
                let name = value
                    .get("metadata")
                    .and_then(|m| m.get("name"))
                    .and_then(Value::as_str)
                    .filter(|n| is_dns1123_label(n))
                    .ok_or_else(|| anyhow!("{place} ({what}): no valid metadata.name"))?
                    .to_owned();
                self.remember("Namespace", "", &name, place, &what)?;
                self.objects
                    .namespaces
                    .get_or_insert_with(Vec::new)
                    .push(name);
            }
            ("discovery.k8s.io/v1", "EndpointSlice") => {
                let slice: EndpointSlice =
                    serde_yaml::from_value(value).map_err(|e| anyhow!("{place} ({what}): {e}"))?;
                let (ns, name) =
                    validate_slice(&slice).map_err(|e| anyhow!("{place} ({what}): {e}"))?;
                if !slice
                    .metadata
                    .labels
                    .as_ref()
                    .is_some_and(|l| l.contains_key(SERVICE_NAME_LABEL))
                {
                    log::warn!(
                        "{place} ({what}): no {SERVICE_NAME_LABEL} label, so no Service uses it"
                    );
                }
                self.remember("EndpointSlice", ns, name, place, &what)?;
                self.objects.slices.push(slice);
            }
            // Same object, older schema (removed in Kubernetes 1.25): ignoring
            // it would silently drop records the author expects.
            (api, "EndpointSlice") if api.starts_with("discovery.k8s.io/") => {
                bail!(
                    "{place} ({what}): apiVersion {api} is not supported, use discovery.k8s.io/v1"
                )
            }
            _ => {
                *self
                    .skipped
                    .entry(format!("{api_version}/{kind}"))
                    .or_default() += 1
            }
        }
        Ok(())
    }

    fn remember(
        &mut self,
        kind: &'static str,
        ns: &str,
        name: &str,
        place: Place<'_>,
        what: &str,
    ) -> Result<()> {
        let key = (kind, ns.to_owned(), name.to_owned());
        if let Some(first) = self.seen.get(&key) {
            bail!("{place} ({what}): duplicate of the object in {first}");
        }
        self.seen.insert(key, place.to_string());
        Ok(())
    }
}

/// `apiVersion` and `kind` of a document that must be a Kubernetes object.
fn type_meta(value: &Value) -> Result<(String, String), String> {
    let Value::Mapping(_) = value else {
        return Err(format!(
            "expected a Kubernetes object (a mapping with apiVersion and kind), found {}",
            value_type(value)
        ));
    };
    let field = |key: &str| match value.get(key) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        Some(Value::String(_)) | None | Some(Value::Null) => Err(format!("{key} is missing")),
        Some(other) => Err(format!("{key} is {}, not a string", value_type(other))),
    };
    Ok((field("apiVersion")?, field("kind")?))
}

fn value_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a sequence",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

/// `Kind ns/name` from the raw document, so even objects that fail to
/// deserialize are named in the error.
fn describe(kind: &str, value: &Value) -> String {
    let meta = value.get("metadata");
    let get = |key: &str| meta.and_then(|m| m.get(key)).and_then(Value::as_str);
    match (get("namespace"), get("name")) {
        (Some(ns), Some(name)) => format!("{kind} {ns}/{name}"),
        (None, Some(name)) => format!("{kind} {name}"),
        (Some(ns), None) => format!("{kind} {ns}/?"),
        (None, None) => kind.to_owned(),
    }
}

fn namespace_and_name<'a>(
    meta: &'a ObjectMeta,
    name_ok: fn(&str) -> bool,
    rule: &str,
) -> Result<(&'a str, &'a str), String> {
    let name = meta.name.as_deref().ok_or("metadata.name is missing")?;
    if !name_ok(name) {
        return Err(format!("metadata.name: {name:?} is not a valid {rule}"));
    }
    let ns = meta
        .namespace
        .as_deref()
        .ok_or("metadata.namespace is missing (hsdns assumes no default namespace)")?;
    if !is_dns1123_label(ns) {
        return Err(format!(
            "metadata.namespace: {ns:?} is not a valid DNS-1123 label"
        ));
    }
    Ok((ns, name))
}

/// Checks what the record table relies on; returns `(namespace, name)`.
fn validate_service(svc: &Service) -> Result<(&str, &str), String> {
    let (ns, name) = namespace_and_name(&svc.metadata, is_dns1035_label, "DNS-1035 label")?;
    let spec = svc.spec.as_ref().ok_or("spec is missing")?;
    if spec.type_.as_deref() == Some("ExternalName") {
        return Ok((ns, name));
    }
    // "" asks the API server to allocate; the manifest then has no address.
    let cluster_ip = spec.cluster_ip.as_deref().unwrap_or("");
    if !matches!(cluster_ip, "" | "None") {
        parse_ip(cluster_ip).ok_or_else(|| {
            format!("spec.clusterIP: {cluster_ip:?} is not an IP address or \"None\"")
        })?;
    }
    let cluster_ips = spec.cluster_ips.as_deref().unwrap_or_default();
    if cluster_ips.len() > 2 {
        return Err(format!(
            "spec.clusterIPs: {} entries, at most 2 (one per family)",
            cluster_ips.len()
        ));
    }
    let mut families = Vec::new();
    for (i, ip) in cluster_ips.iter().enumerate() {
        if ip == "None" {
            if cluster_ips.len() != 1 {
                return Err(format!(
                    "spec.clusterIPs[{i}]: \"None\" must be the only entry"
                ));
            }
            continue;
        }
        let addr = parse_ip(ip).ok_or_else(|| {
            format!("spec.clusterIPs[{i}]: {ip:?} is not an IP address or \"None\"")
        })?;
        if families.contains(&addr.is_ipv4()) {
            return Err(format!(
                "spec.clusterIPs[{i}]: {ip:?} repeats an address family"
            ));
        }
        families.push(addr.is_ipv4());
    }
    if let Some(first) = cluster_ips.first()
        && !cluster_ip.is_empty()
        && first != cluster_ip
    {
        return Err(format!(
            "spec.clusterIPs[0]: {first:?} differs from spec.clusterIP {cluster_ip:?}"
        ));
    }
    Ok((ns, name))
}

fn parse_ip(s: &str) -> Option<IpAddr> {
    s.parse().ok()
}

/// Checks what the record table relies on; returns `(namespace, name)`.
fn validate_slice(slice: &EndpointSlice) -> Result<(&str, &str), String> {
    let (ns, name) = namespace_and_name(&slice.metadata, |n| !n.is_empty(), "name")?;
    let check: fn(&str) -> bool = match slice.address_type.as_str() {
        "IPv4" => |a| a.parse::<Ipv4Addr>().is_ok(),
        "IPv6" => |a| a.parse::<Ipv6Addr>().is_ok(),
        // Deprecated and never resolved by cluster DNS; kept unchecked.
        "FQDN" => |_| true,
        other => return Err(format!("addressType: {other:?} is not IPv4, IPv6 or FQDN")),
    };
    for (i, ep) in slice.endpoints.iter().enumerate() {
        if ep.addresses.is_empty() {
            return Err(format!(
                "endpoints[{i}].addresses: empty, at least one address is required"
            ));
        }
        for (j, addr) in ep.addresses.iter().enumerate() {
            if !check(addr) {
                return Err(format!(
                    "endpoints[{i}].addresses[{j}]: {addr:?} is not an {} address",
                    slice.address_type
                ));
            }
        }
        if let Some(host) = &ep.hostname
            && !is_dns1123_label(host)
        {
            return Err(format!(
                "endpoints[{i}].hostname: {host:?} is not a valid DNS-1123 label"
            ));
        }
    }
    Ok((ns, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SLICE_HEAD: &str = "apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-abc
  namespace: shop
  labels:
    kubernetes.io/service-name: web
";

    fn err(text: &str) -> String {
        parse_manifests("t.yaml", text).unwrap_err().to_string()
    }

    #[test]
    fn multi_document_keeps_services_and_slices_and_counts_the_rest() {
        let text = format!(
            "apiVersion: v1\nkind: Namespace\nmetadata: {{name: shop}}\n---\n\
             apiVersion: v1\nkind: Service\nmetadata: {{name: web, namespace: shop}}\nspec: {{clusterIP: None}}\n---\n\
             # only a comment\n---\n{SLICE_HEAD}addressType: IPv4\nendpoints:\n- addresses: [169.254.1.1]\n---\n\
             apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: web, namespace: shop}}\n"
        );
        let (objects, skipped) = parse_manifests_counted("t.yaml", &text).unwrap();
        assert_eq!(objects.services.len(), 1);
        assert_eq!(objects.slices.len(), 1);
        assert_eq!(objects.slices[0].endpoints[0].addresses, ["169.254.1.1"]);
        let expected: SkippedKinds = [("apps/v1/Deployment".to_owned(), 1)].into();
        assert_eq!(skipped, expected);
        // Namespaces are kept: they say which namespaces exist.
        assert_eq!(objects.namespaces.as_ref().map(Vec::len), Some(1));
    }

    #[test]
    fn kubectl_list_and_typed_list_are_both_read() {
        let kubectl = "apiVersion: v1\nkind: List\nitems:\n\
            - apiVersion: v1\n  kind: Service\n  metadata: {name: a, namespace: shop}\n  spec: {clusterIP: 169.254.0.1}\n\
            - apiVersion: v1\n  kind: ConfigMap\n  metadata: {name: c, namespace: shop}\n";
        let (objects, skipped) = parse_manifests_counted("t.yaml", kubectl).unwrap();
        assert_eq!(objects.services.len(), 1);
        assert_eq!(skipped.get("v1/ConfigMap"), Some(&1));

        let typed = "apiVersion: discovery.k8s.io/v1\nkind: EndpointSliceList\nmetadata: {}\nitems:\n\
            - metadata: {name: s1, namespace: shop}\n  addressType: IPv6\n  endpoints: [{addresses: ['fd00::1']}]\n";
        let objects = parse_manifests("t.yaml", typed).unwrap();
        assert_eq!(objects.slices.len(), 1);
        assert_eq!(objects.slices[0].address_type, "IPv6");
    }

    #[test]
    fn bad_address_error_names_file_document_object_and_field() {
        let text = format!(
            "apiVersion: v1\nkind: Namespace\nmetadata: {{name: shop}}\n---\n{SLICE_HEAD}addressType: IPv4\n\
             endpoints:\n- addresses: [169.254.1.1]\n- addresses: [10.1.2]\n"
        );
        assert_eq!(
            err(&text),
            "t.yaml: document 2 (EndpointSlice shop/web-abc): endpoints[1].addresses[0]: \"10.1.2\" is not an IPv4 address"
        );
    }

    #[test]
    fn address_must_match_the_slice_family() {
        let text =
            format!("{SLICE_HEAD}addressType: IPv6\nendpoints:\n- addresses: [169.254.1.1]\n");
        assert!(
            err(&text).contains("is not an IPv6 address"),
            "{}",
            err(&text)
        );
        let text = format!("{SLICE_HEAD}addressType: IPv5\nendpoints: []\n");
        assert!(err(&text).contains("addressType: \"IPv5\""));
        let text = format!("{SLICE_HEAD}addressType: IPv4\nendpoints:\n- addresses: []\n");
        assert!(err(&text).contains("endpoints[0].addresses: empty"));
        let text = format!(
            "{SLICE_HEAD}addressType: IPv4\nendpoints:\n- addresses: [169.254.1.1]\n  hostname: Web_1\n"
        );
        assert!(err(&text).contains("endpoints[0].hostname: \"Web_1\""));
    }

    #[test]
    fn list_items_are_located_by_index() {
        let text = "apiVersion: v1\nkind: List\nitems:\n\
            - apiVersion: v1\n  kind: Service\n  metadata: {name: a, namespace: shop}\n  spec: {clusterIP: None}\n\
            - apiVersion: v1\n  kind: Service\n  metadata: {name: b, namespace: shop}\n  spec: {clusterIP: 169.254.0.300}\n";
        assert_eq!(
            err(text),
            "t.yaml: document 1 items[1] (Service shop/b): spec.clusterIP: \"169.254.0.300\" is not an IP address or \"None\""
        );
    }

    #[test]
    fn service_rules() {
        let svc = |meta: &str, spec: &str| {
            format!("apiVersion: v1\nkind: Service\nmetadata: {meta}\nspec: {spec}\n")
        };
        let ok = |t: String| parse_manifests("t.yaml", &t).map(|o| o.services.len());
        assert_eq!(
            ok(svc(
                "{name: a, namespace: n}",
                "{type: ExternalName, externalName: x.example}"
            ))
            .unwrap(),
            1
        );
        assert_eq!(
            ok(svc(
                "{name: a, namespace: n}",
                "{clusterIPs: [169.254.0.1, 'fd00::1']}"
            ))
            .unwrap(),
            1
        );
        let e = |t: String| parse_manifests("t.yaml", &t).unwrap_err().to_string();
        assert!(e(svc("{name: a}", "{clusterIP: None}")).contains("metadata.namespace is missing"));
        assert!(e(svc("{namespace: n}", "{clusterIP: None}")).contains("metadata.name is missing"));
        assert!(e(svc("{name: 1a, namespace: n}", "{clusterIP: None}")).contains("DNS-1035"));
        assert!(
            e(svc("{name: a, namespace: N}", "{clusterIP: None}")).contains("metadata.namespace")
        );
        assert!(
            e(svc(
                "{name: a, namespace: n}",
                "{clusterIP: 169.254.0.1, clusterIPs: [169.254.0.2]}"
            ))
            .contains("differs")
        );
        assert!(
            e(svc(
                "{name: a, namespace: n}",
                "{clusterIPs: [169.254.0.1, 169.254.0.2]}"
            ))
            .contains("repeats")
        );
        assert!(
            e(svc(
                "{name: a, namespace: n}",
                "{clusterIPs: [None, 'fd00::1']}"
            ))
            .contains("only entry")
        );
        assert!(e(svc("{name: a, namespace: n}", "{clusterIP: 7}")).contains("Service n/a"));
    }

    #[test]
    fn garbage_is_an_error_not_skipped() {
        assert!(err("just a string\n").contains("document 1: expected a Kubernetes object"));
        assert!(err("apiVersion: v1\nmetadata: {}\n").contains("kind is missing"));
        assert!(err("kind: Service\n").contains("apiVersion is missing"));
        assert!(err("apiVersion: v1\nkind: List\nitems: 3\n").contains("not a sequence"));
        assert!(
            err("apiVersion: v1\nkind: List\nitems: [3]\n")
                .contains("document 1 items[0]: expected")
        );
        assert!(err("a: [b\n").starts_with("t.yaml: document 1: "));
        let old = format!(
            "{}addressType: IPv4\nendpoints: []\n",
            SLICE_HEAD.replace("/v1", "/v1beta1")
        );
        assert!(err(&old).contains("v1beta1 is not supported"));
    }

    #[test]
    fn nothing_is_half_loaded_and_duplicates_are_caught() {
        let good = "apiVersion: v1\nkind: Service\nmetadata: {name: a, namespace: n}\nspec: {clusterIP: None}\n";
        let text = format!(
            "{good}---\napiVersion: v1\nkind: Service\nmetadata: {{name: b}}\nspec: {{}}\n"
        );
        assert!(parse_manifests("t.yaml", &text).is_err());
        let twice = format!("{good}---\n{good}");
        assert_eq!(
            parse_manifests("t.yaml", &twice).unwrap_err().to_string(),
            "t.yaml: document 2 (Service n/a): duplicate of the object in t.yaml: document 1"
        );
    }

    #[test]
    fn empty_text_is_no_objects() {
        assert_eq!(parse_manifests("t.yaml", "").unwrap(), Objects::default());
        assert_eq!(
            parse_manifests("t.yaml", "---\n# nothing\n---\n").unwrap(),
            Objects::default()
        );
    }

    #[test]
    fn dns_label_rules() {
        for ok in ["a", "nginx-0", "0abc", &"a".repeat(63)] {
            assert!(is_dns1123_label(ok), "{ok}");
        }
        for bad in ["", "-a", "a-", "A", "a.b", "a_b", &"a".repeat(64)] {
            assert!(!is_dns1123_label(bad), "{bad}");
        }
        assert!(is_dns1035_label("web-1"));
        assert!(!is_dns1035_label("1web"));
    }
}
