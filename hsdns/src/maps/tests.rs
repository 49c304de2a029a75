use std::collections::HashMap as Map;

use hickory_proto::rr::{Name, RecordType};
use hsdns_common::{REF_CLASS_SHIFT, REF_NODATA, REF_PASS, REF_SLOT_MASK, REF_TRUNCATED};

use super::*;
use crate::{
    records::{RecordTable, ZoneConfig},
    source,
};

#[derive(Debug, Clone, PartialEq)]
enum Op {
    Answer(usize, u32),
    Name(Vec<u8>, NameRefs),
    Remove(Vec<u8>),
}

/// The maps as plain memory, with the order of writes kept.
#[derive(Default, Clone)]
struct Mem {
    answers: Map<(usize, u32), (Vec<u8>, u16)>,
    strides: Map<(usize, u32), u16>,
    names: Map<Vec<u8>, NameRefs>,
    soa: Map<u32, Vec<u8>>,
    ops: Vec<Op>,
    nxdomain: Option<u32>,
    soa_bank: u32,
    /// A name whose writes fail.
    reject: Option<Vec<u8>>,
    /// Batches write this many names at most and report the rest undone,
    /// as a batch call stopped half way does.
    batch_limit: Option<usize>,
    /// Every answer write fails.
    reject_answers: bool,
    /// Every removal fails.
    reject_removals: bool,
}

impl Backend for Mem {
    fn put_answer(
        &mut self,
        class: usize,
        slot: u32,
        bytes: &[u8],
        count: u16,
        stride: u16,
    ) -> Result<()> {
        if self.reject_answers {
            anyhow::bail!("rejected");
        }
        self.answers.insert((class, slot), (bytes.to_vec(), count));
        self.strides.insert((class, slot), stride);
        self.ops.push(Op::Answer(class, slot));
        Ok(())
    }
    fn put_name(&mut self, key: &[u8], rec: NameRefs, replace: bool) -> Result<()> {
        if self.reject.as_deref() == Some(key) {
            anyhow::bail!("rejected");
        }
        // BPF_NOEXIST / BPF_EXIST, as the BPF backend writes them.
        if self.names.contains_key(key) != replace {
            anyhow::bail!("{} ({key:?})", if replace { "not there" } else { "exists" });
        }
        self.names.insert(key.to_vec(), rec);
        self.ops.push(Op::Name(key.to_vec(), rec));
        Ok(())
    }
    fn put_names(&mut self, names: &[NameWrite]) -> Vec<usize> {
        let limit = self.batch_limit.unwrap_or(usize::MAX);
        for (i, n) in names.iter().enumerate() {
            if i == limit || self.put_name(&n.key, n.refs, n.replace).is_err() {
                return (i..names.len()).collect();
            }
        }
        Vec::new()
    }
    fn remove_name(&mut self, key: &[u8]) -> Result<()> {
        if self.reject_removals {
            anyhow::bail!("rejected");
        }
        self.names.remove(key);
        self.ops.push(Op::Remove(key.to_vec()));
        Ok(())
    }
    fn put_soa(&mut self, index: u32, bytes: &[u8]) -> Result<()> {
        self.soa.insert(index, bytes.to_vec());
        Ok(())
    }
    fn set_nxdomain(&mut self, on: bool, zone: &[u8]) -> Result<()> {
        self.nxdomain = on.then_some(zone.len() as u32);
        Ok(())
    }
    fn for_each_name(&self, f: &mut dyn FnMut(&[u8], NameRefs)) -> Result<()> {
        for (k, r) in &self.names {
            f(k, *r);
        }
        Ok(())
    }
    fn get_name(&self, key: &[u8]) -> Result<Option<NameRefs>> {
        Ok(self.names.get(key).copied())
    }
    fn get_answer(&self, class: usize, slot: u32) -> Result<StoredAnswer> {
        let (bytes, count) = self
            .answers
            .get(&(class, slot))
            .ok_or_else(|| anyhow::anyhow!("no answer at {class}/{slot}"))?;
        let stride = self.strides[&(class, slot)];
        let stored = bytes.clone();
        Ok(StoredAnswer {
            len: bytes.len() as u16,
            count: *count,
            csum: 0,
            stride,
            bytes: stored,
        })
    }
    fn set_soa_bank(&mut self, bank: u32) -> Result<()> {
        self.soa_bank = bank;
        Ok(())
    }
}

impl Mem {
    /// What the kernel would copy for (name, type): None when it would pass
    /// the query up or answer TC=1 (no bytes), Some(None) for NODATA.
    fn answer(&self, name: &str, qtype: RecordType) -> Option<Option<Vec<u8>>> {
        let key = name_key(&Name::from_ascii(name).unwrap()).unwrap();
        let rec = self.names.get(&key)?;
        let r = if qtype == RecordType::A {
            rec.a
        } else {
            rec.aaaa
        };
        match r {
            REF_PASS | REF_TRUNCATED => None,
            REF_NODATA => Some(None),
            r => {
                let slot = ((r >> REF_CLASS_SHIFT) as usize, r & REF_SLOT_MASK);
                Some(Some(
                    self.answers.get(&slot).expect("dangling ref").0.clone(),
                ))
            }
        }
    }
}

/// A headless service `name` in namespace `ns` with the given endpoints
/// (hostname, IPv4), as kubectl prints it.
fn headless(ns: &str, name: &str, eps: &[(&str, &str)]) -> String {
    let mut e = String::new();
    for (host, ip) in eps {
        e.push_str(&format!(
            "  - addresses: [\"{ip}\"]\n    hostname: {host}\n    conditions: {{ready: true}}\n"
        ));
    }
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {ns}}}\n\
         spec: {{clusterIP: None, clusterIPs: [None]}}\n---\n\
         apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
         metadata: {{name: {name}-1, namespace: {ns}, labels: {{kubernetes.io/service-name: {name}}}}}\n\
         addressType: IPv4\nendpoints:\n{e}"
    )
}

fn table(yaml: &str) -> RecordTable {
    let objects = source::parse_manifests("test", yaml).unwrap();
    RecordTable::build(&ZoneConfig::default(), &objects, 1)
}

/// Brings `t` to the objects of `yaml`, and the maps with it.
fn update(s: &mut Syncer<Mem>, t: &mut RecordTable, yaml: &str, now: Instant) -> SyncStats {
    let objects = source::parse_manifests("test", yaml).unwrap();
    let mut changes = Vec::new();
    t.set_objects(&objects, &mut changes);
    s.apply_at(t, changes, now).unwrap()
}

fn caps(names: u32, answers: [u32; 3]) -> Capacities {
    Capacities {
        names: [names; 3],
        answers,
    }
}

const WEB: &str = "web.app.svc.cluster.local.";
const WEB0: &str = "web-0.web.app.svc.cluster.local.";

#[test]
fn installs_every_name_with_the_encoded_answers() {
    let yaml = headless(
        "app",
        "web",
        &[("web-0", "169.254.1.1"), ("web-1", "169.254.1.2")],
    );
    let mut t = table(&yaml);
    let mut s = Syncer::new(Mem::default(), &Capacities::default());
    let st = s.sync_new(&mut t).unwrap();
    assert_eq!(st.names_written, t.len());
    for (name, entry) in t.iter() {
        let name = &name;
        let n = name.to_ascii();
        if !entry.kernel_answerable() {
            assert_eq!(s.backend().answer(&n, RecordType::A), None, "{n} passes up");
            continue;
        }
        let want = answer::answer_section(&t, name, RecordType::A).map(|e| e.bytes);
        assert_eq!(s.backend().answer(&n, RecordType::A), Some(want), "{n}");
        assert_eq!(
            s.backend().answer(&n, RecordType::AAAA),
            Some(None),
            "{n} NODATA"
        );
    }
    // Nothing changes, nothing is written.
    let ops = s.backend().ops.len();
    let st = update(&mut s, &mut t, &yaml, Instant::now());
    assert_eq!(st, SyncStats::default());
    assert_eq!(s.backend().ops.len(), ops);
}

#[test]
fn a_changed_name_is_swapped_never_removed() {
    let mut t = table(&headless(
        "app",
        "web",
        &[("web-0", "169.254.1.1"), ("web-1", "169.254.1.2")],
    ));
    let y2 = headless(
        "app",
        "web",
        &[("web-0", "169.254.1.1"), ("web-1", "169.254.1.3")],
    );
    let mut s = Syncer::new(Mem::default(), &Capacities::default());
    let t0 = Instant::now();
    let all = t.all_changes();
    s.apply_at(&mut t, all, t0).unwrap();
    let old = *s
        .backend()
        .names
        .get(&name_key(&Name::from_ascii(WEB).unwrap()).unwrap())
        .unwrap();
    let mark = s.backend().ops.len();
    let st = update(&mut s, &mut t, &y2, t0);
    // web-0 is unchanged; the service and web-1 change.
    assert_eq!(st.names_written, 2);
    assert_eq!(st.names_removed, 0);
    let ops = &s.backend().ops[mark..];
    assert!(
        !ops.iter().any(|o| matches!(o, Op::Remove(_))),
        "no gap: {ops:?}"
    );
    // Each new answer is written before the name that points at it, into a
    // slot no name pointed at.
    for (i, op) in ops.iter().enumerate() {
        if let Op::Name(_, rec) = op {
            let slot = ((rec.a >> REF_CLASS_SHIFT) as usize, rec.a & REF_SLOT_MASK);
            assert!(ops[..i].contains(&Op::Answer(slot.0, slot.1)));
        }
    }
    let new = *s
        .backend()
        .names
        .get(&name_key(&Name::from_ascii(WEB).unwrap()).unwrap())
        .unwrap();
    assert_ne!(new.a, old.a, "the old slot was not overwritten in place");
    assert_eq!(
        s.backend().answer(WEB, RecordType::A),
        Some(
            answer::answer_section(&t, &Name::from_ascii(WEB).unwrap(), RecordType::A)
                .map(|e| e.bytes)
        )
    );
}

#[test]
fn replaced_slots_are_reused_only_after_the_quarantine() {
    let mk = |ip: &str| headless("app", "web", &[("web-0", ip)]);
    // Capacity for exactly two answers per class: old and new.
    let mut s = Syncer::new(Mem::default(), &caps(16, [4, 0, 0]));
    let t0 = Instant::now();
    let mut t = table(&mk("169.254.1.1"));
    let all = t.all_changes();
    s.apply_at(&mut t, all, t0).unwrap();
    assert_eq!(s.slots_in_use(), [2, 0, 0]);
    update(&mut s, &mut t, &mk("169.254.1.2"), t0);
    assert_eq!(s.slots_in_use(), [2, 0, 0], "old slots quarantined");
    // Within the quarantine the pool is exhausted: the kernel must not get a
    // reused slot, so the change goes to userspace instead.
    let st = update(&mut s, &mut t, &mk("169.254.1.3"), t0 + QUARANTINE / 2);
    assert_eq!(st.answers_full, 2);
    assert_eq!(
        s.backend().answer(WEB0, RecordType::A),
        None,
        "passed up, not stale"
    );
    // After it, the slots come back.
    let st = update(&mut s, &mut t, &mk("169.254.1.4"), t0 + QUARANTINE * 2);
    assert_eq!(st.answers_full, 0);
    assert!(s.backend().answer(WEB0, RecordType::A).unwrap().is_some());
}

#[test]
fn removed_names_leave_the_maps() {
    let mut t = table(&headless(
        "app",
        "web",
        &[("web-0", "169.254.1.1"), ("web-1", "169.254.1.2")],
    ));
    let y2 = headless("app", "web", &[("web-0", "169.254.1.1")]);
    let mut s = Syncer::new(Mem::default(), &Capacities::default());
    s.sync_new(&mut t).unwrap();
    let st = update(&mut s, &mut t, &y2, Instant::now());
    assert_eq!(st.names_removed, 1);
    assert_eq!(
        s.backend()
            .answer("web-1.web.app.svc.cluster.local.", RecordType::A),
        None
    );
    assert_eq!(s.names_installed(), t.len());
}

#[test]
fn full_maps_pass_names_up_instead_of_answering_wrongly() {
    let eps: Vec<(String, String)> = (0..10)
        .map(|i| (format!("web-{i}"), format!("169.254.1.{}", i + 1)))
        .collect();
    let eps: Vec<(&str, &str)> = eps.iter().map(|(h, i)| (h.as_str(), i.as_str())).collect();
    let mut t = table(&headless("app", "web", &eps));
    // Ten pods, the service, and the fixed names of the zone (apex, svc,
    // pod, the namespace, ns.dns, dns-version).
    assert_eq!(t.len(), 17);
    let mut s = Syncer::new(Mem::default(), &caps(4, [64, 64, 64]));
    let st = s.sync_new(&mut t).unwrap();
    assert_eq!(st.names_full, 13);
    assert_eq!(s.backend().names.len(), 4);
    // Whatever is in the maps is right.
    for (key, rec) in &s.backend().names {
        let (name, entry) = t
            .iter()
            .find(|(n, _)| name_key(n).unwrap() == *key)
            .unwrap();
        let name = &name;
        if !entry.kernel_answerable() {
            assert_eq!(rec.a, REF_PASS, "{name}");
            continue;
        }
        let want = answer::answer_section(&t, name, RecordType::A).map(|e| e.bytes);
        assert_eq!(
            s.backend().answer(&name.to_ascii(), RecordType::A),
            Some(want)
        );
    }
}

#[test]
fn answers_pick_the_smallest_class_and_spill_upward() {
    let eps: Vec<(String, String)> = (0..80)
        .map(|i| (format!("w-{i}"), format!("169.254.2.{}", i + 1)))
        .collect();
    let eps: Vec<(&str, &str)> = eps.iter().map(|(h, i)| (h.as_str(), i.as_str())).collect();
    let mut t = table(&headless("app", "web", &eps));
    let mut s = Syncer::new(Mem::default(), &caps(1000, [10, 1000, 1000]));
    let st = s.sync_new(&mut t).unwrap();
    // 80 one-address names: 10 fit the small class, the rest spill to M.
    assert_eq!(s.slots_in_use()[0], 10);
    assert_eq!(s.slots_in_use()[1], 70);
    // The service has 80 addresses: 1280 bytes, more than any UDP reply:
    // the kernel answers it with TC=1.
    assert_eq!(st.answers_too_large, 1);
    let key = name_key(&Name::from_ascii(WEB).unwrap()).unwrap();
    assert_eq!(s.backend().names[&key].a, REF_TRUNCATED);
}

#[test]
fn soa_entries_cover_every_question_length_in_the_zone() {
    let t = table(&headless("app", "web", &[("web-0", "169.254.1.1")]));
    let mut s = Syncer::new(Mem::default(), &Capacities::default());
    let n = s.write_soa(&t).unwrap();
    // "cluster.local." is 15 bytes on the wire: the apex itself, then every
    // length a name under it can have (16 cannot: a label takes two bytes).
    let have: Vec<u32> = (1..=255)
        .filter(|l| s.backend().soa.contains_key(l))
        .collect();
    let want: Vec<u32> = std::iter::once(15).chain(17..=255).collect();
    assert_eq!(have, want);
    assert_eq!(n, want.len());
}

#[test]
fn negative_answers_only_while_every_name_is_in_the_maps() {
    let eps: Vec<(String, String)> = (0..10)
        .map(|i| (format!("web-{i}"), format!("169.254.1.{}", i + 1)))
        .collect();
    let eps: Vec<(&str, &str)> = eps.iter().map(|(h, i)| (h.as_str(), i.as_str())).collect();
    let small = headless("app", "web", &eps[..2]);
    let big = headless("app", "web", &eps);
    let now = Instant::now();
    let mut t = table(&small);
    let mut s = Syncer::new(Mem::default(), &caps(9, [64, 64, 64]));
    s.set_nxdomain(true);
    s.sync_new(&mut t).unwrap();
    // "cluster.local." is 15 bytes on the wire.
    assert_eq!(s.backend().nxdomain, Some(15));
    update(&mut s, &mut t, &big, now);
    assert_eq!(
        s.backend().nxdomain,
        None,
        "11 names, room for 8: absence proves nothing"
    );
    update(&mut s, &mut t, &small, now);
    assert_eq!(s.backend().nxdomain, Some(15), "complete again");
    s.set_nxdomain(false);
    update(&mut s, &mut t, &small, now);
    assert_eq!(s.backend().nxdomain, None, "switched off by configuration");
}

#[test]
fn names_a_batch_leaves_undone_are_written_one_by_one() {
    let eps: Vec<(String, String)> = (0..10)
        .map(|i| (format!("web-{i}"), format!("169.254.1.{}", i + 1)))
        .collect();
    let eps: Vec<(&str, &str)> = eps.iter().map(|(h, i)| (h.as_str(), i.as_str())).collect();
    let yaml = headless("app", "web", &eps);
    let mut whole = Syncer::new(Mem::default(), &Capacities::default());
    whole.sync_new(&mut table(&yaml)).unwrap();
    let mut t = table(&yaml);
    let mut cut = Syncer::new(
        Mem {
            batch_limit: Some(3),
            ..Mem::default()
        },
        &Capacities::default(),
    );
    let st = cut.sync_new(&mut t).unwrap();
    assert_eq!(st.names_written, t.len());
    assert_eq!(cut.backend().names, whole.backend().names);
    assert_eq!(cut.backend().answers, whole.backend().answers);
    assert_eq!(cut.names_installed(), t.len());
}

#[test]
fn a_name_the_backend_rejects_is_withdrawn_not_left_stale() {
    let web1 = "web-1.web.app.svc.cluster.local.";
    let key1 = name_key(&Name::from_ascii(web1).unwrap()).unwrap();
    let y1 = headless(
        "app",
        "web",
        &[("web-0", "169.254.1.1"), ("web-1", "169.254.1.2")],
    );
    let y2 = headless(
        "app",
        "web",
        &[("web-0", "169.254.1.1"), ("web-1", "169.254.1.3")],
    );
    let now = Instant::now();
    let mut t = table(&y1);
    let mut s = Syncer::new(Mem::default(), &Capacities::default());
    s.set_nxdomain(true);
    s.sync_new(&mut t).unwrap();
    assert!(s.nxdomain_active());

    s.backend_mut().reject = Some(key1.clone());
    let st = update(&mut s, &mut t, &y2, now);
    assert_eq!(st.names_full, 1);
    assert_eq!(s.backend().answer(web1, RecordType::A), None, "passed up");
    assert!(!s.nxdomain_active(), "its absence proves nothing");
    assert_eq!(s.names_installed(), t.len() - 1);
    // The others went in.
    assert_eq!(
        s.backend().answer(WEB, RecordType::A),
        Some(
            answer::answer_section(&t, &Name::from_ascii(WEB).unwrap(), RecordType::A)
                .map(|e| e.bytes)
        )
    );

    // Once the backend takes it, the next sync installs it.
    s.backend_mut().reject = None;
    let st = update(&mut s, &mut t, &y2, now);
    assert_eq!(st.names_written, 1);
    assert_eq!(
        s.backend().answer(web1, RecordType::A),
        Some(
            answer::answer_section(&t, &Name::from_ascii(web1).unwrap(), RecordType::A)
                .map(|e| e.bytes)
        )
    );
    assert_eq!(s.names_installed(), t.len());
    assert!(s.nxdomain_active());
}

#[test]
fn a_namespace_emptied_and_refilled_in_one_batch_is_installed_once() {
    // The live source sends dirty services in key order: `a` deleted, then
    // `b` added, both in `app`, in one update.
    let mut t = table(&headless("app", "a", &[("a-0", "169.254.1.1")]));
    let mut s = Syncer::new(Mem::default(), &Capacities::default());
    s.sync_new(&mut t).unwrap();
    let objects =
        source::parse_manifests("test", &headless("app", "b", &[("b-0", "169.254.1.2")])).unwrap();
    let svc = crate::records::ServiceView::from(&objects.services[0]);
    let slice = crate::records::SliceView::from(&objects.slices[0]);
    let mut changes = Vec::new();
    t.update_service("app", "a", None, &[], &mut changes);
    t.update_service("app", "b", Some(&svc), &[&slice], &mut changes);
    s.apply_at(&mut t, changes, Instant::now()).unwrap();
    assert_eq!(s.names_installed(), t.len());
    assert_eq!(s.backend().names.len(), t.len());
    assert!(
        s.backend()
            .answer("app.svc.cluster.local.", RecordType::A)
            .is_some(),
        "the namespace still exists"
    );
    assert!(
        s.backend()
            .answer("b-0.b.app.svc.cluster.local.", RecordType::A)
            .unwrap()
            .is_some()
    );
}

/// Per name in the maps, what the kernel answers for A and AAAA (see
/// `Mem::answer`).
type KernelView = std::collections::BTreeMap<Vec<u8>, [Option<Option<Vec<u8>>>; 2]>;

impl Mem {
    /// What the kernel would answer, for every name in the maps.
    fn kernel_view(&self) -> KernelView {
        let get = |r: u32| match r {
            REF_PASS => None,
            REF_NODATA => Some(None),
            r => Some(Some(
                self.answers
                    .get(&((r >> REF_CLASS_SHIFT) as usize, r & REF_SLOT_MASK))
                    .expect("dangling ref")
                    .0
                    .clone(),
            )),
        };
        self.names
            .iter()
            .map(|(k, r)| (k.clone(), [get(r.a), get(r.aaaa)]))
            .collect()
    }

    /// Every slot a name points at, asserting no two names share one.
    fn referenced_slots(&self) -> std::collections::HashSet<(usize, u32)> {
        let mut seen = std::collections::HashSet::new();
        for r in self.names.values() {
            for x in [r.a, r.aaaa] {
                if let Some(s) = slot_of(x) {
                    assert!(seen.insert(s), "slot {s:?} shared by two names");
                }
            }
        }
        seen
    }
}

/// The maps a fresh daemon would fill from `yaml`.
fn fresh(yaml: &str) -> Mem {
    let mut s = Syncer::new(Mem::default(), &Capacities::default());
    s.set_nxdomain(true);
    s.sync_new(&mut table(yaml)).unwrap();
    s.backend().clone()
}

/// A restarted daemon: adopts `maps` and syncs the table of `yaml`.
fn restart(maps: Mem, yaml: &str) -> (Syncer<Mem>, RecordTable, SyncStats) {
    let (nx, bank) = (maps.nxdomain.is_some(), maps.soa_bank);
    let mut s = Syncer::new(maps, &Capacities::default());
    s.set_nxdomain(true);
    s.adopt(nx, bank).unwrap();
    let mut t = table(yaml);
    let st = s.sync_new(&mut t).unwrap();
    (s, t, st)
}

#[test]
fn a_restart_adopts_what_is_unchanged_without_writing_it() {
    let yaml = headless(
        "app",
        "web",
        &[("web-0", "169.254.1.1"), ("web-1", "169.254.1.2")],
    );
    let before = fresh(&yaml);
    let (s, t, st) = restart(before.clone(), &yaml);
    assert_eq!(st.names_adopted, t.len());
    assert_eq!(st.names_written, 0);
    assert_eq!(st.names_removed, 0);
    assert_eq!(s.backend().ops.len(), before.ops.len(), "not one write");
    assert_eq!(s.names_installed(), t.len());
    assert_eq!(s.slots_in_use(), {
        let mut n = [0u32; 3];
        for (c, _) in before.referenced_slots() {
            n[c] += 1;
        }
        n
    });
    assert!(!s.adopting(), "the manifest table is complete at once");
    assert!(s.nxdomain_active());
}

#[test]
fn a_restart_writes_what_changed_and_removes_what_is_gone() {
    let y1 = headless(
        "app",
        "web",
        &[
            ("web-0", "169.254.1.1"),
            ("web-1", "169.254.1.2"),
            ("web-2", "169.254.1.3"),
        ],
    );
    // web-1 moved, web-2 gone, web-3 new.
    let y2 = headless(
        "app",
        "web",
        &[
            ("web-0", "169.254.1.1"),
            ("web-1", "169.254.1.9"),
            ("web-3", "169.254.1.4"),
        ],
    );
    let before = fresh(&y1);
    let old_web1 = before.names
        [&name_key(&Name::from_ascii("web-1.web.app.svc.cluster.local.").unwrap()).unwrap()];
    let (s, t, st) = restart(before.clone(), &y2);
    // What the kernel answers is exactly what a fresh daemon would write.
    assert_eq!(s.backend().kernel_view(), fresh(&y2).kernel_view());
    assert_eq!(s.names_installed(), t.len());
    // web-1, web-3 and the service (its address set changed).
    assert_eq!(st.names_written, 3, "{st:?}");
    assert_eq!(st.names_removed, 1, "web-2");
    // A changed name moved to a fresh slot: no gap, no torn answer.
    let new_web1 = s.backend().names
        [&name_key(&Name::from_ascii("web-1.web.app.svc.cluster.local.").unwrap()).unwrap()];
    assert_ne!(new_web1.a, old_web1.a);
    let ops = &s.backend().ops[before.ops.len()..];
    let in_use_before = before.referenced_slots();
    for op in ops {
        if let Op::Answer(c, slot) = op {
            assert!(
                !in_use_before.contains(&(*c, *slot)),
                "slot {c}/{slot} rewritten while an adopted name pointed at it"
            );
        }
    }
    s.backend().referenced_slots();
}

#[test]
fn while_adopting_nothing_is_removed_before_the_table_is_complete() {
    let y1 = format!(
        "{}\n---\n{}",
        headless("app", "web", &[("web-0", "169.254.1.1")]),
        headless("app", "db", &[("db-0", "169.254.2.1")])
    );
    let before = fresh(&y1);
    assert_eq!(before.nxdomain, Some(15));
    let mut s = Syncer::new(before.clone(), &Capacities::default());
    s.set_nxdomain(true);
    s.adopt(true, 0).unwrap();
    // The live source: an empty, incomplete table, then `web` changed.
    let mut t = RecordTable::new(&ZoneConfig::default(), 1);
    s.sync_new(&mut t).unwrap();
    let objects =
        source::parse_manifests("test", &headless("app", "web", &[("web-0", "169.254.1.7")]))
            .unwrap();
    let mut changes = Vec::new();
    t.set_objects(&objects, &mut changes);
    t.set_complete(false);
    s.apply(&mut t, changes).unwrap();
    assert!(s.adopting());
    // db is not in the table yet: still answered from the adopted maps, and
    // negative answers stay on (the maps hold the last complete table).
    assert!(
        s.backend()
            .answer("db-0.db.app.svc.cluster.local.", RecordType::A)
            .unwrap()
            .is_some()
    );
    assert_eq!(s.backend().nxdomain, Some(15));
    let want = answer::answer_section(&t, &Name::from_ascii(WEB0).unwrap(), RecordType::A)
        .map(|e| e.bytes);
    assert_eq!(
        s.backend().answer(WEB0, RecordType::A),
        Some(want),
        "the change is in"
    );
    // Complete without db: it goes.
    t.set_complete(true);
    let st = s.apply(&mut t, Vec::new()).unwrap();
    assert!(!s.adopting());
    assert!(st.names_removed >= 2, "db and db-0: {st:?}");
    assert_eq!(
        s.backend()
            .answer("db-0.db.app.svc.cluster.local.", RecordType::A),
        None
    );
    assert_eq!(
        s.backend().kernel_view(),
        fresh(&headless("app", "web", &[("web-0", "169.254.1.7")])).kernel_view()
    );
    assert_eq!(s.backend().nxdomain, Some(15));
}

#[test]
fn adopted_slots_are_not_handed_out_again() {
    // Room for exactly the slots in use plus two.
    let yaml = headless(
        "app",
        "web",
        &[("web-0", "169.254.1.1"), ("web-1", "169.254.1.2")],
    );
    let before = fresh(&yaml);
    let used = before.referenced_slots();
    let small = used.iter().filter(|(c, _)| *c == 0).count() as u32;
    let caps = Capacities {
        answers: [small + 2, 8192, 1024],
        ..Capacities::default()
    };
    let mut s = Syncer::new(before.clone(), &caps);
    s.adopt(true, 0).unwrap();
    let y2 = headless(
        "app",
        "web",
        &[("web-0", "169.254.1.5"), ("web-1", "169.254.1.6")],
    );
    let mut t = table(&y2);
    let st = s.sync_new(&mut t).unwrap();
    // Two new single answers fit the two free slots; nothing overwrote an
    // adopted one before its name moved away.
    assert_eq!(st.answers_full, 0, "{st:?}");
    for op in &s.backend().ops[before.ops.len()..] {
        if let Op::Answer(c, slot) = op {
            assert!(!used.contains(&(*c, *slot)), "{c}/{slot} was in use");
        }
    }
}

#[test]
fn refused_answer_writes_pass_the_name_up_and_never_stop_the_sync() {
    let y1 = headless("app", "web", &[("web-0", "169.254.1.1")]);
    let y2 = headless("app", "web", &[("web-0", "169.254.1.2")]);
    let mut t = table(&y1);
    let mut s = Syncer::new(Mem::default(), &Capacities::default());
    s.sync_new(&mut t).unwrap();
    s.backend_mut().reject_answers = true;
    let st = update(&mut s, &mut t, &y2, Instant::now());
    assert!(st.write_errors >= 1, "{st:?}");
    assert_eq!(
        s.backend().answer(WEB0, RecordType::A),
        None,
        "passed up, not stale"
    );
    // Once the kernel takes writes again, the next change goes in.
    s.backend_mut().reject_answers = false;
    let y3 = headless("app", "web", &[("web-0", "169.254.1.3")]);
    let st = update(&mut s, &mut t, &y3, Instant::now());
    assert_eq!(st.write_errors, 0);
    let want = answer::answer_section(&t, &Name::from_ascii(WEB0).unwrap(), RecordType::A)
        .map(|e| e.bytes);
    assert_eq!(s.backend().answer(WEB0, RecordType::A), Some(want));
}

#[test]
fn a_refused_removal_keeps_its_slots_out_of_use() {
    let y1 = headless(
        "app",
        "web",
        &[("web-0", "169.254.1.1"), ("web-1", "169.254.1.2")],
    );
    let y2 = headless("app", "web", &[("web-0", "169.254.1.1")]);
    let mut t = table(&y1);
    // Little room, so freed slots would be reused at once.
    let mut s = Syncer::new(Mem::default(), &caps(64, [8, 8, 8]));
    s.sync_new(&mut t).unwrap();
    let web1 = name_key(&Name::from_ascii("web-1.web.app.svc.cluster.local.").unwrap()).unwrap();
    let stale = s.backend().names[&web1];
    s.backend_mut().reject_removals = true;
    let st = update(&mut s, &mut t, &y2, Instant::now());
    assert!(st.write_errors >= 1, "{st:?}");
    s.backend_mut().reject_removals = false;
    // Churn long after the quarantine: the slot web-1 still points at is
    // never written again.
    let mut now = Instant::now();
    for i in 0..20 {
        now += QUARANTINE * 2;
        let y = headless("app", "web", &[("web-0", &format!("169.254.3.{i}"))]);
        update(&mut s, &mut t, &y, now);
    }
    let slot = slot_of(stale.a).unwrap();
    let writes = s
        .backend()
        .ops
        .iter()
        .filter(|o| **o == Op::Answer(slot.0, slot.1))
        .count();
    assert_eq!(writes, 1, "written once, at the start");
}

proptest::proptest! {
    #![proptest_config(proptest::test_runner::Config::with_cases(64))]
    /// Whatever the maps held before and whatever the cluster is now, a
    /// restarted daemon leaves the kernel answering exactly what a fresh
    /// one would, without two names on one slot.
    #[test]
    fn adopt_then_sync_equals_a_fresh_sync(
        a in proptest::collection::vec((0u8..3, 0u8..6, proptest::collection::vec(0u8..8, 0..5)), 0..5),
        b in proptest::collection::vec((0u8..3, 0u8..6, proptest::collection::vec(0u8..8, 0..5)), 0..5),
    ) {
        let yaml = |svcs: &[(u8, u8, Vec<u8>)]| {
            let mut seen = std::collections::HashSet::new();
            svcs.iter()
                .filter(|(ns, n, _)| seen.insert((*ns, *n)))
                .map(|(ns, n, eps)| {
                    let eps: Vec<(String, String)> = eps
                        .iter()
                        .enumerate()
                        .map(|(i, ip)| (format!("p-{i}"), format!("169.254.{ns}.{}", 10 + ip)))
                        .collect();
                    let eps: Vec<(&str, &str)> = eps.iter().map(|(h, i)| (h.as_str(), i.as_str())).collect();
                    headless(&format!("ns{ns}"), &format!("s{n}"), &eps)
                })
                .collect::<Vec<_>>()
                .join("\n---\n")
        };
        let (y1, y2) = (yaml(&a), yaml(&b));
        let (s, t, _) = restart(fresh(&y1), &y2);
        proptest::prop_assert_eq!(s.backend().kernel_view(), fresh(&y2).kernel_view());
        proptest::prop_assert_eq!(s.names_installed(), t.len());
        let used = s.backend().referenced_slots();
        let in_use: u32 = s.slots_in_use().iter().sum();
        proptest::prop_assert!(in_use as usize >= used.len());
    }
}

/// The serial of the SOA of a 40-byte question in `bank`.
fn soa_serial(m: &Mem, bank: u32) -> Option<u32> {
    let bytes = m.soa.get(&(bank * 256 + 40))?;
    // Authority RR: owner pointer, type, class, TTL, RDLENGTH, then
    // mname and rname (both compressed: label + pointer), serial.
    let rd = &bytes[12..];
    let skip = |b: &[u8]| {
        let mut i = 0;
        while b[i] != 0 && b[i] & 0xc0 == 0 {
            i += 1 + b[i] as usize;
        }
        i + if b[i] == 0 { 1 } else { 2 }
    };
    let m = skip(rd);
    let r = m + skip(&rd[m..]);
    Some(u32::from_be_bytes(rd[r..r + 4].try_into().unwrap()))
}

#[test]
fn the_soa_serial_follows_the_table_through_the_bank_not_in_use() {
    let eps = [("web-0", "169.254.1.1"), ("web-1", "169.254.1.2")];
    let now = Instant::now();
    let mut t = table(&headless("app", "web", &eps[..1]));
    let mut s = Syncer::new(Mem::default(), &caps(64, [64, 64, 64]));
    s.write_soa(&t).unwrap();
    s.sync_new(&mut t).unwrap();
    let serial_in = |s: &Syncer<Mem>, bank: u32| soa_serial(s.backend(), bank);
    assert_eq!((s.backend().soa_bank, serial_in(&s, 0)), (0, Some(1)));
    // The first sync changed names: the serial is due, and goes into bank 1.
    assert_eq!(s.refresh_soa(&mut t, 1000, now).unwrap(), None);
    assert_eq!(s.backend().soa_bank, 1);
    assert_eq!(serial_in(&s, 1), Some(1000));
    assert_eq!(t.serial(), 1000, "userspace answers with the same serial");
    // Nothing changed since: nothing to do.
    assert_eq!(s.refresh_soa(&mut t, 2000, now).unwrap(), None);
    assert_eq!(t.serial(), 1000);
    // A change within the quarantine: bank 0 may still be read, so wait.
    let soon = now + Duration::from_millis(500);
    update(&mut s, &mut t, &headless("app", "web", &eps), soon);
    assert_eq!(
        s.refresh_soa(&mut t, 1001, soon).unwrap(),
        Some(now + QUARANTINE)
    );
    assert_eq!((s.backend().soa_bank, t.serial()), (1, 1000));
    // Then it flips back to bank 0; a serial never goes backwards.
    let later = now + QUARANTINE;
    assert_eq!(s.refresh_soa(&mut t, 999, later).unwrap(), None);
    assert_eq!(s.backend().soa_bank, 0);
    assert_eq!((serial_in(&s, 0), t.serial()), (Some(1001), 1001));
    assert_eq!(
        serial_in(&s, 1),
        Some(1000),
        "the old bank is left as it was"
    );
}

/// A restarted daemon takes over the SOA bank the kernel reads: its next
/// serial goes into the other one, and not within the quarantine (the
/// previous daemon may have switched just before it stopped).
#[test]
fn a_restart_writes_the_next_soa_into_the_bank_not_in_use() {
    let eps = [("web-0", "169.254.1.1"), ("web-1", "169.254.1.2")];
    let y1 = headless("app", "web", &eps[..1]);
    let mut t = table(&y1);
    let mut s = Syncer::new(Mem::default(), &Capacities::default());
    s.write_soa(&t).unwrap();
    s.sync_new(&mut t).unwrap();
    let now = Instant::now();
    s.refresh_soa(&mut t, 1000, now).unwrap();
    let before = s.backend().clone();
    assert_eq!((before.soa_bank, soa_serial(&before, 1)), (1, Some(1000)));

    let (mut s, mut t, _) = restart(before, &y1);
    t.set_serial(1000);
    update(
        &mut s,
        &mut t,
        &headless("app", "web", &eps),
        Instant::now(),
    );
    let due = s
        .refresh_soa(&mut t, 2000, Instant::now())
        .unwrap()
        .expect("quarantined since the adoption");
    assert_eq!(s.backend().soa_bank, 1, "bank 1 still read");
    assert_eq!(soa_serial(s.backend(), 1), Some(1000), "bank 1 untouched");
    assert_eq!(s.refresh_soa(&mut t, 2000, due).unwrap(), None);
    assert_eq!(s.backend().soa_bank, 0);
    assert_eq!((soa_serial(s.backend(), 0), t.serial()), (Some(2000), 2000));
    assert_eq!(soa_serial(s.backend(), 1), Some(1000));
}

/// The first sync walks the table in chunks of held-back writes
/// (`PENDING_MAX`) instead of applying a change per name: across chunk
/// boundaries it must write exactly what applying every name does, and
/// the same slots.
#[test]
fn first_sync_in_chunks_equals_applying_every_name() {
    let eps: Vec<(String, String)> = (0..2500u32)
        .map(|i| {
            (
                format!("web-{i}"),
                format!("169.254.{}.{}", i / 250, i % 250 + 1),
            )
        })
        .collect();
    let eps: Vec<(&str, &str)> = eps
        .iter()
        .map(|(h, ip)| (h.as_str(), ip.as_str()))
        .collect();
    let yaml = headless("app", "web", &eps);
    let t0 = Instant::now();
    let mut walked = table(&yaml);
    assert!(walked.len() > 2 * PENDING_MAX, "spans several chunks");
    let mut w = Syncer::new(Mem::default(), &Capacities::default());
    let st_w = w.sync_new_at(&mut walked, t0).unwrap();
    let mut applied = table(&yaml);
    let mut a = Syncer::new(Mem::default(), &Capacities::default());
    let all = applied.all_changes();
    let st_a = a.apply_at(&mut applied, all, t0).unwrap();
    assert_eq!(st_w, st_a);
    assert_eq!(st_w.names_written, walked.len());
    assert_eq!(w.names_installed(), walked.len());
    assert_eq!(
        w.backend().ops,
        a.backend().ops,
        "the same writes in the same order"
    );
    assert_eq!(w.backend().names, a.backend().names);
    // The table records the slots the maps hold, name by name.
    for ((k1, e1), (k2, e2)) in walked.keys().zip(applied.keys()) {
        assert_eq!((k1, e1.refs), (k2, e2.refs));
    }
}
