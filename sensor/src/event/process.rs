//! Process records: exec, fork, exit (kernel half: `sensor-ebpf/src/process.rs`).
use std::{mem::offset_of, sync::Arc};

use sensor_common::event::process::{Exec, Exit, Fork};

use super::{DecodeError, Decoder, Record, attr, basename, path, read_struct, read_struct_prefix};

/// `process.exec`: also updates the process table.
pub fn exec(d: &mut Decoder, bytes: &[u8], rec: &mut Record) -> Result<(), DecodeError> {
    let ev: Box<Exec> = read_struct_prefix(bytes, offset_of!(Exec, data))?;
    let avail = bytes.len() - offset_of!(Exec, data);
    let data = &ev.data[..avail.min(ev.data.len())];
    let (exe_len, argv_len, cwd_len) = (ev.exe_len as usize, ev.argv_len as usize, ev.cwd_len as usize);
    let exe = path::from_kernel(data.get(..exe_len).unwrap_or_default());
    let argv = data.get(exe_len..exe_len + argv_len).unwrap_or_default();
    let args: Vec<String> = argv
        .strip_suffix(&[0])
        .unwrap_or(argv)
        .split(|b| *b == 0)
        .filter(|_| !argv.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let cwd_bytes = data.get(exe_len + argv_len..exe_len + argv_len + cwd_len).unwrap_or_default();
    let task = ev.header.task;
    let exe: Arc<str> = exe.into();
    d.procs.exec(task.tgid, exe.clone(), args.clone().into());
    d.add_task(&task, rec);
    rec.set(attr::PROCESS_EXECUTABLE_PATH, exe.as_ref())
        .set(attr::PROCESS_EXECUTABLE_NAME, basename(&exe))
        .set(attr::PROCESS_COMMAND_LINE, args.join(" "))
        .set(attr::PROCESS_COMMAND_ARGS, args)
        .set(attr::PROCESS_WORKING_DIRECTORY, path::from_kernel(cwd_bytes))
        .set(attr::PROCESS_ATTRIBUTION, "exec")
        .set(attr::FILE_DEVICE, super::file::device(ev.exe_dev))
        .set(attr::FILE_INODE, ev.exe_ino);
    if ev.old_pid != task.tgid {
        rec.set(attr::PROCESS_PREVIOUS_PID, ev.old_pid);
    }
    Ok(())
}

/// `process.fork`: the subject is the child; the parent is the task that forked.
pub fn fork(d: &mut Decoder, bytes: &[u8], rec: &mut Record) -> Result<(), DecodeError> {
    let ev: Fork = read_struct(bytes, 0)?;
    let mut child = ev.header.task;
    child.ppid = child.tgid;
    child.tgid = ev.child_tgid;
    child.tid = ev.child_tid;
    d.procs.fork(ev.header.task.tgid, ev.child_tgid);
    d.add_task(&child, rec);
    d.add_program(ev.child_tgid, rec);
    Ok(())
}

/// `process.exit`.
pub fn exit(d: &mut Decoder, bytes: &[u8], rec: &mut Record) -> Result<(), DecodeError> {
    let ev: Exit = read_struct(bytes, 0)?;
    d.add_task(&ev.header.task, rec);
    d.add_program(ev.header.task.tgid, rec);
    let signal = ev.exit_code & 0x7f;
    if signal == 0 {
        rec.set(attr::PROCESS_EXIT_CODE, (ev.exit_code >> 8) & 0xff);
    } else {
        rec.set(attr::PROCESS_EXIT_SIGNAL, signal)
            .flag(attr::PROCESS_EXIT_CORE_DUMPED, ev.exit_code & 0x80 != 0);
    }
    Ok(())
}
