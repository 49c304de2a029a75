//! Start-up overlap: the first lists and the record table need no program,
//! the program load needs no table. While the verifier runs (on a thread
//! of its own), the live source's updates go into the table; once the
//! maps are open, `Syncer::sync_new` writes the whole table in one pass.

use std::{
    future::Future,
    sync::PoisonError,
    time::{Duration, Instant},
};

use tokio::sync::mpsc::Receiver;

use crate::{records::SharedTable, source::kube::Update};

/// Applies `updates` to `table` until `load` finishes and returns its
/// output, with the time spent in table updates meanwhile. Nothing is
/// written anywhere but the table: every name it holds is new to the maps
/// (the caller installs them all with `sync_new`). A closed channel (the
/// source ended) only means waiting for the load.
pub async fn fill_until_loaded<T>(
    table: &SharedTable,
    updates: &mut Receiver<Update>,
    load: impl Future<Output = T>,
) -> (T, Duration) {
    let mut spent = Duration::ZERO;
    let mut open = true;
    let mut changes = Vec::new();
    tokio::pin!(load);
    loop {
        tokio::select! {
            // The load first: once the maps are open, updates go through
            // the syncer, as after start.
            biased;
            out = &mut load => return (out, spent),
            update = updates.recv(), if open => match update {
                Some(update) => {
                    let t = Instant::now();
                    let mut table = table.write().unwrap_or_else(PoisonError::into_inner);
                    update.apply(&mut table, &mut changes);
                    // What changed is all of it, written by sync_new.
                    changes.clear();
                    spent += t.elapsed();
                }
                None => open = false,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    //! The path where the lists are in before the program is loaded (small
    //! clusters always, as in every live test): the updates reach the
    //! table, the load's output comes back while the source stays open,
    //! and nothing is left in the channel that the table lacks.
    use std::{
        net::IpAddr,
        sync::{Arc, RwLock},
    };

    use hickory_proto::rr::Name;
    use tokio::sync::{mpsc, oneshot};

    use super::*;
    use crate::{
        records::{RecordTable, ServiceKind, ServiceView, TableOptions, ZoneConfig},
        source::kube::ServiceObjects,
    };

    fn table() -> SharedTable {
        let zone = ZoneConfig {
            zone: Name::from_ascii("cluster.local.").unwrap(),
            ttl: 5,
        };
        Arc::new(RwLock::new(RecordTable::new_with(
            &zone,
            &TableOptions::default(),
            1,
        )))
    }

    fn service(name: &str, ip: &str) -> Update {
        let ip: IpAddr = ip.parse().unwrap();
        Update::Changed(vec![ServiceObjects {
            namespace: "ns".into(),
            name: name.into(),
            service: Some(Arc::new(ServiceView {
                kind: ServiceKind::ClusterIp(Box::new([ip])),
                publish_not_ready: false,
                ports: Box::default(),
            })),
            slices: vec![],
        }])
    }

    fn has(table: &SharedTable, name: &str) -> bool {
        table
            .read()
            .unwrap()
            .get(&Name::from_ascii(name).unwrap())
            .is_some()
    }

    #[tokio::test]
    async fn lists_complete_before_the_load() {
        let table = table();
        let (tx, mut rx) = mpsc::channel(1);
        let (loaded, load) = oneshot::channel::<u32>();
        let source = tokio::spawn(async move {
            tx.send(service("a", "169.254.9.1")).await.unwrap();
            tx.send(service("b", "169.254.9.2")).await.unwrap();
            tx.send(Update::Complete).await.unwrap();
            // Only once every update is taken: the load ends last, and the
            // source stays open (a live source never ends).
            tx.reserve().await.unwrap().send(Update::Namespaces(vec![]));
            loaded.send(7).unwrap();
            tx
        });
        let (out, _) = fill_until_loaded(&table, &mut rx, async { load.await.unwrap() }).await;
        assert_eq!(out, 7);
        let _tx = source.await.unwrap();
        assert!(has(&table, "a.ns.svc.cluster.local."));
        assert!(has(&table, "b.ns.svc.cluster.local."));
        assert!(table.read().unwrap().is_complete());
    }

    #[tokio::test]
    async fn a_finished_load_takes_no_more_updates() {
        // What arrives after the maps are open goes through the syncer.
        let table = table();
        let (tx, mut rx) = mpsc::channel(2);
        tx.send(service("a", "169.254.9.1")).await.unwrap();
        let (out, spent) = fill_until_loaded(&table, &mut rx, async { 1 }).await;
        assert_eq!((out, spent), (1, Duration::ZERO));
        assert!(!has(&table, "a.ns.svc.cluster.local."));
        assert!(rx.try_recv().is_ok());
    }

    #[tokio::test]
    async fn a_closed_source_waits_for_the_load() {
        let table = table();
        let (tx, mut rx) = mpsc::channel(1);
        tx.send(service("a", "169.254.9.1")).await.unwrap();
        drop(tx);
        let (loaded, load) = oneshot::channel::<u32>();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            loaded.send(3).unwrap();
        });
        let (out, _) = fill_until_loaded(&table, &mut rx, async { load.await.unwrap() }).await;
        assert_eq!(out, 3);
        assert!(has(&table, "a.ns.svc.cluster.local."));
    }
}
