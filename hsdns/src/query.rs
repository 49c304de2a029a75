//! `hsdns query NAME [TYPE]`: what a running daemon answers, path by path.
//!
//! The kernel path is asked with BPF_PROG_TEST_RUN against the pinned
//! program (`<pin_dir>/prog_xdp`, shared contract 3): the same program and
//! maps pods hit, with a frame addressed to the node-local address. The
//! userspace path is asked over UDP at that address, which from the node
//! itself never crosses the XDP hook, so it reaches the daemon's server
//! (which answers from the table or forwards). Both answers are printed
//! dig-style, and the summary says which path answers a pod.

use std::{
    fmt::Write as _,
    net::{IpAddr, SocketAddr, UdpSocket},
    path::Path,
    time::Duration,
};

use anyhow::{Context as _, Result, bail};
use aya::programs::{TestRun as _, TestRunOptions, Xdp};
use aya_obj::programs::XdpAttachType;
use hickory_proto::{
    op::Message,
    rr::{Name, RecordType},
};

use crate::cli::QueryArgs;
use crate::frame::{Frame, XDP_DROP, XDP_PASS, XDP_TX, query};

// The pinned program's name under the pin directory (contract 3): the
// daemon's lifecycle pins it and keeps it pinned across restarts.
use crate::lifecycle::PROG_XDP;

/// What the kernel did with the frame.
#[derive(Debug)]
pub enum KernelOutcome {
    /// XDP_TX: the reply's DNS message.
    Answered(Vec<u8>),
    /// XDP_PASS: the query goes up the stack to userspace.
    Passed,
    Dropped,
    Other(u32),
}

/// Runs `query_bytes` (a DNS message) through the pinned program in a frame
/// to `dst`, returning what the program did.
pub fn run_kernel(pin_dir: &Path, dst: IpAddr, query_bytes: &[u8]) -> Result<KernelOutcome> {
    let path = pin_dir.join(PROG_XDP);
    let prog = Xdp::from_pin(&path, XdpAttachType::Interface).with_context(|| {
        format!(
            "opening the pinned program {} (is hsdns running, with this --pin-dir?)",
            path.display()
        )
    })?;
    let mut frame = match dst {
        IpAddr::V4(_) => Frame::v4(query_bytes.to_vec()),
        IpAddr::V6(_) => Frame::v6(query_bytes.to_vec()),
    };
    frame.dst = dst;
    let bytes = frame.bytes();
    let mut out = vec![0u8; 4096];
    let r = prog
        .test_run(TestRunOptions {
            data_in: Some(&bytes),
            data_out: Some(&mut out),
            ..Default::default()
        })
        .context("BPF_PROG_TEST_RUN")?;
    out.truncate(r.data_size_out as usize);
    Ok(match r.return_value {
        XDP_TX => {
            // The reply keeps the frame's layout: Ethernet, IP without
            // options (the program drops them), UDP.
            let ip = match dst {
                IpAddr::V4(_) => 20,
                IpAddr::V6(_) => 40,
            };
            let at = 14 + ip + 8;
            if out.len() < at {
                bail!("the program sent a {}-byte frame", out.len());
            }
            KernelOutcome::Answered(out[at..].to_vec())
        }
        XDP_PASS => KernelOutcome::Passed,
        XDP_DROP => KernelOutcome::Dropped,
        v => KernelOutcome::Other(v),
    })
}

/// Asks the userspace server over UDP; None on timeout.
pub fn run_userspace(
    server: SocketAddr,
    query_bytes: &[u8],
    timeout: Duration,
) -> Result<Option<Vec<u8>>> {
    let bind: SocketAddr = match server {
        SocketAddr::V4(_) => "0.0.0.0:0".parse()?,
        SocketAddr::V6(_) => "[::]:0".parse()?,
    };
    let sock = UdpSocket::bind(bind)?;
    sock.set_read_timeout(Some(timeout))?;
    sock.connect(server)
        .with_context(|| format!("connecting to {server}"))?;
    sock.send(query_bytes)?;
    let mut buf = vec![0u8; 65535];
    match sock.recv(&mut buf) {
        Ok(n) => Ok(Some(buf[..n].to_vec())),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            Ok(None)
        }
        // Nothing listening: the port is closed (ICMP unreachable).
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => Ok(None),
        Err(e) => Err(e).context("receiving"),
    }
}

/// The RCODE as dig names it.
fn rcode_name(code: u16) -> String {
    match code {
        0 => "NOERROR".into(),
        1 => "FORMERR".into(),
        2 => "SERVFAIL".into(),
        3 => "NXDOMAIN".into(),
        4 => "NOTIMP".into(),
        5 => "REFUSED".into(),
        n => format!("RCODE{n}"),
    }
}

/// A DNS message in dig's layout (header, flags, sections).
pub fn dig_style(bytes: &[u8]) -> String {
    let m = match Message::from_vec(bytes) {
        Ok(m) => m,
        Err(e) => return format!(";; unparsable reply ({} bytes): {e}\n", bytes.len()),
    };
    let md = &m.metadata;
    let mut s = String::new();
    let _ = writeln!(
        s,
        ";; ->>HEADER<<- opcode: {:?}, status: {}, id: {}",
        md.op_code,
        rcode_name(u16::from(md.response_code)),
        md.id
    );
    let mut flags = Vec::new();
    for (on, f) in [
        (
            md.message_type == hickory_proto::op::MessageType::Response,
            "qr",
        ),
        (md.authoritative, "aa"),
        (md.truncation, "tc"),
        (md.recursion_desired, "rd"),
        (md.recursion_available, "ra"),
        (md.checking_disabled, "cd"),
    ] {
        if on {
            flags.push(f);
        }
    }
    let _ = writeln!(
        s,
        ";; flags: {}; QUERY: {}, ANSWER: {}, AUTHORITY: {}, ADDITIONAL: {}",
        flags.join(" "),
        m.queries.len(),
        m.answers.len(),
        m.authorities.len(),
        m.additionals.len() + usize::from(m.edns.is_some())
    );
    if let Some(e) = &m.edns {
        let _ = writeln!(
            s,
            ";; OPT: version {}, udp {}",
            e.version(),
            e.max_payload()
        );
    }
    let _ = writeln!(s, ";; QUESTION SECTION:");
    for q in &m.queries {
        let _ = writeln!(s, ";{}\t\tIN\t{}", q.name(), q.query_type());
    }
    for (title, rrs) in [
        ("ANSWER", &m.answers),
        ("AUTHORITY", &m.authorities),
        ("ADDITIONAL", &m.additionals),
    ] {
        if rrs.is_empty() {
            continue;
        }
        let _ = writeln!(s, ";; {title} SECTION:");
        for r in rrs {
            let _ = writeln!(
                s,
                "{}\t{}\tIN\t{}\t{}",
                r.name,
                r.ttl,
                r.record_type(),
                r.data
            );
        }
    }
    s
}

/// `hsdns query`: prints both paths' answers; fails only when neither path
/// could be asked.
pub fn run(args: &QueryArgs) -> Result<()> {
    let mut name = Name::from_ascii(&args.name)
        .with_context(|| format!("{:?} is not a domain name", args.name))?;
    name.set_fqdn(true);
    let qtype: RecordType = args
        .qtype
        .to_uppercase()
        .parse()
        .with_context(|| format!("{:?} is not a record type", args.qtype))?;
    let bytes = query(&name.to_ascii(), qtype, args.edns.then_some(1232));
    let server = SocketAddr::new(args.addr, args.port);

    let kernel = run_kernel(&args.pin_dir, args.addr, &bytes);
    println!(
        ";; kernel: BPF_PROG_TEST_RUN on {}",
        args.pin_dir.join(PROG_XDP).display()
    );
    let kernel_answered = match &kernel {
        Ok(KernelOutcome::Answered(reply)) => {
            print!("{}", dig_style(reply));
            true
        }
        Ok(KernelOutcome::Passed) => {
            println!(";; passed up (XDP_PASS): the userspace server gets this query");
            false
        }
        Ok(other) => {
            println!(";; unexpected verdict {other:?}");
            false
        }
        Err(e) => {
            println!(";; not asked: {e:#}");
            false
        }
    };
    println!();
    println!(";; userspace: UDP to {server}");
    let user = run_userspace(server, &bytes, Duration::from_millis(args.timeout_ms));
    match &user {
        Ok(Some(reply)) => print!("{}", dig_style(reply)),
        Ok(None) => println!(
            ";; no reply (nothing listening, or none within {} ms)",
            args.timeout_ms
        ),
        Err(e) => println!(";; not asked: {e:#}"),
    }
    println!();
    let answered_by = if kernel_answered {
        "kernel"
    } else {
        match &user {
            Ok(Some(reply)) => match Message::from_vec(reply) {
                Ok(m) if m.metadata.authoritative => "userspace (from the record table)",
                Ok(_) => "userspace (forwarded upstream or cached)",
                Err(_) => "userspace (unparsable reply)",
            },
            _ => "nobody",
        }
    };
    println!(
        ";; a pod asking {} is answered by: {answered_by}",
        args.addr
    );
    if kernel.is_err() && user.is_err() {
        bail!("neither path could be asked");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        dns::respond_any_type, records::RecordTable, records::ZoneConfig, source::embedded_seed,
    };

    #[test]
    fn dig_style_shows_status_flags_and_records() {
        let t = RecordTable::build(&ZoneConfig::default(), &embedded_seed(), 1);
        let q = query(
            "nginx-0.nginx-headless.test.svc.cluster.local.",
            RecordType::A,
            Some(1232),
        );
        let crate::dns::Verdict::Answer(r) = respond_any_type(&t, &q, Some(1232)) else {
            panic!()
        };
        let s = dig_style(&r);
        assert!(s.contains("status: NOERROR"), "{s}");
        assert!(s.contains(";; flags: qr aa rd;"), "{s}");
        assert!(
            s.contains("nginx-0.nginx-headless.test.svc.cluster.local.\t5\tIN\tA\t169.254.10.10"),
            "{s}"
        );
        let q = query("nope.test.svc.cluster.local.", RecordType::A, None);
        let crate::dns::Verdict::Answer(r) = respond_any_type(&t, &q, Some(1232)) else {
            panic!()
        };
        let s = dig_style(&r);
        assert!(
            s.contains("status: NXDOMAIN") && s.contains("AUTHORITY SECTION"),
            "{s}"
        );
        assert!(dig_style(&[1, 2, 3]).contains("unparsable"));
    }
}
