import { cpus } from "node:os";
import { versionAtLeast, type BpftraceVersion } from "./bpftrace-host.ts";

/**
 * Bytes one record takes in bpftrace's output buffer: a header, the printf id, then
 * the arguments at natural alignment (measured on 0.23: a C line is 184 bytes, an S
 * line 104; 0.17's perf records carry a slightly larger header).
 */
export const COUNTER_RECORD_BYTES = 184;
export const STACK_RECORD_BYTES = 104;
const PERF_HEADER_BYTES = 16;
const PAGE = 4096;
/** bpftrace's own default, and our floor. */
export const MIN_PAGES = 64;
/** 64 MiB of locked kernel memory for the shared ring buffer (0.19+) is the most we ask for. */
export const MAX_RING_PAGES = 16384;
/** 0.17-0.18 allocate one buffer per CPU: all of them together stay under this. */
export const MAX_PERF_BYTES_TOTAL = 128 << 20;
export const MAX_PERF_PAGES_PER_CPU = 2048;

function nextPow2(n: number): number {
  let p = 1;
  while (p < n) p *= 2;
  return p;
}

function prevPow2(n: number): number {
  let p = 1;
  while (p * 2 <= n) p *= 2;
  return p;
}

/**
 * Buffer bytes a walk needs per bucket: its counters with half again as margin, plus
 * the stack lines of a fifth of the buckets (older stacks come from the live mirror,
 * and a walk prints stacks after all counters, newest first, so losing the tail costs
 * nothing).
 */
function bytesPerBucket(version: BpftraceVersion, stackLinesPerBucket: number): number {
  const header = versionAtLeast(version, 0, 19) ? 0 : PERF_HEADER_BYTES;
  return (COUNTER_RECORD_BYTES + header) * 1.5 + 0.2 * stackLinesPerBucket * (STACK_RECORD_BYTES + header);
}

/**
 * BPFTRACE_PERF_RB_PAGES for a walk of about `buckets` buckets.
 *
 * - 0.19+: one ring buffer shared by all CPUs, sized for the whole walk.
 * - 0.17-0.18: a perf buffer per CPU. A victim's threads take their turns at the walk
 *   faster than bpftrace drains, often on one CPU, so each CPU's buffer is sized for the
 *   whole walk too, but all CPUs together are capped (MAX_PERF_BYTES_TOTAL): on a large
 *   host a walk too big for one CPU's share relies on its threads being spread out.
 */
export function bufferPages(version: BpftraceVersion, buckets: number, cpuCount = cpus().length, stackLinesPerBucket = 3): number {
  const pages = nextPow2(Math.ceil((buckets * bytesPerBucket(version, stackLinesPerBucket)) / PAGE));
  if (versionAtLeast(version, 0, 19)) return Math.min(MAX_RING_PAGES, Math.max(MIN_PAGES, pages));
  const perCpuCap = Math.max(MIN_PAGES, Math.min(MAX_PERF_PAGES_PER_CPU, prevPow2(MAX_PERF_BYTES_TOTAL / Math.max(1, cpuCount) / PAGE)));
  return Math.min(perCpuCap, Math.max(MIN_PAGES, pages));
}

/** How many buckets a buffer of `pages` holds before counters could be lost. */
export function bucketCapacity(version: BpftraceVersion, pages: number, stackLinesPerBucket = 3): number {
  return Math.floor((pages * PAGE) / bytesPerBucket(version, stackLinesPerBucket));
}
