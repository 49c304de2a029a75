//! Manifests and resolv.conf: arbitrary text in, objects or an error that
//! names the file out.

use super::*;

/// A manifest to parse: random bytes, the seed with its bytes or lines
/// mangled, or objects with fields of any type and value.
fn manifest_input(rng: &mut impl Rng) -> String {
    match rng.random_range(0..10) {
        0 => {
            let b: Vec<u8> = (0..rng.random_range(0..2000))
                .map(|_| rng.random())
                .collect();
            String::from_utf8_lossy(&b).into_owned()
        }
        1..3 => {
            let mut b = source::SEED_YAML.as_bytes().to_vec();
            for _ in 0..rng.random_range(1..8) {
                let at = rng.random_range(0..b.len());
                match rng.random_range(0..4) {
                    0 => b[at] = *b" :-[]{}\"'&*!|>#%@\n\t0a".choose(rng).unwrap(),
                    1 => {
                        b.remove(at);
                    }
                    2 => b.insert(at, *b" :-[]{}\n".choose(rng).unwrap()),
                    _ => b[at] ^= 1 << rng.random_range(0..8),
                }
            }
            String::from_utf8_lossy(&b).into_owned()
        }
        3 => {
            let mut lines: Vec<&str> = source::SEED_YAML.lines().collect();
            for _ in 0..rng.random_range(1..6) {
                let a = rng.random_range(0..lines.len());
                let b = rng.random_range(0..lines.len());
                match rng.random_range(0..3) {
                    0 => lines.swap(a, b),
                    1 => {
                        lines.remove(a);
                    }
                    _ => lines.insert(a, lines[b]),
                }
            }
            lines.join("\n")
        }
        4 => {
            // Aliases expanding exponentially ("billion laughs").
            let mut y = String::from("l0: &l0 [\"x\", \"x\"]\n");
            for i in 1..rng.random_range(2..30) {
                y.push_str(&format!("l{i}: &l{i} [*l{p}, *l{p}]\n", p = i - 1));
            }
            y
        }
        _ => objects(rng),
    }
}

/// A value for a field: any YAML type, valid or not.
fn value(rng: &mut impl Rng) -> String {
    let long = "x".repeat(rng.random_range(60..300));
    [
        "null".to_string(),
        "~".into(),
        "[]".into(),
        "{}".into(),
        "-1".into(),
        "0".into(),
        "65536".into(),
        "99999999999999999999999".into(),
        "1e308".into(),
        "true".into(),
        "\"\"".into(),
        "\"169.254.1.1\"".into(),
        "\"999.1.1.1\"".into(),
        "\"fd00::1\"".into(),
        "\"fe80::1%eth0\"".into(),
        "\"::ffff:169.254.1.1\"".into(),
        "None".into(),
        "[None, None]".into(),
        "\"a.b\"".into(),
        "\"UPPER\"".into(),
        "\"-lead\"".into(),
        "\"é\"".into(),
        "\"a\\u0000b\"".into(),
        long,
        "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]".into(),
        "{a: {b: {c: {d: 1}}}}".into(),
        "&x [*x]".into(),
        "!!binary aGk=".into(),
    ]
    .choose(rng)
    .unwrap()
    .clone()
}

/// Services and EndpointSlices (as a list, or documents), valid but for
/// one or two fields that take any value: a field off a working object
/// reaches the validation behind deserialization, where a dozen wrong
/// fields would all stop at the first.
fn objects(rng: &mut impl Rng) -> String {
    let mut docs = Vec::new();
    for i in 0..rng.random_range(1..5) {
        let headless = rng.random_bool(0.5);
        let mut f: Vec<String> = [
            format!("svc{i}"),
            "ns".into(),
            if headless {
                "None".into()
            } else {
                format!("169.254.70.{i}")
            },
            if headless {
                "[None]".into()
            } else {
                format!("[169.254.70.{i}]")
            },
            "ClusterIP".into(),
            "www.example.test".into(),
            "[IPv4]".into(),
            "web".into(),
            "80".into(),
            "TCP".into(),
            format!("svc{i}-x"),
            "ns".into(),
            format!("svc{i}"),
            "IPv4".into(),
            "web".into(),
            "80".into(),
            "TCP".into(),
            format!("[169.254.71.{i}]"),
            format!("h{i}"),
            "true".into(),
            "true".into(),
            "false".into(),
            format!("pod-{i}"),
            "ns".into(),
        ]
        .into();
        for _ in 0..rng.random_range(1..=2) {
            let at = rng.random_range(0..f.len());
            f[at] = value(rng);
        }
        docs.push(format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: {}, namespace: {}}}\n\
             spec: {{clusterIP: {}, clusterIPs: {}, type: {}, externalName: {}, \
             ipFamilies: {}, ports: [{{name: {}, port: {}, protocol: {}}}]}}\n",
            f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7], f[8], f[9]
        ));
        docs.push(format!(
            "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
             metadata: {{name: {}, namespace: {}, labels: {{kubernetes.io/service-name: {}}}}}\n\
             addressType: {}\nports: [{{name: {}, port: {}, protocol: {}}}]\n\
             endpoints:\n  - addresses: {}\n    hostname: {}\n    \
             conditions: {{ready: {}, serving: {}, terminating: {}}}\n    \
             targetRef: {{kind: Pod, name: {}}}\n",
            f[10],
            f[11],
            f[12],
            f[13],
            f[14],
            f[15],
            f[16],
            f[17],
            f[18],
            f[19],
            f[20],
            f[21],
            f[22]
        ));
        docs.push(format!(
            "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {}}}\n",
            f[23]
        ));
    }
    if rng.random_bool(0.5) {
        let items: Vec<String> = docs
            .iter()
            .map(|d| {
                let mut item = String::from("- ");
                item.push_str(&d.replace('\n', "\n  "));
                item
            })
            .collect();
        format!("apiVersion: v1\nkind: List\nitems:\n{}", items.join("\n"))
    } else {
        docs.join("---\n")
    }
}

/// The option sets a table is built with: CoreDNS's defaults, and every
/// option that makes names of more object fields (pod names from
/// targetRefs, pod records).
fn table_options() -> [TableOptions; 2] {
    [
        TableOptions::default(),
        TableOptions {
            pods: PodMode::Insecure,
            endpoint_pod_names: true,
            nxdomain: true,
        },
    ]
}

/// Every name of `t` asked for SRV, A and PTR: the SRV model computes its
/// records (and their targets' names) per question, so a bad object could
/// fail there rather than at build time.
fn ask_every_name(t: &RecordTable) {
    for (name, _) in t.iter() {
        for qtype in [RecordType::SRV, RecordType::A, RecordType::PTR] {
            let mut m = Message::query();
            m.add_query(Query::query(name.clone(), qtype));
            if let Ok(q) = m.to_bytes() {
                let _ = resolver::respond_any_type(t, &q, Some(EDNS_UDP_SIZE));
            }
        }
    }
}

/// One manifest: objects (which must build a record table with every
/// option set, and answer for each of its names) or an error that names
/// the file; no panic, no more than [`SLOWEST_ALLOWED`]. `Ok(true)` when
/// it gave objects.
pub fn check_manifest(text: &str) -> Result<bool, String> {
    let t = Instant::now();
    let out = catch_unwind(AssertUnwindSafe(|| {
        source::parse_manifests_counted("fuzz.yaml", text).map(|(objects, _)| {
            let mut n = 0;
            for opts in table_options() {
                let t = RecordTable::build_with(&ZoneConfig::default(), &opts, &objects, 1);
                ask_every_name(&t);
                n += t.iter().count();
            }
            n
        })
    }));
    let took = t.elapsed();
    if took > SLOWEST_ALLOWED {
        return Err(format!("took {took:?}"));
    }
    match out {
        Err(p) => Err(format!("panic {:?}", panic_text(&*p))),
        Ok(Ok(_)) => Ok(true),
        Ok(Err(e)) => {
            let msg = format!("{e:#}");
            if msg.starts_with("fuzz.yaml") {
                Ok(false)
            } else {
                Err(format!("error without the file's name: {msg:?}"))
            }
        }
    }
}

/// `parse_manifests` on `n` inputs; what parses goes on into a record
/// table.
pub fn manifests(seed: u64, n: u64) -> Report {
    let mut r = Report::new("manifests (parse_manifests, RecordTable::build)");
    let start = Instant::now();
    for i in 0..n {
        let mut rng = packet_rng(seed ^ 0x6d61_6e69, i);
        let text = manifest_input(&mut rng);
        let t = Instant::now();
        let out = check_manifest(&text);
        r.slowest = r.slowest.max(t.elapsed());
        r.inputs += 1;
        match out {
            Ok(true) => r.accepted += 1,
            Ok(false) => r.refused += 1,
            Err(e) => {
                let short: String = text.chars().take(300).collect();
                r.fail(format!("{e} on {short:?}"));
                if r.failed_texts.len() < 20 {
                    r.failed_texts.push(text);
                }
            }
        }
    }
    r.elapsed = start.elapsed();
    r
}

/// `resolv_conf_upstreams` on `n` random files.
pub fn resolv_conf(seed: u64, n: u64) -> Report {
    let mut r = Report::new("resolv.conf (resolv_conf_upstreams)");
    let start = Instant::now();
    let path = std::env::temp_dir().join(format!("hsdns-fuzz-resolv-{}", std::process::id()));
    for i in 0..n {
        let mut rng = packet_rng(seed ^ 0x7265_736f, i);
        let mut text = String::new();
        for _ in 0..rng.random_range(0..8) {
            let line = match rng.random_range(0..6) {
                0 => "nameserver 169.254.20.10".to_string(),
                1 => format!("nameserver {}", value(&mut rng).trim_matches('"')),
                2 => "nameserver fe80::1%eth0".into(),
                3 => "search a b c\noptions ndots:5".into(),
                4 => format!("nameserver{}", value(&mut rng)),
                _ => String::from_utf8_lossy(
                    &(0..rng.random_range(0..80))
                        .map(|_| rng.random::<u8>())
                        .collect::<Vec<u8>>(),
                )
                .into_owned(),
            };
            text.push_str(&line);
            text.push('\n');
        }
        if std::fs::write(&path, &text).is_err() {
            r.fail(format!("cannot write {}", path.display()));
            break;
        }
        let out = catch_unwind(|| hsdns::server::resolv_conf_upstreams(&path));
        r.inputs += 1;
        match out {
            Err(p) => r.fail(format!("panic {:?} on {text:?}", panic_text(&*p))),
            Ok(Ok(ups)) if ups.is_empty() => r.fail(format!("no upstream and no error: {text:?}")),
            Ok(Ok(_)) => r.accepted += 1,
            Ok(Err(e)) => {
                r.refused += 1;
                if !format!("{e:#}").contains(&path.display().to_string()) {
                    r.fail(format!("error without the file's name: {e:#}"));
                }
            }
        }
    }
    let _ = std::fs::remove_file(&path);
    r.elapsed = start.elapsed();
    r
}
