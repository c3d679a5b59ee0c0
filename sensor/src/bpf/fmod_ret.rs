//! A loader shim for the `fmod_ret` enforcement program (`file_open_modret` in
//! `sensor-ebpf/src/lsm.rs`): aya 0.14 has no `BPF_MODIFY_RETURN` program type.
//!
//! The program sits in an `fentry/` section, so aya parses the object (and creates every map)
//! but never loads it. Here the same object is parsed again with aya-obj, its map references
//! are relocated against the descriptors of the maps aya created, so the program shares the
//! policy tables, the ring and the globals with the rest, and it is loaded as
//! `BPF_PROG_TYPE_TRACING` / `BPF_MODIFY_RETURN` on `security_file_open` and attached with
//! `BPF_RAW_TRACEPOINT_OPEN` (a tracing link). Dropping [`FmodRet`] closes the link and the
//! program: that detaches it.
use std::{
    collections::HashSet,
    ffi::CString,
    io, mem,
    os::fd::{AsFd as _, AsRawFd as _, BorrowedFd, FromRawFd as _, OwnedFd},
};

use aya::{
    Ebpf,
    maps::{Map, MapData},
};
use aya_obj::{
    Object,
    btf::{Btf, BtfKind},
    generated::{bpf_attach_type, bpf_attr, bpf_cmd, bpf_prog_info, bpf_prog_type},
};

/// The program, and the kernel function it is attached to.
pub const PROGRAM: &str = "file_open_modret";
const FUNCTION: &str = "security_file_open";
/// Verifier log buffer: the log is only asked for after a failed load.
const LOG_BYTES: usize = 1 << 20;

/// Loading or attaching the `fmod_ret` program failed.
#[derive(Debug, thiserror::Error)]
pub enum FmodRetError {
    #[error("cannot parse the kernel object: {0}")]
    Parse(#[source] aya_obj::ParseError),
    #[error("kernel BTF: {0}")]
    Btf(#[source] aya::BtfError),
    #[error("CO-RE relocation: {0}")]
    BtfRelocation(#[source] aya_obj::btf::BtfRelocationError),
    #[error("relocation: {0}")]
    Relocation(#[source] aya_obj::relocation::EbpfRelocationError),
    #[error("program {PROGRAM} is missing from the embedded object")]
    Missing,
    #[error("map {0} was not created by the main object (or was taken out of it already)")]
    Map(String),
    #[error("the verifier rejected {PROGRAM} (BPF_PROG_LOAD): {source}\nverifier log:\n{log}")]
    Load { source: io::Error, log: String },
    #[error("cannot attach {PROGRAM} to {FUNCTION} (BPF_RAW_TRACEPOINT_OPEN): {0}")]
    Attach(#[source] io::Error),
}

/// The loaded and attached program. Dropping it detaches it.
#[derive(Debug)]
pub struct FmodRet {
    _link: OwnedFd,
    _prog: OwnedFd,
    /// The kernel's program id.
    pub id: Option<u32>,
}

/// Loads `file_open_modret` from `object` with the maps of `ebpf` (which must still hold
/// every map: call this before taking any out) and attaches it.
pub fn attach(object: &[u8], ebpf: &Ebpf) -> Result<FmodRet, FmodRetError> {
    let mut obj = Object::parse(object).map_err(FmodRetError::Parse)?;
    let kernel_btf = Btf::from_sys_fs().map_err(FmodRetError::Btf)?;
    let attach_btf_id =
        kernel_btf.id_by_type_name_kind(FUNCTION, BtfKind::Func).map_err(FmodRetError::Btf)?;
    obj.relocate_btf(&kernel_btf).map_err(FmodRetError::BtfRelocation)?;
    drop(kernel_btf);

    let own = obj.maps.clone();
    let mut fds = Vec::new();
    for (name, map) in &own {
        let created = ebpf.map(name).ok_or_else(|| FmodRetError::Map(name.clone()))?;
        fds.push((name.as_str(), map_data(created).fd().as_fd().as_raw_fd(), map));
    }
    // The relocated instructions hold these descriptors' numbers: `ebpf` keeps them open.
    let text_sections: HashSet<usize> = obj.functions.keys().map(|(section, _)| *section).collect();
    obj.relocate_maps(fds.into_iter(), &text_sections).map_err(FmodRetError::Relocation)?;
    obj.relocate_calls(&text_sections).map_err(FmodRetError::Relocation)?;
    obj.sanitize_functions(aya::features());
    let program = obj.programs.get(PROGRAM).ok_or(FmodRetError::Missing)?;
    let function = obj.functions.get(&program.function_key()).ok_or(FmodRetError::Missing)?;

    let prog = load(&function.instructions, &obj.license, attach_btf_id)?;
    // SAFETY: a zeroed bpf_attr is the documented "no fields set" value.
    let mut attr: bpf_attr = unsafe { mem::zeroed() };
    // name 0: attach a tracing program to the function it was loaded for.
    attr.raw_tracepoint.prog_fd = prog.as_raw_fd() as u32;
    let link = sys_bpf(bpf_cmd::BPF_RAW_TRACEPOINT_OPEN, &mut attr).map_err(FmodRetError::Attach)?;
    Ok(FmodRet { _link: link, id: prog_id(prog.as_fd()), _prog: prog })
}

/// `BPF_PROG_LOAD` as `BPF_PROG_TYPE_TRACING` / `BPF_MODIFY_RETURN`; on failure again with
/// the verifier log.
fn load(
    insns: &[aya_obj::generated::bpf_insn],
    license: &CString,
    attach_btf_id: u32,
) -> Result<OwnedFd, FmodRetError> {
    let try_load = |log: &mut [u8]| {
        // SAFETY: a zeroed bpf_attr is the documented "no fields set" value.
        let mut attr: bpf_attr = unsafe { mem::zeroed() };
        // SAFETY: writing plain integers into the BPF_PROG_LOAD member of the union.
        let u = unsafe { &mut attr.__bindgen_anon_3 };
        u.prog_type = bpf_prog_type::BPF_PROG_TYPE_TRACING as u32;
        u.expected_attach_type = bpf_attach_type::BPF_MODIFY_RETURN as u32;
        u.attach_btf_id = attach_btf_id;
        u.insns = insns.as_ptr() as u64;
        u.insn_cnt = insns.len() as u32;
        u.license = license.as_ptr() as u64;
        for (dst, src) in u.prog_name.iter_mut().zip(b"file_open_modre") {
            *dst = *src as _;
        }
        if !log.is_empty() {
            u.log_level = 1;
            u.log_buf = log.as_mut_ptr() as u64;
            u.log_size = log.len() as u32;
        }
        sys_bpf(bpf_cmd::BPF_PROG_LOAD, &mut attr)
    };
    try_load(&mut []).or_else(|_| {
        let mut log = vec![0u8; LOG_BYTES];
        try_load(&mut log).map_err(|source| {
            let end = log.iter().position(|b| *b == 0).unwrap_or(log.len());
            FmodRetError::Load { source, log: String::from_utf8_lossy(&log[..end]).into_owned() }
        })
    })
}

/// The kernel id of a loaded program (`BPF_OBJ_GET_INFO_BY_FD`).
fn prog_id(fd: BorrowedFd<'_>) -> Option<u32> {
    // SAFETY: zeroed bpf_attr and bpf_prog_info are valid "nothing set" values.
    let mut info: bpf_prog_info = unsafe { mem::zeroed() };
    // SAFETY: as above.
    let mut attr: bpf_attr = unsafe { mem::zeroed() };
    attr.info.bpf_fd = fd.as_raw_fd() as u32;
    attr.info.info_len = size_of::<bpf_prog_info>() as u32;
    attr.info.info = std::ptr::from_mut(&mut info) as u64;
    (bpf(bpf_cmd::BPF_OBJ_GET_INFO_BY_FD, &mut attr).ok()? == 0).then_some(info.id)
}

/// A `bpf(2)` command that returns a new descriptor.
fn sys_bpf(cmd: bpf_cmd, attr: &mut bpf_attr) -> io::Result<OwnedFd> {
    let fd = bpf(cmd, attr)?;
    // SAFETY: on success these commands return a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

fn bpf(cmd: bpf_cmd, attr: &mut bpf_attr) -> io::Result<libc::c_long> {
    // SAFETY: attr is a valid bpf_attr of the size passed, for the duration of the call.
    let ret = unsafe {
        libc::syscall(libc::SYS_bpf, cmd as libc::c_long, std::ptr::from_mut(attr), size_of::<bpf_attr>())
    };
    if ret < 0 { Err(io::Error::last_os_error()) } else { Ok(ret) }
}

/// The descriptor of a map aya created (every variant holds one).
fn map_data(map: &Map) -> &MapData {
    match map {
        Map::Array(d)
        | Map::ArrayOfMaps(d)
        | Map::BloomFilter(d)
        | Map::CgroupArray(d)
        | Map::CgroupStorage(d)
        | Map::CgrpStorage(d)
        | Map::CpuMap(d)
        | Map::DevMap(d)
        | Map::DevMapHash(d)
        | Map::HashMap(d)
        | Map::HashOfMaps(d)
        | Map::InodeStorage(d)
        | Map::LpmTrie(d)
        | Map::LruHashMap(d)
        | Map::PerCpuArray(d)
        | Map::PerCpuCgroupStorage(d)
        | Map::PerCpuHashMap(d)
        | Map::PerCpuLruHashMap(d)
        | Map::PerfEventArray(d)
        | Map::ProgramArray(d)
        | Map::Queue(d)
        | Map::ReusePortSockArray(d)
        | Map::RingBuf(d)
        | Map::SockHash(d)
        | Map::SockMap(d)
        | Map::SkStorage(d)
        | Map::Stack(d)
        | Map::StackTraceMap(d)
        | Map::Unsupported(d)
        | Map::XskMap(d) => d,
    }
}

#[cfg(test)]
mod tests {
    use aya_obj::{Object, ProgramSection};

    /// The embedded object holds the program in a section aya 0.14 parses (so the main load
    /// does not fail on it), next to the BPF LSM program it shares its decision with.
    #[test]
    fn the_object_holds_the_program_in_a_section_aya_parses() {
        if super::super::OBJECT.is_empty() {
            return; // AYA_BUILD_SKIP=1: no kernel programs to check.
        }
        let obj = Object::parse(super::super::OBJECT).expect("aya-obj parses the embedded object");
        let prog = obj.programs.get(super::PROGRAM).expect("file_open_modret is in the object");
        assert!(matches!(prog.section, ProgramSection::FEntry { sleepable: false }), "{:?}", prog.section);
        assert!(obj.programs.contains_key("file_open"), "the BPF LSM entry point is there too");
        assert_eq!(obj.license.to_bytes(), b"GPL", "tracing programs need a GPL-compatible license");
    }
}
