import { readFileSync } from "node:fs";
import { z } from "zod";
import type { GoTarget } from "../gobinary/go-target.ts";
import { HEAP_STATS_GENERATIONS, type MemStatsWords } from "../gobinary/memstats-layout.ts";
import { pageSize } from "../process/libc.ts";
import type { ProcessMemory } from "../process/memory.ts";

/**
 * The words of a live process's runtime memory statistics (memstats-layout.ts), read
 * through /proc/PID/mem without stopping it; undefined when its release or binary has no
 * known layout, or a read fails.
 */
export function readLiveMemStats(mem: ProcessMemory, target: GoTarget, bias: number): MemStatsWords | undefined {
  const l = target.memStats;
  if (!l) return undefined;
  const gc = Number(l.gcController) + bias;
  const ms = Number(l.memstats) + bias;
  const heapInUse = mem.u64(gc + l.heapInUse);
  const mappedReady = mem.u64(gc + l.mappedReady);
  const stacksSys = mem.u64(ms + l.stacksSys);
  let inStacks = 0;
  for (let i = 0; i < HEAP_STATS_GENERATIONS; i++) {
    // A generation's delta is signed: stacks freed in one, allocated in another.
    const b = mem.read(ms + l.heapStats + i * l.deltaSize + l.inStacks, 8);
    if (!b) return undefined;
    inStacks += Number(b.readBigInt64LE(0));
  }
  if (heapInUse === undefined || mappedReady === undefined || stacksSys === undefined) return undefined;
  return { heapInUse, mappedReady, stacksSys, inStacks };
}

/** /proc/PID/statm: size resident shared text lib data dt, in pages. */
const Statm = z.string().regex(/^\d+ \d+ \d+ \d+ \d+ \d+ \d+\n?$/);

/** Resident memory (anon + file + shmem) of a live process, in bytes; null if it cannot be read. */
export function readRssBytes(pid: number): number | null {
  try {
    const fields = Statm.parse(readFileSync(`/proc/${pid}/statm`, "utf8"))
      .trim()
      .split(" ");
    return Number(fields[1]) * pageSize();
  } catch {
    return null;
  }
}
