import { goMinorVersion } from "./buildinfo.ts";
import type { ElfFile } from "./elf.ts";

/**
 * Where a Go binary keeps the memory statistics runtime.ReadMemStats reports, so oomprof
 * can split a process's RSS into the Go heap, goroutine stacks, the runtime's other
 * memory and what lies outside Go. readmemstats_m (runtime/mstats.go) derives, in every
 * release from 1.19 to 1.27:
 *
 *   HeapInuse            = gcController.heapInUse
 *   StackSys             = Σ memstats.heapStats.stats[0..2].inStacks + memstats.stacks_sys
 *   Sys - HeapReleased   = gcController.mappedReady (readmemstats_m throws if not)
 *
 * heapStats is a ring of three per-generation deltas that writers update in place (there
 * are no per-P copies); ReadMemStats sums all three, and so does oomprof. Reading the
 * words without stopping the world can catch a writer or a runtime/metrics reader
 * between two updates: each word is whole, their sum is off by at most that update.
 *
 * The offsets inside runtime.gcControllerState, runtime.mstats and
 * runtime.heapStatsDelta come from this table, each row read from the DWARF of real
 * builds (test/go/runtime-offsets, checked again by test/unit/runtime-layout.test.ts).
 * Unlisted releases, and binaries without a symbol table, get no figures.
 */
export interface MemStatsLayout {
  /** Link-time address of runtime.gcController. */
  gcController: bigint;
  /** Link-time address of runtime.memstats. */
  memstats: bigint;
  /** gcController.heapInUse (sysMemStat, a uint64). */
  heapInUse: number;
  /** gcController.mappedReady (atomic.Uint64's value). */
  mappedReady: number;
  /** memstats.stacks_sys: stacks the runtime maps outside the heap. */
  stacksSys: number;
  /** memstats.heapStats.stats[0]. */
  heapStats: number;
  /** Size of one runtime.heapStatsDelta (stats has three). */
  deltaSize: number;
  /** heapStatsDelta.inStacks (int64). */
  inStacks: number;
}

/** The ring's length: consistentHeapStats.stats is [3]heapStatsDelta in every listed release. */
export const HEAP_STATS_GENERATIONS = 3;

type Offsets = Omit<MemStatsLayout, "gcController" | "memstats">;

const V19: Offsets = { heapInUse: 304, mappedReady: 344, stacksSys: 3544, heapStats: 0, deltaSize: 1176, inStacks: 24 };
const V21: Offsets = { ...V19, heapInUse: 272, mappedReady: 312 };
// Go 1.25 dropped heapStatsDelta.inPtrScalarBits.
const V25: Offsets = { ...V21, stacksSys: 3520, deltaSize: 1168 };

const FIELD_OFFSETS: Record<number, Offsets> = { 19: V19, 21: V21, 22: V21, 23: V21, 24: V21, 25: V25, 26: V25, 27: V25 };

/** The layout for this binary, or undefined: an unlisted release, or no symbol table. */
export function memStatsLayout(elf: ElfFile, goVersion: string): MemStatsLayout | undefined {
  const minor = goMinorVersion(goVersion);
  const fields = minor === undefined ? undefined : FIELD_OFFSETS[minor];
  if (!fields) return undefined;
  const gcController = elf.symbol("runtime.gcController")?.value;
  const memstats = elf.symbol("runtime.memstats")?.value;
  if (gcController === undefined || memstats === undefined) return undefined;
  return { gcController, memstats, ...fields };
}

/** What the breakdown reads, however it was read (through /proc/PID/mem, or by the probe at death). */
export interface MemStatsWords {
  heapInUse: number;
  mappedReady: number;
  stacksSys: number;
  /** Σ heapStats.stats[i].inStacks (StackInuse). */
  inStacks: number;
}

/** The four figures of oomprof's `memory` object, in bytes; null where unknown. */
export interface MemoryBreakdown {
  heap_inuse_bytes: number | null;
  stacks_bytes: number | null;
  runtime_other_bytes: number | null;
  not_go_bytes: number | null;
}

export const NO_MEMORY_BREAKDOWN: MemoryBreakdown = { heap_inuse_bytes: null, stacks_bytes: null, runtime_other_bytes: null, not_go_bytes: null };

/**
 * heap_inuse_bytes = HeapInuse; stacks_bytes = StackSys; runtime_other_bytes = what else
 * the runtime holds from the OS and has not released (Sys - HeapReleased - HeapInuse -
 * StackSys: HeapIdle - HeapReleased, MSpanSys, MCacheSys, BuckHashSys, GCSys, OtherSys);
 * not_go_bytes = RSS less all three (memory the runtime did not map: cgo, syscall.Mmap,
 * mapped files, the binary's own pages), negative when part of what the runtime mapped
 * is not resident. Words that contradict each other (a torn read) give nulls.
 */
export function memoryBreakdown(w: MemStatsWords | undefined, rssBytes: number | null): MemoryBreakdown {
  if (!w) return NO_MEMORY_BREAKDOWN;
  const stacks = w.inStacks + w.stacksSys;
  const other = w.mappedReady - w.heapInUse - stacks;
  if (w.inStacks < 0 || other < 0) return NO_MEMORY_BREAKDOWN;
  return { heap_inuse_bytes: w.heapInUse, stacks_bytes: stacks, runtime_other_bytes: other, not_go_bytes: rssBytes === null ? null : rssBytes - w.mappedReady };
}
