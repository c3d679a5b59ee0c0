//! Block devices behind a filesystem: is it removable, and what is it (vendor, model,
//! serial)? Read from sysfs and udev's database each time it is asked, so a device plugged
//! in and mounted after the sensor started is seen as it is now.
//!
//! Layout relied on (Documentation/ABI/stable/sysfs-block,
//! <https://github.com/torvalds/linux/blob/v6.12/Documentation/ABI/stable/sysfs-block>):
//! `/sys/dev/block/MAJ:MIN` links to the device's directory; a partition's directory has a
//! `partition` file and sits inside its disk's directory; the disk has `removable` (`1` for
//! removable media), `device/vendor` and `device/model` (SCSI/USB storage), and a `serial`
//! somewhere up its device chain (USB devices, `device/serial` for NVMe and MMC). udev keeps
//! `E:ID_SERIAL=` in `/run/udev/data/bMAJ:MIN`
//! (<https://github.com/systemd/systemd/blob/v252/src/libsystemd/sd-device/device-private.c>).
use std::{
    fs,
    path::{Path, PathBuf},
};

/// The environment variable of the test hook: `MAJ:MIN` device numbers, comma separated,
/// that count as removable whatever sysfs says. Only for tests (a loop device's `removable`
/// is 0 and read-only); docs/detections.md.
pub const TEST_REMOVABLE_ENV: &str = "MNSENSOR_TEST_REMOVABLE_DEVICES";

/// A removable block device a filesystem lives on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Removable {
    /// The disk's kernel name (`sdb`), and the partition's when the filesystem is on one.
    pub disk: String,
    pub partition: Option<String>,
    /// `MAJ:MIN` of the filesystem's device.
    pub number: String,
    pub vendor: Option<String>,
    pub model: Option<String>,
    pub serial: Option<String>,
    /// Where it is mounted (the first mount of the device in /proc/self/mountinfo).
    pub mount_point: Option<String>,
    /// `sysfs` (the disk's `removable` flag) or `test_hook` ([`TEST_REMOVABLE_ENV`]).
    pub marked_by: &'static str,
}

/// Resolves block devices; `extra` are the test hook's device numbers.
#[derive(Clone, Debug, Default)]
pub struct Resolver {
    pub sys: PathBuf,
    pub udev: PathBuf,
    pub mountinfo: PathBuf,
    pub extra: Vec<(u32, u32)>,
}

impl Resolver {
    /// The host's sysfs and udev database, with the test hook read from the environment.
    pub fn host() -> Self {
        let extra = std::env::var(TEST_REMOVABLE_ENV).map(|v| parse_numbers(&v)).unwrap_or_default();
        Self {
            sys: PathBuf::from("/sys"),
            udev: PathBuf::from("/run/udev/data"),
            mountinfo: PathBuf::from("/proc/self/mountinfo"),
            extra,
        }
    }

    /// The removable device behind the kernel device number `dev` (`MAJOR << 20 | MINOR`,
    /// a superblock's `s_dev`), or `None` when it is not a removable block device.
    pub fn removable(&self, dev: u32) -> Option<Removable> {
        let (major, minor) = (dev >> 20, dev & 0xf_ffff);
        let node = fs::canonicalize(self.sys.join(format!("dev/block/{major}:{minor}"))).ok()?;
        let is_partition = node.join("partition").exists();
        let disk_dir = if is_partition { node.parent()?.to_path_buf() } else { node.clone() };
        let disk_number = read(&disk_dir.join("dev"));
        let hooked = |n: Option<(u32, u32)>| n.is_some_and(|n| self.extra.contains(&n));
        let marked_by = if read(&disk_dir.join("removable")).as_deref() == Some("1") {
            "sysfs"
        } else if hooked(Some((major, minor))) || hooked(disk_number.as_deref().and_then(parse_number)) {
            "test_hook"
        } else {
            return None;
        };
        let name = |p: &Path| p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let device = disk_dir.join("device");
        Some(Removable {
            disk: name(&disk_dir),
            partition: is_partition.then(|| name(&node)),
            number: format!("{major}:{minor}"),
            vendor: read(&device.join("vendor")),
            model: read(&device.join("model")).or_else(|| read(&device.join("name"))),
            serial: self.serial(major, minor, &disk_dir),
            mount_point: self.mount_point(major, minor),
            marked_by,
        })
    }

    /// udev's `ID_SERIAL` (of the partition, then the disk), else the first `serial` file
    /// up the disk's device chain.
    fn serial(&self, major: u32, minor: u32, disk_dir: &Path) -> Option<String> {
        let disk = read(&disk_dir.join("dev"));
        let numbers = [Some(format!("{major}:{minor}")), disk];
        for n in numbers.iter().flatten() {
            let data = fs::read_to_string(self.udev.join(format!("b{n}"))).unwrap_or_default();
            if let Some(s) = data.lines().find_map(|l| l.strip_prefix("E:ID_SERIAL=")) {
                return Some(s.trim().to_owned());
            }
        }
        let mut dir = fs::canonicalize(disk_dir.join("device")).ok()?;
        for _ in 0..8 {
            if let Some(s) = read(&dir.join("serial")) {
                return Some(s);
            }
            dir = dir.parent()?.to_path_buf();
        }
        None
    }

    fn mount_point(&self, major: u32, minor: u32) -> Option<String> {
        let info = fs::read_to_string(&self.mountinfo).ok()?;
        let want = format!("{major}:{minor}");
        info.lines().find_map(|l| {
            let mut f = l.split(' ');
            let number = f.nth(2)?;
            let point = f.nth(1)?;
            (number == want)
                .then(|| crate::event::path::of_os(crate::protect::unescape_mountinfo(point.as_bytes())))
        })
    }
}

/// A sysfs attribute, trimmed; `None` when absent or empty.
fn read(path: &Path) -> Option<String> {
    let s = fs::read_to_string(path).ok()?;
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_owned())
}

fn parse_number(s: &str) -> Option<(u32, u32)> {
    let (a, b) = s.trim().split_once(':')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// `MAJ:MIN[,MAJ:MIN…]`; malformed entries are ignored.
fn parse_numbers(s: &str) -> Vec<(u32, u32)> {
    s.split(',').filter_map(parse_number).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake sysfs: a USB disk `sdb` (removable) with partition `sdb1`, and `sda` (fixed).
    /// Removed on drop.
    struct Dir(PathBuf);

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn fake(name: &str) -> (Dir, Resolver) {
        let t = Dir(std::env::temp_dir().join(format!("mnsensor-blockdev-{}-{name}", std::process::id())));
        let _ = fs::remove_dir_all(&t.0);
        let root = t.0.as_path();
        let usb = root.join("sys/devices/usb1/1-1");
        let sdb = usb.join("1-1:1.0/host6/target6/6:0:0:0/block/sdb");
        fs::create_dir_all(sdb.join("sdb1")).unwrap();
        let scsi = sdb.parent().unwrap().parent().unwrap();
        std::os::unix::fs::symlink(scsi, sdb.join("device")).unwrap();
        fs::write(scsi.join("vendor"), "Kingston\n").unwrap();
        fs::write(scsi.join("model"), "DataTraveler 3.0\n").unwrap();
        fs::write(usb.join("serial"), "E0D55EA57414\n").unwrap();
        fs::write(sdb.join("removable"), "1\n").unwrap();
        fs::write(sdb.join("dev"), "8:16\n").unwrap();
        fs::write(sdb.join("sdb1/partition"), "1\n").unwrap();
        fs::write(sdb.join("sdb1/dev"), "8:17\n").unwrap();
        let sda = root.join("sys/devices/pci0/ata1/block/sda");
        fs::create_dir_all(&sda).unwrap();
        fs::write(sda.join("removable"), "0\n").unwrap();
        fs::write(sda.join("dev"), "8:0\n").unwrap();
        fs::create_dir_all(root.join("sys/dev/block")).unwrap();
        std::os::unix::fs::symlink(sdb.join("sdb1"), root.join("sys/dev/block/8:17")).unwrap();
        std::os::unix::fs::symlink(&sda, root.join("sys/dev/block/8:0")).unwrap();
        fs::write(
            root.join("mountinfo"),
            "22 1 8:0 / / rw - ext4 /dev/sda rw\n90 22 8:17 / /media/usb\\040stick rw - vfat /dev/sdb1 rw\n",
        )
        .unwrap();
        let r = Resolver {
            sys: root.join("sys"),
            udev: root.join("udev"),
            mountinfo: root.join("mountinfo"),
            extra: Vec::new(),
        };
        (t, r)
    }

    const fn kdev(major: u32, minor: u32) -> u32 {
        major << 20 | minor
    }

    #[test]
    fn partition_of_a_usb_disk_with_identity() {
        let (_t, r) = fake("usb");
        let d = r.removable(kdev(8, 17)).expect("removable");
        assert_eq!(d.disk, "sdb");
        assert_eq!(d.partition.as_deref(), Some("sdb1"));
        assert_eq!(d.number, "8:17");
        assert_eq!(d.vendor.as_deref(), Some("Kingston"));
        assert_eq!(d.model.as_deref(), Some("DataTraveler 3.0"));
        assert_eq!(d.serial.as_deref(), Some("E0D55EA57414"), "from the USB device");
        assert_eq!(d.mount_point.as_deref(), Some("/media/usb stick"));
        assert_eq!(d.marked_by, "sysfs");
        // udev's database wins over sysfs.
        fs::create_dir_all(&r.udev).unwrap();
        fs::write(r.udev.join("b8:17"), "S:disk/by-id/x\nE:ID_SERIAL=Kingston_DT_E0D55EA57414-0:0\n")
            .unwrap();
        let d = r.removable(kdev(8, 17)).unwrap();
        assert_eq!(d.serial.as_deref(), Some("Kingston_DT_E0D55EA57414-0:0"));
    }

    #[test]
    fn fixed_disks_and_unknown_numbers_are_not_removable_unless_hooked() {
        let (_t, mut r) = fake("fixed");
        assert_eq!(r.removable(kdev(8, 0)), None);
        assert_eq!(r.removable(kdev(0, 44)), None, "no block device (tmpfs)");
        r.extra = parse_numbers("8:0, 7:3,bad");
        assert_eq!(r.extra, vec![(8, 0), (7, 3)]);
        let d = r.removable(kdev(8, 0)).expect("hooked");
        assert_eq!(d.marked_by, "test_hook");
        assert_eq!(d.partition, None);
        assert_eq!(d.mount_point.as_deref(), Some("/"));
    }
}
