#!/bin/sh
# PID 1 of the vm-test initramfs (built by xtask/src/vm/initramfs.rs). Mounts what the
# sensor needs, runs every test executable under /tests, prints one marker line per
# executable for the host to parse (skipping tests print `MNSENSOR-SKIP` lines of their
# own), and powers off. Markers start on a fresh line because
# console output can carry escape codes.
export PATH=/bin HOME=/root
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
mount -t tracefs tracefs /sys/kernel/tracing
mount -t securityfs securityfs /sys/kernel/security
mount -t bpf bpf /sys/fs/bpf
mount -t cgroup2 cgroup2 /sys/fs/cgroup
ip link set lo up
ulimit -l unlimited
export MNSENSOR_BIN=/bin/mnsensor MNSENSOR_TEST_TIMEOUT_SCALE=10 MNSENSOR_VM=1
echo "VMINFO kernel=$(cat /proc/sys/kernel/osrelease) lsm=$(cat /sys/kernel/security/lsm)"
filter=$(cat /etc/vmtest-filter)
cd /tmp
for t in /tests/*; do
    echo "VMINFO running ${t##*/}"
    # shellcheck disable=SC2086 # the filter is one word or nothing
    "$t" --test-threads=1 $filter
    rc=$?
    echo
    echo "VMTEST ${t##*/} exit=$rc"
done
echo
echo "VMTEST DONE"
poweroff -f
