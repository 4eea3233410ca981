/**
 * One bucket of a Go program's memory profile (runtime.bucket with its memRecord), as
 * read from the process: by the probes at death, or through /proc/PID/mem while it lives.
 */
export interface MemProfileBucket {
  address: number;
  size: number;
  /** Return PCs, innermost first, as the runtime stored them. */
  stack: number[];
  /** memRecord: active then future[0..2], each [allocs, frees, alloc_bytes, free_bytes]. */
  counts: number[];
}
