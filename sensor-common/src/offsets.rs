//! Byte offsets of the kernel struct fields and tracepoint fields the programs read.
//!
//! Rust eBPF has no CO-RE field relocations, so userspace computes every offset at startup
//! from the running kernel's BTF (`/sys/kernel/btf/vmlinux`) and from tracefs format files,
//! and hands them to the programs as the read-only global `OFFSETS`. The kernel-facing
//! assumptions (which field, which kernel source) are listed with permalinks in
//! `sensor/src/kernel/offsets.rs`; this struct is only the wire shape.
//!
//! [`MISSING`] marks a field the running kernel does not have. The programs test for it before
//! use; because the global is frozen, the verifier prunes the dead branch.

/// Offset value of a field the running kernel lacks.
pub const MISSING: u32 = u32::MAX;

macro_rules! offsets {
    ($(#[$m:meta])* pub struct $name:ident { $($(#[$fm:meta])* $field:ident,)* }) => {
        $(#[$m])*
        #[repr(C)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub struct $name { $($(#[$fm])* pub $field: u32,)* }

        impl $name {
            /// Every field set to [`MISSING`].
            pub const fn missing() -> Self { Self { $($field: MISSING,)* } }
            /// Field names and values, in declaration order (for diagnostics and tests).
            pub fn fields(&self) -> [(&'static str, u32); [$(stringify!($field)),*].len()] {
                [$((stringify!($field), self.$field)),*]
            }
            /// Sets a field by name; `false` when no such field exists.
            pub fn set(&mut self, name: &str, value: u32) -> bool {
                match name { $(stringify!($field) => { self.$field = value; true })* _ => false }
            }
        }

        impl Default for $name {
            fn default() -> Self { Self::missing() }
        }
    };
}

offsets! {
    /// Offsets in bytes, named `<struct>_<field>` (tracepoint fields `tp_<event>_<field>`).
    pub struct KernelOffsets {
        task_struct_pid,
        task_struct_tgid,
        task_struct_flags,
        task_struct_real_parent,
        task_struct_cred,
        task_struct_loginuid,
        task_struct_sessionid,
        task_struct_files,
        task_struct_fs,
        task_struct_mm,
        task_struct_exit_code,
        task_struct_signal,
        signal_struct_live,
        cred_uid,
        cred_gid,
        cred_euid,
        cred_egid,
        cred_fsuid,
        mm_struct_arg_start,
        mm_struct_arg_end,
        mm_struct_exe_file,
        linux_binprm_file,
        fs_struct_pwd,
        files_struct_fdt,
        fdtable_max_fds,
        fdtable_fd,
        file_f_path,
        file_f_inode,
        file_f_flags,
        file_f_mode,
        file_f_cred,
        file_private_data,
        file_f_count,
        file_f_ref,
        pt_regs_di,
        pt_regs_si,
        pt_regs_dx,
        pt_regs_r8,
        pt_regs_r10,
        path_mnt,
        path_dentry,
        dentry_d_parent,
        dentry_d_name,
        dentry_d_inode,
        dentry_d_children,
        dentry_d_sib,
        renamedata_old_dentry,
        renamedata_new_dentry,
        qstr_name,
        inode_i_ino,
        inode_i_sb,
        inode_i_mode,
        inode_i_nlink,
        inode_i_size,
        super_block_s_dev,
        super_block_s_magic,
        bpf_map_id,
        bpf_map_name,
        io_kiocb_file,
        io_kiocb_opcode,
        mount_mnt,
        mount_mnt_parent,
        mount_mnt_mountpoint,
        vfsmount_mnt_root,
        socket_sk,
        sock_sk_socket,
        socket_alloc_vfs_inode,
        sock_common_skc_family,
        sock_common_skc_daddr,
        sock_common_skc_rcv_saddr,
        sock_common_skc_dport,
        sock_common_skc_num,
        sock_common_skc_v6_daddr,
        sock_common_skc_v6_rcv_saddr,
        sock_sk_protocol,
        sock_sk_type,
        sock_sk_flags,
        sock_common_skc_flags,
        unix_sock_peer,
        tcp_sock_bytes_sent,
        tcp_sock_bytes_received,
        tcp_sock_bytes_retrans,
        tp_sys_exit_ret,
        tp_sys_enter_link_newname,
        tp_sys_enter_linkat_newdfd,
        tp_sys_enter_linkat_newname,
        tp_sys_enter_close_fd,
        tp_io_uring_complete_req,
        tp_io_uring_complete_res,
        tp_inet_sock_set_state_skaddr,
        tp_inet_sock_set_state_oldstate,
        tp_inet_sock_set_state_newstate,
        tp_inet_sock_set_state_sport,
        tp_inet_sock_set_state_dport,
        tp_inet_sock_set_state_family,
        tp_inet_sock_set_state_protocol,
        tp_inet_sock_set_state_saddr,
        tp_inet_sock_set_state_daddr,
        tp_inet_sock_set_state_saddr_v6,
        tp_inet_sock_set_state_daddr_v6,
    }
}

#[cfg(feature = "user")]
// SAFETY: repr(C), only u32 fields.
unsafe impl aya::Pod for KernelOffsets {}
