//! Detection of socket-level load balancing (Cilium socket LB, Calico eBPF
//! connect-time LB): a cgroup connect4 program attached to an ancestor
//! cgroup is found as an effective program of the cgroup below it, and a
//! cgroup without one reports none. A throwaway cgroup of this test (never
//! the machine's root) holds the program.
//!
//! Needs root: run through `cargo xtask test`.

use std::{fs, os::fd::AsRawFd as _, path::PathBuf};

use aya_obj::generated::{bpf_attach_type, bpf_attr, bpf_cmd, bpf_prog_type};
use hsdns::cni::{own_cgroup, socket_lb_programs};

fn bpf(cmd: bpf_cmd, attr: &mut bpf_attr) -> i64 {
    // SAFETY: the bpf syscall with an initialised attr of its full size.
    unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd as libc::c_int,
            attr as *mut bpf_attr,
            std::mem::size_of::<bpf_attr>() as libc::c_uint,
        )
    }
}

/// Loads the smallest cgroup/connect4 program (`r0 = 1; exit`: allow, as
/// a load balancer does after rewriting the address).
fn load_connect4() -> i32 {
    // mov64 r0, 1 (0xb7) ; exit (0x95): 8-byte instructions.
    let insns: [u64; 2] = [0x0000_0001_0000_00b7, 0x0000_0000_0000_0095];
    let license = c"GPL";
    // SAFETY: a zeroed attr is valid; the pointers outlive the call.
    let mut attr: bpf_attr = unsafe { std::mem::zeroed() };
    // SAFETY: writing the plain integer fields of the union's PROG_LOAD
    // variant, the one BPF_PROG_LOAD reads; no reference outlives the block.
    unsafe {
        let p = &mut attr.__bindgen_anon_3;
        p.prog_type = bpf_prog_type::BPF_PROG_TYPE_CGROUP_SOCK_ADDR as u32;
        p.insn_cnt = 2;
        p.insns = insns.as_ptr() as u64;
        p.license = license.as_ptr() as u64;
        p.expected_attach_type = bpf_attach_type::BPF_CGROUP_INET4_CONNECT as u32;
    }
    let fd = bpf(bpf_cmd::BPF_PROG_LOAD, &mut attr);
    assert!(
        fd >= 0,
        "loading a connect4 program: {}",
        std::io::Error::last_os_error()
    );
    fd as i32
}

fn attach(cgroup: &fs::File, prog: i32, detach: bool) {
    // SAFETY: as above.
    let mut attr: bpf_attr = unsafe { std::mem::zeroed() };
    // SAFETY: writing the plain integer fields of the union's PROG_ATTACH
    // variant, the one BPF_PROG_ATTACH/DETACH read.
    unsafe {
        let a = &mut attr.__bindgen_anon_5;
        a.__bindgen_anon_1.target_fd = cgroup.as_raw_fd() as u32;
        a.attach_bpf_fd = prog as u32;
        a.attach_type = bpf_attach_type::BPF_CGROUP_INET4_CONNECT as u32;
    }
    let cmd = if detach {
        bpf_cmd::BPF_PROG_DETACH
    } else {
        bpf_cmd::BPF_PROG_ATTACH
    };
    let r = bpf(cmd, &mut attr);
    assert!(r == 0, "{cmd:?}: {}", std::io::Error::last_os_error());
}

struct Cgroups(Vec<PathBuf>);

impl Drop for Cgroups {
    fn drop(&mut self) {
        for d in self.0.iter().rev() {
            let _ = fs::remove_dir(d);
        }
    }
}

#[test]
fn a_connect4_program_over_a_cgroup_is_found_below_it() {
    assert!(
        // SAFETY: geteuid has no preconditions and cannot fail.
        unsafe { libc::geteuid() } == 0,
        "this test attaches BPF programs to cgroups: run it as root (cargo xtask test)"
    );
    let base = own_cgroup().expect("a cgroup v2 hierarchy");
    let lb = base.join(format!("hsdns-test-{}-lb", std::process::id()));
    let pod = lb.join("pod");
    let other = base.join(format!("hsdns-test-{}-other", std::process::id()));
    let _guard = Cgroups(vec![lb.clone(), pod.clone(), other.clone()]);
    for d in [&lb, &pod, &other] {
        fs::create_dir_all(d).unwrap();
    }
    assert_eq!(socket_lb_programs(&pod).unwrap(), vec![]);

    let prog = load_connect4();
    let dir = fs::File::open(&lb).unwrap();
    attach(&dir, prog, false);
    let found = socket_lb_programs(&pod).unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].0, "connect4");
    assert_eq!(found[0].1.len(), 1);
    // A cgroup elsewhere is not affected.
    assert_eq!(socket_lb_programs(&other).unwrap(), vec![]);
    attach(&dir, prog, true);
    assert_eq!(socket_lb_programs(&pod).unwrap(), vec![]);
    // SAFETY: closing the program fd we own.
    unsafe { libc::close(prog) };
}
