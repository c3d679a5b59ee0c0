use std::{fs::{self, OpenOptions}, process::Command, time::Duration};
use mnsensor_tests::*;
use serde_json::Value;

fn run(steps: &str) -> usize {
    let tree = TempDir::new(&std::env::var("LABEL").unwrap());
    let p = tree.mkdir("protected");
    let _p2 = tree.mkdir("protected2");
    let outside = tree.mkdir("outside");
    let a = tree.write("protected2/a.txt", "a\n");
    let b = tree.write("outside/b.txt", "b\n");
    let sync = tree.write("protected/sync.txt", "sync\n");
    let mut sensor = Sensor::start(&["--protect", path_str(&p)]);
    for s in steps.split(',') {
        match s {
            "a" => drop(fs::File::open(&a).unwrap()),
            "b" => drop(OpenOptions::new().write(true).open(&b).unwrap()),
            "new" => drop(OpenOptions::new().write(true).create_new(true).open(outside.join("new.txt")).unwrap()),
            "dir" => drop(fs::File::open(&outside).unwrap()),
            "dirfd" => { let c = mnsensor_tests::util::c_path(&outside); let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDONLY|libc::O_DIRECTORY|libc::O_CLOEXEC) }; assert!(fd >= 0); unsafe { libc::close(fd) }; }
            "cat" => { let mut c = ChildGuard::spawn(Command::new(find_tool("cat")).arg(&b).stdout(std::process::Stdio::null())); c.wait_timeout(Duration::from_secs(5)); }
            "sleep" => std::thread::sleep(Duration::from_millis(500)),
            "sync" => drop(fs::File::open(&sync).unwrap()),
            _ => panic!(),
        }
    }
    std::thread::sleep(Duration::from_secs(2));
    let n = sensor.matching(|e| is(e, "file.open") && e.get("file.path").and_then(Value::as_str) == Some(path_str(&sync))).len();
    sensor.stop();
    let n2 = sensor.matching(|e| is(e, "file.open") && e.get("file.path").and_then(Value::as_str) == Some(path_str(&sync))).len();
    eprintln!("DBG {steps}: running {n} after-stop {n2}");
    n2
}

#[test]
fn dbg() {
    for steps in std::env::var("STEPS").unwrap().split(' ') { run(steps); }
}
