import { ptr } from "bun:ffi";
import { closeSync } from "node:fs";
import { libcAvailable, syscall } from "./libc.ts";
import { readMaps } from "./memory.ts";

/**
 * bpftrace maps LLVM and Clang (about 70 MB resident on 0.17) to compile its script,
 * and never runs them again once the probes are attached. Asking the kernel to page
 * those mappings out (process_madvise(MADV_PAGEOUT), Linux 5.10+) gives that memory
 * back to the host that oomprof is guarding; were bpftrace to need a page again (a
 * relaunch compiles in a new process anyway), the kernel reads it back from the file.
 * Only clean file pages go: private dirty pages cannot without swap, and pages another
 * process also maps (a second bpftrace) are skipped by the kernel.
 */
const COMPILER_LIBRARY = /\/lib(LLVM|clang)[^/]*$/;

// Generic syscall numbers: the same on x86-64 and arm64.
const SYS_PIDFD_OPEN = 434n;
const SYS_PROCESS_MADVISE = 440n;
const MADV_PAGEOUT = 21n;

/** Pages out pid's compiler libraries; returns the bytes advised, or why nothing was. */
export function pageOutCompiler(pid: number): { bytes: number } | { error: string } {
  if (!libcAvailable()) return { error: "libc.so.6 could not be loaded" };
  let ranges;
  try {
    ranges = readMaps(pid).filter((m) => m.inode !== 0 && COMPILER_LIBRARY.test(m.path));
  } catch (e) {
    return { error: (e as Error).message };
  }
  const pidfd = syscall(SYS_PIDFD_OPEN, BigInt(pid)).ret;
  if (pidfd < 0) return { error: "pidfd_open failed" };
  let bytes = 0;
  try {
    const iov = new BigUint64Array(2);
    // One range per call: the kernel stops at the first range it refuses.
    for (const m of ranges) {
      iov[0] = BigInt(m.start);
      iov[1] = BigInt(m.end - m.start);
      const r = syscall(SYS_PROCESS_MADVISE, BigInt(pidfd), BigInt(ptr(iov)), 1n, MADV_PAGEOUT).ret;
      if (r > 0) bytes += r;
    }
  } finally {
    closeSync(pidfd);
  }
  return ranges.length && !bytes ? { error: "process_madvise refused every range (kernel older than 5.10?)" } : { bytes };
}
