#!/bin/sh
# PID 1 of the `cargo xtask bench --vm` initramfs (built by xtask/src/bench/vm.rs). Mounts
# what the sensor needs, runs the guest half of the bench (`xtask bench guest`), which prints
# its result on the console as `BENCHVM-JSON` lines, and powers off.
export PATH=/bin:/usr/sbin HOME=/root
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
mount -t tracefs tracefs /sys/kernel/tracing
mount -t securityfs securityfs /sys/kernel/security
mount -t bpf bpf /sys/fs/bpf
mount -t cgroup2 cgroup2 /sys/fs/cgroup
mkdir -p /tmp/audit /run /var/run /var/log/audit
ip link set lo up
ulimit -l unlimited
echo "VMINFO kernel=$(cat /proc/sys/kernel/osrelease) lsm=$(cat /sys/kernel/security/lsm)"
cd /tmp
# shellcheck disable=SC2046 # the arguments are words
/bin/xtask bench guest $(cat /etc/vmbench-args)
rc=$?
echo
echo "BENCHVM-EXIT $rc"
poweroff -f
