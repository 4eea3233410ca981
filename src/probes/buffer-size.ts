import { versionAtLeast, type BpftraceVersion } from "./bpftrace-host.ts";
import type { WalkLimits } from "./walk-templates.ts";

/**
 * Bytes one record takes in bpftrace's output buffer: an 8-byte header, the printf id,
 * then the arguments at natural alignment (measured on 0.23: a C line is 184 bytes,
 * an S line 104).
 */
export const COUNTER_RECORD_BYTES = 184;
export const STACK_RECORD_BYTES = 104;
const PAGE = 4096;
/** bpftrace's own default, and our floor. */
export const MIN_PAGES = 64;
/** 64 MiB of locked kernel memory for the shared ring buffer is the most we ask for. */
export const MAX_RING_PAGES = 16384;
/** Per-CPU perf buffers (0.17-0.18): one firing's output is what one CPU must hold. */
export const MAX_PERF_PAGES_PER_CPU = 1024;

function nextPow2(n: number): number {
  let p = 1;
  while (p < n) p *= 2;
  return p;
}

/**
 * BPFTRACE_PERF_RB_PAGES for a walk of about `buckets` buckets.
 *
 * - 0.19+: one ring buffer shared by all CPUs. A walk prints every bucket's counters
 *   first and stacks after, newest first; the buffer is sized for all counters with
 *   half again as margin plus the stack lines of a fifth of the buckets (older
 *   stacks come from the live mirror, so losing them costs nothing).
 * - 0.17-0.18: a perf buffer per CPU. A firing runs on one CPU and prints at most
 *   its loop bounds, so each CPU's buffer holds one firing's worst case, whatever the
 *   bucket count: memory grows with CPUs only by that fixed amount.
 */
export function bufferPages(version: BpftraceVersion, buckets: number, limits: Pick<WalkLimits, "counterIterations" | "stackIterations">, stackLinesPerBucket = 3): number {
  if (versionAtLeast(version, 0, 19)) {
    const bytes = buckets * COUNTER_RECORD_BYTES * 1.5 + (buckets / 5) * stackLinesPerBucket * STACK_RECORD_BYTES;
    return Math.min(MAX_RING_PAGES, Math.max(MIN_PAGES, nextPow2(Math.ceil(bytes / PAGE))));
  }
  const perFiring = limits.counterIterations * (COUNTER_RECORD_BYTES + 16) + limits.stackIterations * (STACK_RECORD_BYTES + 16);
  return Math.min(MAX_PERF_PAGES_PER_CPU, Math.max(MIN_PAGES, nextPow2(Math.ceil(perFiring / PAGE))));
}

/** How many buckets a buffer of `pages` holds before counters could be lost (0.19+). */
export function bucketCapacity(version: BpftraceVersion, pages: number): number {
  if (!versionAtLeast(version, 0, 19)) return Number.POSITIVE_INFINITY;
  return Math.floor((pages * PAGE) / (COUNTER_RECORD_BYTES * 1.5));
}
