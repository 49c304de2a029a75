//! The few bpf(2) commands aya 0.14 does not expose for pinned links: an
//! XDP or tcx link's interface (aya's `LinkInfo` hides it) and
//! BPF_LINK_UPDATE on a link we hold only as a pinned file.

use std::{
    ffi::CString,
    io,
    os::{
        fd::{AsRawFd as _, BorrowedFd, FromRawFd as _, OwnedFd},
        unix::ffi::OsStrExt as _,
    },
    path::Path,
};

use aya_obj::generated::{bpf_link_info, bpf_link_type};

const BPF_OBJ_GET: libc::c_long = 7;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
const BPF_LINK_UPDATE: libc::c_long = 29;

fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is the `union bpf_attr` member for `cmd` (each caller
    // builds it as linux/bpf.h lays it out); the kernel reads and writes
    // only within its size, which is passed along.
    let r = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *mut T, size_of::<T>()) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Opens a pinned object (BPF_OBJ_GET).
pub fn obj_get(path: &Path) -> io::Result<OwnedFd> {
    #[repr(C)]
    struct Attr {
        pathname: u64,
        bpf_fd: u32,
        file_flags: u32,
        path_fd: i32,
        _pad: u32,
    }
    let c = CString::new(path.as_os_str().as_bytes())?;
    let mut attr = Attr {
        pathname: c.as_ptr() as u64,
        bpf_fd: 0,
        file_flags: 0,
        path_fd: 0,
        _pad: 0,
    };
    let fd = bpf(BPF_OBJ_GET, &mut attr)?;
    // SAFETY: the kernel returned a new descriptor, now ours.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// An XDP or tcx link as the kernel describes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HookLinkInfo {
    pub id: u32,
    pub prog_id: u32,
    /// 0 once the interface is gone (the link is defunct).
    pub ifindex: u32,
    /// A tcx link (tc ingress), not an XDP one.
    pub tc: bool,
}

/// The link behind `fd`, if it is an XDP or a tcx link (the two hooks the
/// program is attached with).
pub fn hook_link_info(fd: BorrowedFd<'_>) -> io::Result<Option<HookLinkInfo>> {
    #[repr(C)]
    struct Attr {
        bpf_fd: u32,
        info_len: u32,
        info: u64,
    }
    // SAFETY: a plain C struct; all-zero is valid.
    let mut info: bpf_link_info = unsafe { std::mem::zeroed() };
    let mut attr = Attr {
        bpf_fd: fd.as_raw_fd() as u32,
        info_len: size_of::<bpf_link_info>() as u32,
        info: &raw mut info as u64,
    };
    bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr)?;
    let ifindex = if info.type_ == bpf_link_type::BPF_LINK_TYPE_XDP as u32 {
        // SAFETY: the union member of an XDP link.
        unsafe { info.__bindgen_anon_1.xdp.ifindex }
    } else if info.type_ == bpf_link_type::BPF_LINK_TYPE_TCX as u32 {
        // SAFETY: the union member of a tcx link.
        unsafe { info.__bindgen_anon_1.tcx.ifindex }
    } else {
        return Ok(None);
    };
    Ok(Some(HookLinkInfo {
        id: info.id,
        prog_id: info.prog_id,
        ifindex,
        tc: info.type_ == bpf_link_type::BPF_LINK_TYPE_TCX as u32,
    }))
}

/// Replaces the program of a link in one step (BPF_LINK_UPDATE): packets
/// see the old program or the new one, never none.
pub fn link_update(link: BorrowedFd<'_>, prog: BorrowedFd<'_>) -> io::Result<()> {
    #[repr(C)]
    struct Attr {
        link_fd: u32,
        new_prog_fd: u32,
        flags: u32,
        old_prog_fd: u32,
    }
    let mut attr = Attr {
        link_fd: link.as_raw_fd() as u32,
        new_prog_fd: prog.as_raw_fd() as u32,
        flags: 0,
        old_prog_fd: 0,
    };
    bpf(BPF_LINK_UPDATE, &mut attr).map(|_| ())
}

/// CLOCK_BOOTTIME in ns: the clock of `bpf_ktime_get_boot_ns`, which the
/// kernel compares the heartbeat with.
pub fn boot_ns() -> u64 {
    // SAFETY: all-zero is a valid timespec; clock_gettime writes into it.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: a valid clock id and out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}
