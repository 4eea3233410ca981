import { dlopen, FFIType, ptr, read, toArrayBuffer } from "bun:ffi";

/**
 * libc's syscall(2) and errno, through bun:ffi, for the few system calls Bun has no API
 * for (pidfd_open, process_madvise, bpf), and mmap. Loaded on first use; undefined where
 * libc.so.6 cannot be loaded (a musl host), and callers then say what they could not do.
 */
function openLibc() {
  return dlopen("libc.so.6", {
    syscall: { args: [FFIType.i64, FFIType.i64, FFIType.i64, FFIType.i64, FFIType.i64, FFIType.i64], returns: FFIType.i64 },
    __errno_location: { args: [], returns: FFIType.ptr },
    clock_gettime: { args: [FFIType.i32, FFIType.ptr], returns: FFIType.i32 },
    sysconf: { args: [FFIType.i32], returns: FFIType.i64 },
    mmap: { args: [FFIType.u64, FFIType.u64, FFIType.i32, FFIType.i32, FFIType.i32, FFIType.i64], returns: FFIType.u64 },
    munmap: { args: [FFIType.u64, FFIType.u64], returns: FFIType.i32 },
  });
}

let libc: ReturnType<typeof openLibc> | null | undefined;

function loaded(): ReturnType<typeof openLibc> | undefined {
  if (libc === undefined) {
    try {
      libc = openLibc();
    } catch {
      libc = null;
    }
  }
  return libc ?? undefined;
}

/** Whether syscall() can be called here. */
export function libcAvailable(): boolean {
  return loaded() !== undefined;
}

/** syscall(nr, ...args): the raw return value, and errno when it is negative. */
export function syscall(nr: bigint, ...args: bigint[]): { ret: number; errno: number } {
  const l = loaded();
  if (!l) return { ret: -1, errno: 38 /* ENOSYS */ };
  const a = [...args, 0n, 0n, 0n, 0n, 0n];
  const ret = Number(l.symbols.syscall(nr, a[0]!, a[1]!, a[2]!, a[3]!, a[4]!));
  const errnoPtr = ret < 0 ? l.symbols.__errno_location() : null;
  return { ret, errno: errnoPtr ? read.i32(errnoPtr, 0) : 0 };
}

const CLOCK_MONOTONIC = 1;

function clockNs(clock: number): bigint | undefined {
  const l = loaded();
  if (!l) return undefined;
  const ts = new BigInt64Array(2);
  if (l.symbols.clock_gettime(clock, ptr(ts)) !== 0) return undefined;
  return ts[0]! * 1_000_000_000n + ts[1]!;
}

/** The kernel's monotonic clock in ns, the clock bpftrace's `nsecs` reads; undefined without libc. */
export function monotonicNs(): bigint | undefined {
  return clockNs(CLOCK_MONOTONIC);
}

/** Nanoseconds as milliseconds, microsecond-exact. */
export function nsToMs(ns: bigint): number {
  return Number(ns / 1000n) / 1000;
}

/** The monotonic clock in ms; undefined without libc. */
export function monotonicMs(): number | undefined {
  const ns = monotonicNs();
  return ns === undefined ? undefined : nsToMs(ns);
}

const SC_PAGESIZE = 30;

/** The kernel's page size (memory cgroup limits are kept in pages); 4096 without libc. */
export function pageSize(): number {
  const size = Number(loaded()?.symbols.sysconf(SC_PAGESIZE) ?? 0);
  return size > 0 ? size : 4096;
}

/** bun:ffi's toArrayBuffer with its deallocator, called as deallocator(ptr, context) once the buffer is collected (not in bun-types). */
type ToArrayBufferFreed = (ptr: number, byteOffset: number, byteLength: number, context: number, deallocator: unknown) => ArrayBuffer;

const PROT_READ = 1;
const MAP_PRIVATE = 2;
const MAP_FAILED = 0xffffffffffffffffn;

/**
 * The first `size` bytes of fd's file, mapped read-only and private; undefined without
 * libc or when mmap fails. munmap is the buffer's deallocator, with the length as its
 * context: the mapping goes when the buffer is collected.
 */
export function mapReadOnly(fd: number, size: number): ArrayBuffer | undefined {
  const l = loaded();
  if (!l) return undefined;
  const addr = BigInt(l.symbols.mmap(0, size, PROT_READ, MAP_PRIVATE, fd, 0));
  if (addr === MAP_FAILED) return undefined;
  return (toArrayBuffer as ToArrayBufferFreed)(Number(addr), 0, size, size, (l.symbols.munmap as unknown as { ptr: number }).ptr);
}
