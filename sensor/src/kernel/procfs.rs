//! What the `/proc` tamper check (`sensor-ebpf/src/tamper.rs`, `proc_opened`) assumes
//! about procfs: a `/proc` file's superblock has `s_magic == PROC_SUPER_MAGIC`
//! (<https://github.com/torvalds/linux/blob/v6.12/include/uapi/linux/magic.h#L82>), and the
//! per-process files are named `mem` and `environ` in a directory named by the pid in decimal
//! (`/proc/<pid>/mem`, or `/proc/<pid>/task/<tid>/mem`;
//! <https://github.com/torvalds/linux/blob/v6.12/fs/proc/base.c#L3303>). Inode numbers of
//! `/proc` files are not stable, so names are compared, not inodes.
use sensor_common::event::tamper::TamperConfig;

/// `PROC_SUPER_MAGIC`.
pub const PROC_SUPER_MAGIC: u64 = 0x9fa0;

/// The settings of the tamper programs for the sensor whose pid is `tgid`.
pub fn tamper_config(tgid: u32) -> TamperConfig {
    let mut tgid_name = [0u8; 16];
    let digits = tgid.to_string();
    tgid_name[..digits.len()].copy_from_slice(digits.as_bytes());
    TamperConfig { proc_magic: PROC_SUPER_MAGIC, tgid_name }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pid_is_written_in_decimal_and_nul_padded() {
        let c = tamper_config(4_294_967_295);
        assert_eq!(&c.tgid_name[..11], b"4294967295\0");
        assert_eq!(tamper_config(7).tgid_name, *b"7\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0");
    }
}
