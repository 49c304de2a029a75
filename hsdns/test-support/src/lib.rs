//! The harness hsdns's integration tests (hsdns/tests) and benchmarks
//! (hsdns-bench) share, as hickory-dns keeps its test-support crate:
//!
//! - `netns`: network namespaces, pods on veths, the daemon as a child
//!   process, an upstream stub, dig; cleanup by PID even on panic;
//! - `apiserver`: an in-process Kubernetes API server speaking the paging
//!   list/watch protocol to kube-rs;
//! - `manifests`: generated Services and EndpointSlices;
//! - `kernel_cases`: the kernel program's cases, ONE table that the kernel
//!   tests check and the kernel benchmark times;
//! - `fuzzer`: the differential fuzzer of the kernel path and the parsers;
//! - `serial`: the guard for tests that measure time or the process.
//!
//! Frames and DNS queries come from `hsdns::frame` (`hsdns query` uses
//! them too); the kernel-style reply oracle is `hsdns::dns::testing`
//! (behind hsdns's `testing` feature, which this crate turns on).

pub mod apiserver;
pub mod fuzzer;
pub mod kernel_cases;
pub mod manifests;
pub mod netns;
pub mod serial;

/// A UDP socket and a TCP listener on the same loopback port, for a test's
/// stand-in upstream. The UDP socket picks the port; its TCP twin can be
/// the local port of a client connection in TIME_WAIT (a full test run
/// leaves thousands), so another port is tried, a few times.
pub async fn loopback_udp_tcp() -> (tokio::net::UdpSocket, tokio::net::TcpListener) {
    let mut last = None;
    for _ in 0..16 {
        let udp = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("binding a loopback UDP socket");
        let addr = udp.local_addr().expect("its address");
        match tokio::net::TcpListener::bind(addr).await {
            Ok(tcp) => return (udp, tcp),
            Err(e) => last = Some(e),
        }
    }
    panic!("no loopback port free for both UDP and TCP: {last:?}");
}
