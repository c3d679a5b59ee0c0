//! cgroup v2 facts the egress programs need.

use std::path::Path;

/// The depth of the cgroup v2 directory `path` below its hierarchy's root (parents on the
/// same file system with a `cgroup.procs`) and its cgroup id: the directory's inode number
/// (`cgroup_id()` is the kernfs node id, <https://github.com/torvalds/linux/blob/v6.12/include/linux/cgroup.h>,
/// which is the inode number, `kernfs_ino()` in <https://github.com/torvalds/linux/blob/v6.12/fs/kernfs/inode.c>).
pub fn level_and_id(path: &Path) -> std::io::Result<(u32, u64)> {
    use std::os::unix::fs::MetadataExt as _;
    let meta = std::fs::metadata(path)?;
    let mut level = 0;
    let mut dir = path.canonicalize()?;
    while let Some(parent) = dir.parent() {
        let same_fs = std::fs::metadata(parent).is_ok_and(|m| m.dev() == meta.dev());
        if !same_fs || !parent.join("cgroup.procs").exists() {
            break;
        }
        level += 1;
        dir = parent.to_path_buf();
    }
    Ok((level, meta.ino()))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt as _;

    use super::*;

    #[test]
    fn the_root_is_level_0_and_its_id_is_its_inode() {
        let root = &crate::egress::cgroup_v2(Path::new("/sys/fs/cgroup"));
        let ino = std::fs::metadata(root).unwrap().ino();
        assert_eq!(level_and_id(root).unwrap(), (0, ino));
        assert!(level_and_id(Path::new("/nonexistent/cgroup")).is_err());
    }
}
