bpftrace -e 'tracepoint:oom:mark_victim { printf("A=%s|\n", str(args->comm)); printf("D=%s|\n", str((uint8 *)args + (args->comm & 0xffff))); printf("C=%s| pid %d\n", comm, args->pid); }' > /tmp/comm.out 2>&1 &
BP=$!; sleep 3
cg=/sys/fs/cgroup/memory/commtest; mkdir -p $cg; echo 134217728 > $cg/memory.limit_in_bytes
sh -c 'echo $$ > /sys/fs/cgroup/memory/commtest/cgroup.procs; exec /tmp/leaker' >/dev/null
sleep 1; kill -INT $BP; wait $BP; rmdir $cg; grep -v WARN /tmp/comm.out
