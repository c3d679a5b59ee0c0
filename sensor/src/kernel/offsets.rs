//! Every kernel-facing offset assumption of the programs, in one table.
//!
//! Each [`KernelOffsets`] field has one [`Spec`]: the struct member (alternative spellings
//! tried in order) or tracepoint field it is read from, and whether the programs can do
//! without it. [`resolve`] fills [`KernelOffsets`] from the running kernel's BTF and tracefs
//! and reports every problem at once. Links point at the v6.12 sources; line numbers are
//! approximate (taken from 6.12.117), the files are right.

use sensor_common::offsets::KernelOffsets;

use super::btf::{Btf, BtfError};
use super::tracefs::{TraceFs, TraceFsError};

/// Where one [`KernelOffsets`] field comes from.
#[derive(Clone, Copy, Debug)]
pub enum Source {
    /// A member of a struct or union, found in BTF (anonymous members are searched).
    Member {
        /// Struct or union name, without the `struct` keyword.
        struct_name: &'static str,
        /// Member spellings, tried in order.
        members: &'static [&'static str],
        /// A member inside the member's type whose offset is added, e.g. `val` of `kuid_t`.
        inner: Option<&'static str>,
    },
    /// A field of a classic tracepoint, found in its tracefs format file.
    Tracepoint {
        /// Event category, e.g. `sock`.
        category: &'static str,
        /// Event name, e.g. `inet_sock_set_state`.
        event: &'static str,
        /// Field name.
        name: &'static str,
    },
}

/// One offset the programs rely on.
#[derive(Clone, Copy, Debug)]
pub struct Spec {
    /// The [`KernelOffsets`] field it fills.
    pub field: &'static str,
    /// Where it is read from.
    pub source: Source,
    /// Whether resolving fails without it; optional fields stay [`sensor_common::offsets::MISSING`].
    pub required: bool,
}

impl Spec {
    /// `struct.member` or `category/event.field`, for messages.
    pub fn location(&self) -> String {
        match self.source {
            Source::Member { struct_name, members, .. } => {
                format!("{struct_name}.{}", members.first().copied().unwrap_or_default())
            }
            Source::Tracepoint { category, event, name } => format!("{category}/{event}.{name}"),
        }
    }
}

const fn member(field: &'static str, struct_name: &'static str, members: &'static [&'static str]) -> Spec {
    Spec { field, source: Source::Member { struct_name, members, inner: None }, required: true }
}

/// A member whose value sits in a wrapper struct (`kuid_t`, `atomic_t`) at `inner`.
const fn wrapped(
    field: &'static str,
    struct_name: &'static str,
    members: &'static [&'static str],
    inner: &'static str,
) -> Spec {
    Spec { field, source: Source::Member { struct_name, members, inner: Some(inner) }, required: true }
}

const fn optional(spec: Spec) -> Spec {
    Spec { required: false, ..spec }
}

const fn tracepoint(
    field: &'static str,
    category: &'static str,
    event: &'static str,
    name: &'static str,
) -> Spec {
    Spec { field, source: Source::Tracepoint { category, event, name }, required: true }
}

const INET_SOCK_SET_STATE: &str = "inet_sock_set_state";

/// The exit tracepoint `tp_sys_exit_ret` is read from.
pub const SYS_EXIT_REFERENCE: &str = "sys_exit_openat";

/// Other exit tracepoints the programs attach to with the same `ret` offset; those present
/// on this kernel must agree with [`SYS_EXIT_REFERENCE`].
pub const SYS_EXIT_EVENTS: &[&str] = &[
    "sys_exit_open",
    "sys_exit_openat2",
    "sys_exit_creat",
    "sys_exit_open_by_handle_at",
    "sys_exit_accept",
    "sys_exit_accept4",
    "sys_exit_read",
    "sys_exit_readv",
    "sys_exit_pread64",
    "sys_exit_preadv",
    "sys_exit_preadv2",
    "sys_exit_write",
    "sys_exit_writev",
    "sys_exit_pwrite64",
    "sys_exit_pwritev",
    "sys_exit_pwritev2",
    "sys_exit_sendfile64",
    "sys_exit_splice",
    "sys_exit_copy_file_range",
    "sys_exit_mmap",
    "sys_exit_link",
    "sys_exit_linkat",
];

/// One entry per [`KernelOffsets`] field.
#[rustfmt::skip]
pub const SPECS: &[Spec] = &[
    // https://github.com/torvalds/linux/blob/v6.12/include/linux/sched.h#L1028
    member("task_struct_pid", "task_struct", &["pid"]),
    // https://github.com/torvalds/linux/blob/v6.12/include/linux/sched.h#L1029
    member("task_struct_tgid", "task_struct", &["tgid"]),
    // `PF_*` flags: PF_EXITING tells a release during exit from one by close.
    // https://github.com/torvalds/linux/blob/v6.12/include/linux/sched.h#L798
    member("task_struct_flags", "task_struct", &["flags"]),
    // https://github.com/torvalds/linux/blob/v6.12/include/linux/sched.h#L1042
    member("task_struct_real_parent", "task_struct", &["real_parent"]),
    // The effective (subjective) credentials, not real_cred.
    // https://github.com/torvalds/linux/blob/v6.12/include/linux/sched.h#L1124
    member("task_struct_cred", "task_struct", &["cred"]),
    // Only with CONFIG_AUDIT. kuid_t: https://github.com/torvalds/linux/blob/v6.12/include/linux/uidgid_types.h#L8
    // https://github.com/torvalds/linux/blob/v6.12/include/linux/sched.h#L1181
    optional(wrapped("task_struct_loginuid", "task_struct", &["loginuid"], "val")),
    // Only with CONFIG_AUDIT.
    // https://github.com/torvalds/linux/blob/v6.12/include/linux/sched.h#L1182
    optional(member("task_struct_sessionid", "task_struct", &["sessionid"])),
    // https://github.com/torvalds/linux/blob/v6.12/include/linux/sched.h#L1154
    member("task_struct_files", "task_struct", &["files"]),
    // https://github.com/torvalds/linux/blob/v6.12/include/linux/sched.h#L1151
    member("task_struct_fs", "task_struct", &["fs"]),
    // https://github.com/torvalds/linux/blob/v6.12/include/linux/sched.h#L927
    member("task_struct_mm", "task_struct", &["mm"]),
    // https://github.com/torvalds/linux/blob/v6.12/include/linux/sched.h#L932
    member("task_struct_exit_code", "task_struct", &["exit_code"]),
    // https://github.com/torvalds/linux/blob/v6.12/include/linux/sched.h#L1164
    member("task_struct_signal", "task_struct", &["signal"]),
    // atomic_t: https://github.com/torvalds/linux/blob/v6.12/include/linux/types.h#L177
    // https://github.com/torvalds/linux/blob/v6.12/include/linux/sched/signal.h#L97
    wrapped("signal_struct_live", "signal_struct", &["live"], "counter"),
    // kuid_t/kgid_t: https://github.com/torvalds/linux/blob/v6.12/include/linux/uidgid_types.h#L8
    // https://github.com/torvalds/linux/blob/v6.12/include/linux/cred.h#L115
    wrapped("cred_uid", "cred", &["uid"], "val"),
    // https://github.com/torvalds/linux/blob/v6.12/include/linux/cred.h#L116
    wrapped("cred_gid", "cred", &["gid"], "val"),
    // https://github.com/torvalds/linux/blob/v6.12/include/linux/cred.h#L119
    wrapped("cred_euid", "cred", &["euid"], "val"),
    // https://github.com/torvalds/linux/blob/v6.12/include/linux/cred.h#L120
    wrapped("cred_egid", "cred", &["egid"], "val"),
    // The filesystem uid: what permission checks (and policies) use.
    // https://github.com/torvalds/linux/blob/v6.12/include/linux/cred.h#L123
    wrapped("cred_fsuid", "cred", &["fsuid"], "val"),
    // Inside an anonymous struct on 6.18.
    // https://github.com/torvalds/linux/blob/v6.12/include/linux/mm_types.h#L975
    member("mm_struct_arg_start", "mm_struct", &["arg_start"]),
    // https://github.com/torvalds/linux/blob/v6.12/include/linux/mm_types.h#L975
    member("mm_struct_arg_end", "mm_struct", &["arg_end"]),
    // The executable of the process (the BPF LSM backend identifies programs by it).
    // https://github.com/torvalds/linux/blob/v6.12/include/linux/mm_types.h#L1012
    member("mm_struct_exe_file", "mm_struct", &["exe_file"]),
    // https://github.com/torvalds/linux/blob/v6.12/include/linux/binfmts.h#L50
    member("linux_binprm_file", "linux_binprm", &["file"]),
    // https://github.com/torvalds/linux/blob/v6.12/include/linux/fs_struct.h#L15
    member("fs_struct_pwd", "fs_struct", &["pwd"]),
    // https://github.com/torvalds/linux/blob/v6.12/include/linux/fdtable.h#L46
    member("files_struct_fdt", "files_struct", &["fdt"]),
    // https://github.com/torvalds/linux/blob/v6.12/include/linux/fdtable.h#L27
    member("fdtable_max_fds", "fdtable", &["max_fds"]),
    // https://github.com/torvalds/linux/blob/v6.12/include/linux/fdtable.h#L28
    member("fdtable_fd", "fdtable", &["fd"]),
    // Inside an anonymous union on 6.18.
    // https://github.com/torvalds/linux/blob/v6.12/include/linux/fs.h#L1089
    member("file_f_path", "file", &["f_path"]),
    // https://github.com/torvalds/linux/blob/v6.12/include/linux/fs.h#L1084
    member("file_f_inode", "file", &["f_inode"]),
    // https://github.com/torvalds/linux/blob/v6.12/include/linux/fs.h#L1085
    member("file_f_flags", "file", &["f_flags"]),
    // https://github.com/torvalds/linux/blob/v6.12/include/linux/fs.h#L1080
    member("file_f_mode", "file", &["f_mode"]),
    // The credentials the file was opened with (a reference held until the file is freed):
    // a close by a task whose `cred` is this pointer acts as the opener did.
    // https://github.com/torvalds/linux/blob/v6.12/include/linux/fs.h#L1095
    member("file_f_cred", "file", &["f_cred"]),
    // https://github.com/torvalds/linux/blob/v6.12/include/linux/fs.h#L1083
    member("file_private_data", "file", &["private_data"]),
    // Reference count of the open file: `atomic_long_t f_count` (1 = one reference) until
    // 6.12, `file_ref_t f_ref` (refcnt 0 = one reference) from 6.13. One of them must exist.
    // https://github.com/torvalds/linux/blob/v6.12/include/linux/fs.h#L1040
    // https://github.com/torvalds/linux/blob/v6.13/include/linux/file_ref.h#L61
    optional(member("file_f_count", "file", &["f_count"])),
    optional(member("file_f_ref", "file", &["f_ref"])),
    // Syscall arguments as saved at entry (x86_64: di, si, dx, r10, r8, r9 = args 1..6);
    // read at syscall exit through bpf_task_pt_regs().
    // https://github.com/torvalds/linux/blob/v6.12/arch/x86/include/asm/ptrace.h#L59
    member("pt_regs_di", "pt_regs", &["di"]),
    member("pt_regs_si", "pt_regs", &["si"]),
    member("pt_regs_dx", "pt_regs", &["dx"]),
    member("pt_regs_r8", "pt_regs", &["r8"]),
    member("pt_regs_r10", "pt_regs", &["r10"]),
    // https://github.com/torvalds/linux/blob/v6.12/include/linux/path.h#L9
    member("path_mnt", "path", &["mnt"]),
    // https://github.com/torvalds/linux/blob/v6.12/include/linux/path.h#L10
    member("path_dentry", "path", &["dentry"]),
    // https://github.com/torvalds/linux/blob/v6.12/include/linux/dcache.h#L88
    member("dentry_d_parent", "dentry", &["d_parent"]),
    // Inside an anonymous union on 6.18.
    // https://github.com/torvalds/linux/blob/v6.12/include/linux/dcache.h#L89
    member("dentry_d_name", "dentry", &["d_name"]),
    // https://github.com/torvalds/linux/blob/v6.12/include/linux/dcache.h#L90
    member("dentry_d_inode", "dentry", &["d_inode"]),
    // A directory's children, newest first (a renamed dentry is put at the head of its new
    // parent's list): `hlist_head d_children` / `hlist_node d_sib` from 6.8, `list_head
    // d_subdirs` / `list_head d_child` before. The tracepoint backend's rename check reads
    // the head (sensor-ebpf/src/change.rs, `rename_check`); without them every rename counts
    // as a directory rename.
    // https://github.com/torvalds/linux/blob/v6.12/include/linux/dcache.h#L98
    // https://github.com/torvalds/linux/blob/v6.12/fs/dcache.c#L2816
    // https://github.com/torvalds/linux/blob/v6.1/include/linux/dcache.h#L99
    optional(member("dentry_d_children", "dentry", &["d_children", "d_subdirs"])),
    optional(member("dentry_d_sib", "dentry", &["d_sib", "d_child"])),
    // The two dentries of vfs_rename's `struct renamedata` (the fentry backend tells a
    // directory rename from a file rename with them; without them every rename counts).
    // https://github.com/torvalds/linux/blob/v6.12/include/linux/fs.h#L1977
    optional(member("renamedata_old_dentry", "renamedata", &["old_dentry"])),
    optional(member("renamedata_new_dentry", "renamedata", &["new_dentry"])),
    // After an anonymous union holding the hash and length.
    // https://github.com/torvalds/linux/blob/v6.12/include/linux/dcache.h#L56
    member("qstr_name", "qstr", &["name"]),
    // https://github.com/torvalds/linux/blob/v6.12/include/linux/fs.h#L686
    member("inode_i_ino", "inode", &["i_ino"]),
    // https://github.com/torvalds/linux/blob/v6.12/include/linux/fs.h#L678
    member("inode_i_sb", "inode", &["i_sb"]),
    // File type and permission bits, link count (in an anonymous union with `__i_nlink`)
    // and size, reported with file.delete/rename/link/truncate.
    // https://github.com/torvalds/linux/blob/v6.12/include/linux/fs.h#L670
    member("inode_i_mode", "inode", &["i_mode"]),
    // https://github.com/torvalds/linux/blob/v6.12/include/linux/fs.h#L697
    member("inode_i_nlink", "inode", &["i_nlink"]),
    // https://github.com/torvalds/linux/blob/v6.12/include/linux/fs.h#L705
    member("inode_i_size", "inode", &["i_size"]),
    // Kernel-internal dev_t encoding (major << 20 | minor).
    // https://github.com/torvalds/linux/blob/v6.12/include/linux/fs.h#L1308
    member("super_block_s_dev", "super_block", &["s_dev"]),
    // `unsigned long s_magic`: tells a `/proc` file (`PROC_SUPER_MAGIC`, kernel/procfs.rs).
    // https://github.com/torvalds/linux/blob/v6.12/include/linux/fs.h#L1315
    member("super_block_s_magic", "super_block", &["s_magic"]),
    // A map descriptor's `file->private_data` is its `struct bpf_map`: id and name name it in
    // `sensor.tamper` `bpf_map` records.
    // https://github.com/torvalds/linux/blob/v6.12/include/linux/bpf.h#L283
    member("bpf_map_id", "bpf_map", &["id"]),
    // https://github.com/torvalds/linux/blob/v6.12/include/linux/bpf.h#L287
    member("bpf_map_name", "bpf_map", &["name"]),
    // io_uring requests (optional: kernels without CONFIG_IO_URING).
    // https://github.com/torvalds/linux/blob/v6.12/include/linux/io_uring_types.h#L589
    optional(member("io_kiocb_file", "io_kiocb", &["file"])),
    // https://github.com/torvalds/linux/blob/v6.12/include/linux/io_uring_types.h#L594
    optional(member("io_kiocb_opcode", "io_kiocb", &["opcode"])),
    // `struct mount` is private to fs/ but is in BTF.
    // https://github.com/torvalds/linux/blob/v6.12/fs/mount.h#L39
    member("mount_mnt", "mount", &["mnt"]),
    // https://github.com/torvalds/linux/blob/v6.12/fs/mount.h#L37
    member("mount_mnt_parent", "mount", &["mnt_parent"]),
    // https://github.com/torvalds/linux/blob/v6.12/fs/mount.h#L38
    member("mount_mnt_mountpoint", "mount", &["mnt_mountpoint"]),
    // https://github.com/torvalds/linux/blob/v6.12/include/linux/mount.h#L70
    member("vfsmount_mnt_root", "vfsmount", &["mnt_root"]),
    // https://github.com/torvalds/linux/blob/v6.12/include/linux/net.h#L146
    member("socket_sk", "socket", &["sk"]),
    // A socket's inode number keys the taint of a unix socket's receive side together with
    // its `struct sock` address, which the slab hands to the next socket once this one is
    // freed (sensor-ebpf/src/taint.rs). `SOCK_INODE()`: the inode follows the socket in
    // `struct socket_alloc`, whose first member is the socket.
    // https://github.com/torvalds/linux/blob/v6.12/include/net/sock.h#L512
    member("sock_sk_socket", "sock", &["sk_socket"]),
    // https://github.com/torvalds/linux/blob/v6.12/include/net/sock.h#L1576
    member("socket_alloc_vfs_inode", "socket_alloc", &["vfs_inode"]),
    // https://github.com/torvalds/linux/blob/v6.12/include/net/sock.h#L171
    member("sock_common_skc_family", "sock_common", &["skc_family"]),
    // In the anonymous union/struct skc_addrpair.
    // https://github.com/torvalds/linux/blob/v6.12/include/net/sock.h#L154
    member("sock_common_skc_daddr", "sock_common", &["skc_daddr"]),
    // https://github.com/torvalds/linux/blob/v6.12/include/net/sock.h#L155
    member("sock_common_skc_rcv_saddr", "sock_common", &["skc_rcv_saddr"]),
    // In the anonymous union/struct skc_portpair.
    // https://github.com/torvalds/linux/blob/v6.12/include/net/sock.h#L166
    member("sock_common_skc_dport", "sock_common", &["skc_dport"]),
    // https://github.com/torvalds/linux/blob/v6.12/include/net/sock.h#L167
    member("sock_common_skc_num", "sock_common", &["skc_num"]),
    // Only with CONFIG_IPV6 (required: the programs handle IPv6 sockets).
    // https://github.com/torvalds/linux/blob/v6.12/include/net/sock.h#L186
    member("sock_common_skc_v6_daddr", "sock_common", &["skc_v6_daddr"]),
    // https://github.com/torvalds/linux/blob/v6.12/include/net/sock.h#L187
    member("sock_common_skc_v6_rcv_saddr", "sock_common", &["skc_v6_rcv_saddr"]),
    // Plain u16 since 5.6 (a bitfield before, which fails here). The programs also assume
    // sock.__sk_common at offset 0 (sock.h#L350); `resolve` checks it.
    // https://github.com/torvalds/linux/blob/v6.12/include/net/sock.h#L510
    member("sock_sk_protocol", "sock", &["sk_protocol"]),
    // https://github.com/torvalds/linux/blob/v6.12/include/net/sock.h#L509
    member("sock_sk_type", "sock", &["sk_type"]),
    // `unsigned long sk_flags`; bit SOCK_DONE (1) is set by tcp_fin() when the peer's FIN
    // arrives, which tcp_sock.bytes_received counts as one byte of sequence space. Newer
    // kernels moved it into sock_common as skc_flags (`#define sk_flags
    // __sk_common.skc_flags`); the programs use whichever this kernel has.
    // https://github.com/torvalds/linux/blob/v6.12/include/net/sock.h#L455
    // https://github.com/torvalds/linux/blob/v6.12/net/ipv4/tcp_input.c#L4570
    optional(member("sock_sk_flags", "sock", &["sk_flags"])),
    optional(member("sock_common_skc_flags", "sock_common", &["skc_flags"])),
    // The connected peer of a unix socket: taint written to one end is read at the other
    // (sensor-ebpf/src/taint.rs). Optional: absent when unix sockets are a module.
    // https://github.com/torvalds/linux/blob/v6.12/include/net/af_unix.h#L60
    optional(member("unix_sock_peer", "unix_sock", &["peer"])),
    // Optional: without them close records carry 0 bytes.
    // https://github.com/torvalds/linux/blob/v6.12/include/linux/tcp.h#L258
    optional(member("tcp_sock_bytes_sent", "tcp_sock", &["bytes_sent"])),
    // https://github.com/torvalds/linux/blob/v6.12/include/linux/tcp.h#L309
    optional(member("tcp_sock_bytes_received", "tcp_sock", &["bytes_received"])),
    // Retransmitted payload, subtracted from bytes_sent.
    // https://github.com/torvalds/linux/blob/v6.12/include/linux/tcp.h#L262
    optional(member("tcp_sock_bytes_retrans", "tcp_sock", &["bytes_retrans"])),
    // Defined for every syscall exit event by SYSCALL_FIELD(long, ret); `resolve` checks
    // that every event in SYS_EXIT_EVENTS agrees.
    // https://github.com/torvalds/linux/blob/v6.12/kernel/trace/trace_syscalls.c#L509
    tracepoint("tp_sys_exit_ret", "syscalls", SYS_EXIT_REFERENCE, "ret"),
    // The new name of link(2) and linkat(2) (the tracepoint backend's file.link).
    // https://github.com/torvalds/linux/blob/v6.12/fs/namei.c#L4778
    // link(2) itself is x86-only (arm64 has only linkat).
    optional(tracepoint("tp_sys_enter_link_newname", "syscalls", "sys_enter_link", "newname")),
    // https://github.com/torvalds/linux/blob/v6.12/fs/namei.c#L4771
    tracepoint("tp_sys_enter_linkat_newdfd", "syscalls", "sys_enter_linkat", "newdfd"),
    tracepoint("tp_sys_enter_linkat_newname", "syscalls", "sys_enter_linkat", "newname"),
    // https://github.com/torvalds/linux/blob/v6.12/fs/open.c#L1575 (SYSCALL_DEFINE1(close, unsigned int, fd))
    tracepoint("tp_sys_enter_close_fd", "syscalls", "sys_enter_close", "fd"),
    // https://github.com/torvalds/linux/blob/v6.12/include/trace/events/io_uring.h#L305
    optional(tracepoint("tp_io_uring_complete_req", "io_uring", "io_uring_complete", "req")),
    optional(tracepoint("tp_io_uring_complete_res", "io_uring", "io_uring_complete", "res")),
    // https://github.com/torvalds/linux/blob/v6.12/include/trace/events/sock.h#L148
    tracepoint("tp_inet_sock_set_state_skaddr", "sock", INET_SOCK_SET_STATE, "skaddr"),
    // https://github.com/torvalds/linux/blob/v6.12/include/trace/events/sock.h#L149
    tracepoint("tp_inet_sock_set_state_oldstate", "sock", INET_SOCK_SET_STATE, "oldstate"),
    // https://github.com/torvalds/linux/blob/v6.12/include/trace/events/sock.h#L150
    tracepoint("tp_inet_sock_set_state_newstate", "sock", INET_SOCK_SET_STATE, "newstate"),
    // https://github.com/torvalds/linux/blob/v6.12/include/trace/events/sock.h#L151
    tracepoint("tp_inet_sock_set_state_sport", "sock", INET_SOCK_SET_STATE, "sport"),
    // https://github.com/torvalds/linux/blob/v6.12/include/trace/events/sock.h#L152
    tracepoint("tp_inet_sock_set_state_dport", "sock", INET_SOCK_SET_STATE, "dport"),
    // https://github.com/torvalds/linux/blob/v6.12/include/trace/events/sock.h#L153
    tracepoint("tp_inet_sock_set_state_family", "sock", INET_SOCK_SET_STATE, "family"),
    // https://github.com/torvalds/linux/blob/v6.12/include/trace/events/sock.h#L154
    tracepoint("tp_inet_sock_set_state_protocol", "sock", INET_SOCK_SET_STATE, "protocol"),
    // https://github.com/torvalds/linux/blob/v6.12/include/trace/events/sock.h#L155
    tracepoint("tp_inet_sock_set_state_saddr", "sock", INET_SOCK_SET_STATE, "saddr"),
    // https://github.com/torvalds/linux/blob/v6.12/include/trace/events/sock.h#L156
    tracepoint("tp_inet_sock_set_state_daddr", "sock", INET_SOCK_SET_STATE, "daddr"),
    // https://github.com/torvalds/linux/blob/v6.12/include/trace/events/sock.h#L157
    tracepoint("tp_inet_sock_set_state_saddr_v6", "sock", INET_SOCK_SET_STATE, "saddr_v6"),
    // https://github.com/torvalds/linux/blob/v6.12/include/trace/events/sock.h#L158
    tracepoint("tp_inet_sock_set_state_daddr_v6", "sock", INET_SOCK_SET_STATE, "daddr_v6"),
];

/// Why a field could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum Reason {
    /// The struct itself is not in BTF.
    #[error("the struct is not in this kernel's BTF")]
    NoStruct,
    /// The struct has none of the member spellings.
    #[error("not in this kernel's BTF{}", also_tried(.0))]
    NoMember(&'static [&'static str]),
    /// Neither spelling of a field that changed name between kernels exists.
    #[error("neither spelling is in this kernel's BTF")]
    NoAlternative,
    /// The member's type lacks the expected inner member (e.g. `kuid_t` without `val`).
    #[error("its type has no member `{0}`")]
    NoInner(&'static str),
    /// The member is a bitfield, which the programs cannot read with a byte offset.
    #[error("is a {0}-bit bitfield; the programs can only read byte-aligned fields")]
    Bitfield(u32),
    /// The BTF is inconsistent around this member.
    #[error(transparent)]
    Btf(#[from] BtfError),
    /// The tracepoint or its field is missing, or its format could not be read.
    #[error(transparent)]
    TraceFs(#[from] TraceFsError),
    /// The field must be at offset 0 and is not.
    #[error("is at offset {0}, but the programs assume offset 0")]
    NotAtZero(u32),
    /// A syscall exit tracepoint disagrees with [`SYS_EXIT_REFERENCE`] on `ret`.
    #[error(
        "is at offset {offset}, but at {expected} in syscalls/{SYS_EXIT_REFERENCE}; \
         the programs use one offset for every exit tracepoint"
    )]
    Mismatch {
        /// Offset in this event.
        offset: u32,
        /// Offset in the reference event.
        expected: u32,
    },
}

fn also_tried(members: &[&str]) -> String {
    match members {
        [_, rest @ ..] if !rest.is_empty() => format!(" (also tried {})", rest.join(", ")),
        _ => String::new(),
    }
}

impl Reason {
    /// Whether the field simply does not exist here (as opposed to an unexpected layout).
    fn is_absent(&self) -> bool {
        matches!(
            self,
            Self::NoStruct
                | Self::NoMember(_)
                | Self::TraceFs(TraceFsError::NoEvent { .. } | TraceFsError::NoField { .. })
        )
    }
}

/// One field that could not be resolved.
#[derive(Debug, thiserror::Error)]
#[error("{location}: {reason}")]
pub struct Problem {
    /// `struct.member` or `category/event.field`.
    pub location: String,
    /// Why.
    pub reason: Reason,
}

/// Errors from [`resolve`].
#[derive(Debug, thiserror::Error)]
pub enum OffsetsError {
    /// Required fields are missing or laid out in a way the programs cannot handle.
    #[error("the kernel lacks fields the sensor needs: {}", list(problems))]
    Unresolved {
        /// Every problem found, in table order.
        problems: Vec<Problem>,
    },
}

fn list(problems: &[Problem]) -> String {
    problems.iter().map(Problem::to_string).collect::<Vec<_>>().join("; ")
}

/// The resolved offsets.
#[derive(Clone, Debug)]
pub struct Resolved {
    /// Offsets to hand to the programs; optional fields may be `MISSING`.
    pub offsets: KernelOffsets,
    /// Optional [`KernelOffsets`] fields this kernel lacks.
    pub missing_optional: Vec<&'static str>,
}

/// Resolves every [`SPECS`] entry against the running kernel.
pub fn resolve(btf: &Btf, tracefs: &TraceFs) -> Result<Resolved, OffsetsError> {
    let mut offsets = KernelOffsets::missing();
    let mut missing_optional = Vec::new();
    let mut problems = Vec::new();
    for spec in SPECS {
        let resolved = match spec.source {
            Source::Member { struct_name, members, inner } => {
                resolve_member(btf, struct_name, members, inner)
            }
            Source::Tracepoint { category, event, name } => {
                tracefs.field(category, event, name).map(|f| f.offset).map_err(Reason::from)
            }
        };
        match resolved {
            Ok(offset) => {
                let field = spec.field;
                let known = offsets.set(field, offset);
                debug_assert!(known, "SPECS names {field}, which KernelOffsets lacks");
                tracing::debug!(field, offset, "Resolved kernel offset.");
            }
            Err(reason) if !spec.required && reason.is_absent() => {
                missing_optional.push(spec.field);
            }
            Err(reason) => problems.push(Problem { location: spec.location(), reason }),
        }
    }
    check_sk_common(btf, &mut problems);
    check_alternatives(&mut missing_optional, &mut problems);
    if offsets.tp_sys_exit_ret != sensor_common::offsets::MISSING {
        check_sys_exit(tracefs, offsets.tp_sys_exit_ret, &mut problems);
    }
    if !problems.is_empty() {
        return Err(OffsetsError::Unresolved { problems });
    }
    Ok(Resolved { offsets, missing_optional })
}

/// Optional fields that are spellings of one thing across kernel versions: the programs use
/// whichever exists. (first, second, whether one of them is required)
const ALTERNATIVES: &[(&str, &str, bool)] =
    &[("file_f_count", "file_f_ref", true), ("sock_sk_flags", "sock_common_skc_flags", false)];

/// Drops an alternative spelling from `missing` when the other one resolved; both absent is
/// a problem when one is required.
fn check_alternatives(missing: &mut Vec<&'static str>, problems: &mut Vec<Problem>) {
    for &(a, b, required) in ALTERNATIVES {
        let both = missing.contains(&a) && missing.contains(&b);
        if both && required {
            problems.push(Problem { location: format!("{a} or {b}"), reason: Reason::NoAlternative });
        }
        if !both {
            missing.retain(|m| *m != a && *m != b);
        }
    }
}

fn resolve_member(
    btf: &Btf,
    struct_name: &str,
    members: &'static [&'static str],
    inner: Option<&'static str>,
) -> Result<u32, Reason> {
    if !btf.has_struct(struct_name) {
        return Err(Reason::NoStruct);
    }
    for &name in members {
        let Some(found) = btf.member_offset(struct_name, name)? else {
            continue;
        };
        if found.is_bitfield() {
            return Err(Reason::Bitfield(found.bitfield_size));
        }
        let Some(inner) = inner else {
            return Ok(found.byte_offset);
        };
        let inside = btf.member_offset_in_type(found.type_id, inner)?.ok_or(Reason::NoInner(inner))?;
        if inside.is_bitfield() {
            return Err(Reason::Bitfield(inside.bitfield_size));
        }
        return Ok(found.byte_offset + inside.byte_offset);
    }
    Err(Reason::NoMember(members))
}

/// The programs treat a `struct sock *` as a `struct sock_common *`.
fn check_sk_common(btf: &Btf, problems: &mut Vec<Problem>) {
    let reason = match resolve_member(btf, "sock", &["__sk_common"], None) {
        Ok(0) => return,
        Ok(offset) => Reason::NotAtZero(offset),
        Err(reason) => reason,
    };
    problems.push(Problem { location: "sock.__sk_common".to_owned(), reason });
}

/// Every exit tracepoint the programs attach to must have `ret` where the reference has it.
fn check_sys_exit(tracefs: &TraceFs, expected: u32, problems: &mut Vec<Problem>) {
    for &event in SYS_EXIT_EVENTS {
        if !tracefs.event_exists("syscalls", event) {
            tracing::debug!(event, "Syscall exit tracepoint absent on this kernel.");
            continue;
        }
        let reason = match tracefs.field("syscalls", event, "ret") {
            Ok(field) if field.offset == expected => continue,
            Ok(field) => Reason::Mismatch { offset: field.offset, expected },
            Err(err) => err.into(),
        };
        problems.push(Problem { location: format!("syscalls/{event}.ret"), reason });
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::path::{Path, PathBuf};

    use sensor_common::offsets::MISSING;

    use super::super::btf::testing::{Builder, Member, STRUCT, TYPEDEF};
    use super::*;

    #[test]
    fn table_covers_every_field_once() {
        let fields: Vec<_> = KernelOffsets::missing().fields().iter().map(|f| f.0).collect();
        let specs: Vec<_> = SPECS.iter().map(|s| s.field).collect();
        assert_eq!(specs, fields);
    }

    /// Changes to the synthetic kernel built from [`SPECS`].
    #[derive(Default)]
    struct Tweaks {
        omit: &'static [&'static str],
        bitfield: &'static [&'static str],
        sk_common_offset: u32,
        accept_ret_offset: Option<u32>,
    }

    /// A fake kernel built from the table: BTF with one struct per struct name (member i at
    /// byte 8 * (i + 1), inner members at 4 inside their wrapper) and a tracefs tree.
    struct Synthetic {
        btf: Btf,
        tracefs: TraceFs,
        expected: KernelOffsets,
        dir: PathBuf,
    }

    impl Drop for Synthetic {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    fn synthetic(name: &str, tweaks: &Tweaks) -> Synthetic {
        let mut b = Builder::new();
        let long = b.int("long", 8, 64);
        let int = b.int("int", 4, 32);
        let mut expected = KernelOffsets::missing();
        let mut structs: Vec<(&str, Vec<Member<'_>>)> = Vec::new();
        for spec in SPECS {
            let Source::Member { struct_name, members, inner } = spec.source else {
                continue;
            };
            if !structs.iter().any(|s| s.0 == struct_name) {
                let first = match struct_name {
                    "sock" => vec![("__sk_common", long, tweaks.sk_common_offset * 8, 0)],
                    _ => vec![],
                };
                structs.push((struct_name, first));
            }
            if tweaks.omit.contains(&spec.field) {
                continue;
            }
            let entry = structs.iter_mut().find(|s| s.0 == struct_name).unwrap();
            let offset = 8 * (entry.1.len() as u32 + 1);
            let ty = match inner {
                Some(inner) => {
                    let wrapper = b.composite(STRUCT, "", 8, &[("pad", int, 0, 0), (inner, int, 32, 0)]);
                    b.modifier(TYPEDEF, "wrapper_t", wrapper)
                }
                None => long,
            };
            let bits = if tweaks.bitfield.contains(&spec.field) { 3 } else { 0 };
            entry.1.push((members[0], ty, offset * 8, bits));
            expected.set(spec.field, offset + if inner.is_some() { 4 } else { 0 });
        }
        for (struct_name, members) in &structs {
            let size = 8 * (members.len() as u32 + 1);
            b.composite(STRUCT, struct_name, size, members);
        }

        let btf = Btf::parse(b.build()).unwrap();

        let dir = std::env::temp_dir().join(format!("mnsensor-offsets-{}-{name}", std::process::id()));
        let mut events: Vec<(&str, &str, Vec<&str>)> =
            SYS_EXIT_EVENTS.iter().map(|e| ("syscalls", *e, vec!["ret"])).collect();
        for spec in SPECS {
            let Source::Tracepoint { category, event, name } = spec.source else {
                continue;
            };
            if !events.iter().any(|e| e.1 == event) {
                events.push((category, event, vec![]));
            }
            let entry = events.iter_mut().find(|e| e.1 == event).unwrap();
            if !tweaks.omit.contains(&spec.field) {
                entry.2.push(name);
            }
        }
        for (category, event, names) in &events {
            let mut text =
                String::from("format:\n\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n");
            for (i, name) in names.iter().enumerate() {
                let mut offset = 8 * (i as u32 + 1);
                if *event == "sys_exit_accept" {
                    offset = tweaks.accept_ret_offset.unwrap_or(offset);
                }
                text += &format!("\tfield:long {name};\toffset:{offset};\tsize:8;\tsigned:1;\n");
                let field =
                    format!("tp_{}_{name}", if *event == SYS_EXIT_REFERENCE { "sys_exit" } else { event });
                expected.set(&field, offset);
            }
            let path = dir.join("events").join(category).join(event);
            std::fs::create_dir_all(&path).unwrap();
            std::fs::write(path.join("format"), text).unwrap();
        }
        Synthetic { btf, tracefs: TraceFs::at(&dir), expected, dir }
    }

    fn error(s: &Synthetic) -> String {
        resolve(&s.btf, &s.tracefs).unwrap_err().to_string()
    }

    #[test]
    fn resolves_a_complete_synthetic_kernel() {
        let s = synthetic("complete", &Tweaks::default());
        let resolved = resolve(&s.btf, &s.tracefs).unwrap();
        assert_eq!(resolved.offsets, s.expected);
        assert!(resolved.missing_optional.is_empty());
        assert_eq!(resolved.offsets.cred_euid % 8, 4, "inner member offset added");
        assert!(resolved.offsets.fields().iter().all(|f| f.1 != MISSING));
    }

    #[test]
    fn names_every_missing_required_field() {
        let tweaks = Tweaks {
            omit: &[
                "task_struct_tgid",
                "dentry_d_name",
                "tp_inet_sock_set_state_saddr_v6",
                "task_struct_loginuid",
            ],
            ..Tweaks::default()
        };
        let err = error(&synthetic("missing", &tweaks));
        assert!(err.contains("task_struct.tgid: not in this kernel's BTF"), "{err}");
        assert!(err.contains("dentry.d_name: not in this kernel's BTF"), "{err}");
        assert!(err.contains("sock/inet_sock_set_state.saddr_v6: "), "{err}");
        assert!(!err.contains("loginuid"), "optional fields are not errors: {err}");
    }

    #[test]
    fn optional_fields_may_be_missing() {
        let tweaks = Tweaks {
            omit: &["task_struct_loginuid", "task_struct_sessionid", "tcp_sock_bytes_sent"],
            ..Tweaks::default()
        };
        let s = synthetic("optional", &tweaks);
        let resolved = resolve(&s.btf, &s.tracefs).unwrap();
        assert_eq!(
            resolved.missing_optional,
            ["task_struct_loginuid", "task_struct_sessionid", "tcp_sock_bytes_sent"]
        );
        assert_eq!(resolved.offsets.task_struct_loginuid, MISSING);
        assert_eq!(resolved.offsets, s.expected);
    }

    #[test]
    fn rejects_layouts_the_programs_cannot_read() {
        let tweaks = Tweaks { bitfield: &["sock_sk_protocol"], ..Tweaks::default() };
        let err = error(&synthetic("bitfield", &tweaks));
        assert!(err.contains("sock.sk_protocol: is a 3-bit bitfield"), "{err}");

        let tweaks = Tweaks { sk_common_offset: 8, ..Tweaks::default() };
        let err = error(&synthetic("sk_common", &tweaks));
        assert!(err.contains("sock.__sk_common: is at offset 8"), "{err}");

        let tweaks = Tweaks { accept_ret_offset: Some(24), ..Tweaks::default() };
        let err = error(&synthetic("accept", &tweaks));
        assert!(err.contains("syscalls/sys_exit_accept.ret: is at offset 24, but at 8"), "{err}");
    }

    #[test]
    fn resolves_the_running_kernel() {
        let path = Path::new("/sys/kernel/btf/vmlinux");
        // SAFETY: geteuid has no preconditions.
        let ok = path.exists() && unsafe { libc::geteuid() } == 0;
        if !crate::test_skip::allowed(ok, &format!("needs root and {}", path.display())) {
            return;
        }
        let start = std::time::Instant::now();
        let btf = Btf::from_file(path).unwrap();
        let parsed = start.elapsed();
        let tracefs = TraceFs::locate().unwrap();
        let resolved = resolve(&btf, &tracefs).unwrap_or_else(|e| panic!("{e}"));
        eprintln!(
            "parse {parsed:?}, parse+resolve {:?}, {} types, missing optional {:?}",
            start.elapsed(),
            btf.type_count(),
            resolved.missing_optional
        );
        let offsets = resolved.offsets;
        eprintln!("{:?}", offsets.fields());
        for spec in SPECS.iter().filter(|s| s.required) {
            let value = offsets.fields().iter().find(|f| f.0 == spec.field).unwrap().1;
            assert_ne!(value, MISSING, "{}", spec.field);
        }
        let task: Vec<u32> = offsets
            .fields()
            .iter()
            .filter(|f| f.0.starts_with("task_struct_") && f.1 != MISSING)
            .map(|f| f.1)
            .collect();
        assert_eq!(task.len(), task.iter().collect::<HashSet<_>>().len(), "{task:?}");
        assert_eq!(offsets.task_struct_tgid, offsets.task_struct_pid + 4);
        assert_eq!(offsets.path_dentry, offsets.path_mnt + 8);
        assert_eq!(offsets.tp_sys_exit_ret, 16);
    }
}
