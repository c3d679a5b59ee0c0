//! Removable media: a protected file (and a staging copy of one) copied to a filesystem on a
//! removable block device gives `detection.removable_media` with the device's identity; an
//! unprotected file does not.
//!
//! The device is a loop device with an ext4 filesystem the test makes and mounts in its own
//! temp dir. A loop device's sysfs `removable` flag is 0 and read-only, so the sensor is told
//! through its test hook (`MNSENSOR_TEST_REMOVABLE_DEVICES`, docs/detections.md) that this
//! device number is removable; everything else (the device's sysfs entry, its mount, the
//! derived-file record from the kernel) is real. The mount and the loop device are removed on
//! drop, also on failure. The egress programs attach only to a child cgroup.

use std::{
    fs,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    process::Command,
    thread,
    time::Duration,
};

use mnsensor_tests::{
    TempDir,
    cgroup::{Cgroup, EgressSetup},
    dev_string, find_tool, get_str, get_u64, is, path_str, run_capture, scaled, show,
};
use serde_json::Value;

/// A loop device with a fresh ext4, mounted on `mount`; unmounted and detached on drop.
struct LoopFs {
    device: String,
    mount: PathBuf,
    mounted: bool,
    _dir: TempDir,
}

impl LoopFs {
    fn new() -> Self {
        let dir = TempDir::new("media");
        let image = dir.join("stick.img");
        fs::File::create(&image).and_then(|f| f.set_len(16 << 20)).expect("image file");
        let mkfs = run_capture(
            Command::new(find_tool("mkfs.ext4")).args(["-q", "-F"]).arg(&image),
            scaled(Duration::from_secs(60)),
        );
        assert!(mkfs.status.success(), "mkfs.ext4: {}", mkfs.stderr);
        let losetup = run_capture(
            Command::new(find_tool("losetup")).args(["--find", "--show"]).arg(&image),
            scaled(Duration::from_secs(30)),
        );
        assert!(losetup.status.success(), "losetup: {}", losetup.stderr);
        let mount = dir.mkdir("mnt");
        let mut fs = Self { device: losetup.stdout.trim().to_owned(), mount, mounted: false, _dir: dir };
        let st = Command::new(find_tool("mount")).arg(&fs.device).arg(&fs.mount).status().expect("mount");
        assert!(st.success(), "mount {} {}: {st}", fs.device, fs.mount.display());
        fs.mounted = true;
        fs
    }

    /// `MAJ:MIN` of the mounted filesystem, as stat(2) gives it.
    fn number(&self) -> String {
        dev_string(fs::metadata(&self.mount).expect("stat mount").dev())
    }
}

impl Drop for LoopFs {
    fn drop(&mut self) {
        if self.mounted {
            let st = Command::new("umount").arg(&self.mount).status();
            if !st.is_ok_and(|s| s.success()) {
                let _ = Command::new("umount").arg("-l").arg(&self.mount).status();
            }
        }
        let _ = Command::new("losetup").arg("-d").arg(&self.device).status();
    }
}

const SIZE: usize = 40_000;

fn media_copy(path: &Path) -> impl Fn(&Value) -> bool + '_ {
    move |e| {
        is(e, "detection.removable_media")
            && e.get("mnsensor.media.file.path").and_then(Value::as_str) == Some(path_str(path))
    }
}

#[test]
fn protected_and_staged_copies_to_removable_media_are_detected_and_others_are_not() {
    let cg = Cgroup::new();
    let stick = LoopFs::new();
    let number = stick.number();
    let mut s =
        EgressSetup::start(&cg, SIZE, "    action: alert\n", &[("MNSENSOR_TEST_REMOVABLE_DEVICES", &number)]);
    let (file, public) = (s.file.clone(), s.public.clone());

    // An unprotected file: no detection.
    let public_copy = stick.mount.join("public.txt");
    assert_eq!(cg.run(&format!("cp {} {}", path_str(&public), path_str(&public_copy))), 0);
    // The protected file itself.
    let copy = stick.mount.join("mynumber.csv");
    assert_eq!(cg.run(&format!("cp {} {}", path_str(&file), path_str(&copy))), 0);
    let d = s.sensor.wait_for("protected file copied to removable media", media_copy(&copy));
    let source = fs::metadata(&file).unwrap();
    let written = fs::metadata(&copy).unwrap().len();
    assert_eq!(written, SIZE as u64);
    assert_eq!(get_u64(&d, "mnsensor.media.file.size"), written, "{}", show(&d));
    assert_eq!(get_u64(&d, "mnsensor.taint.bytes_read"), source.len(), "{}", show(&d));
    assert_eq!(get_u64(&d, "mnsensor.taint.file.inode"), source.ino(), "{}", show(&d));
    assert_eq!(get_u64(&d, "mnsensor.taint.hops"), 0, "cp read the file itself: {}", show(&d));
    assert_eq!(get_str(&d, "mnsensor.process.comm"), "cp");
    // SAFETY: getuid has no preconditions.
    let uid = unsafe { libc::getuid() };
    assert_eq!(get_u64(&d, "process.real_user.id"), u64::from(uid), "{}", show(&d));
    let loop_name = stick.device.trim_start_matches("/dev/");
    assert_eq!(get_str(&d, "mnsensor.media.device.name"), loop_name, "{}", show(&d));
    assert_eq!(get_str(&d, "mnsensor.media.device.number"), number, "{}", show(&d));
    assert_eq!(get_str(&d, "mnsensor.media.mount_point"), path_str(&stick.mount), "{}", show(&d));
    assert_eq!(get_str(&d, "mnsensor.media.removable"), "test_hook", "{}", show(&d));
    assert!(d.get("mnsensor.media.vendor").is_none(), "a loop device has no vendor: {}", show(&d));

    // A staging copy elsewhere (a derived file), then that copy to the stick by another
    // process: still protected data.
    let staged = s.outside.join("stage.csv");
    assert_eq!(cg.run(&format!("cp {} {}", path_str(&file), path_str(&staged))), 0);
    let staged_copy = stick.mount.join("stage.csv");
    assert_eq!(cg.run(&format!("cat {} > {}", path_str(&staged), path_str(&staged_copy))), 0);
    let d = s.sensor.wait_for("staging copy copied to removable media", media_copy(&staged_copy));
    assert_eq!(get_u64(&d, "mnsensor.taint.hops"), 1, "through the derived file: {}", show(&d));
    assert_eq!(get_u64(&d, "mnsensor.media.file.size"), SIZE as u64, "{}", show(&d));
    assert_eq!(get_u64(&d, "mnsensor.taint.file.inode"), source.ino(), "{}", show(&d));

    // Every poll has seen the first copies by now: one detection per file, none for the
    // public file or for the staging copy on the fixed filesystem.
    thread::sleep(scaled(Duration::from_secs(3)));
    assert_eq!(s.sensor.matching(media_copy(&copy)).len(), 1, "one detection per copy");
    assert_eq!(s.sensor.matching(media_copy(&staged_copy)).len(), 1, "one detection per copy");
    assert_eq!(s.sensor.matching(|e| is(e, "detection.removable_media")).len(), 2);
    s.sensor.assert_none("the unprotected file", media_copy(&public_copy));
    s.sensor.stop();
}
