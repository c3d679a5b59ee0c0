//! mnsensor kernel programs.
//!
//! One file per hook family: [`process`] (exec, fork, exit), [`file`] (opens of protected
//! files), [`io`] (bytes read and written through them, close), [`net`] (TCP connect, accept,
//! close), [`tamper`] (signals, ptrace and bpf calls aimed at the sensor). Shared plumbing:
//! [`kread`] (every read of a kernel struct, at offsets userspace resolved from BTF), [`path`]
//! (in-kernel path walk) and [`emit`] (ring buffer with batched wakeups and loss counters);
//! [`enforce`] carries out the
//! `kill` action.
#![no_std]
#![no_main]
#![cfg_attr(target_arch = "bpf", feature(asm_experimental_arch))]

mod change;
mod cut;
mod egress;
mod emit;
mod enforce;
mod file;
mod fold;
mod io;
mod kread;
mod lsm;
mod net;
mod path;
mod priority;
mod process;
mod subject;
mod taint;
mod tamper;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects programs that can reach this; it only satisfies the compiler.
    loop {}
}

#[unsafe(no_mangle)]
#[unsafe(link_section = "license")]
static LICENSE: [u8; 4] = *b"GPL\0";
