import type { MemRecordWords } from "../gobinary/bucket-layout.ts";
import type { MemProfileBucket } from "../gobinary/mem-profile-bucket.ts";

/**
 * The views of a Go memory profile at the moment of death, from each bucket's raw
 * memRecord (see src/gobinary/bucket-layout.ts and Go's runtime/mprof.go):
 *
 * - inuse: active + every future cycle — everything not known to be freed at death,
 *   including garbage no GC has collected yet. The default: it sees the last burst.
 * - gc_live: active + future[cycle % 3] — what runtime/pprof would have reported,
 *   live as of the last completed GC (MemProfile flushes that slot before reading).
 * - since_gc: inuse − gc_live — allocated since the last GC and not yet collected.
 * - alloc: every sampled allocation over the process's life.
 */
export const SAMPLE_TYPES = [
  ["inuse_objects", "count"],
  ["inuse_space", "bytes"],
  ["gc_live_objects", "count"],
  ["gc_live_space", "bytes"],
  ["since_gc_objects", "count"],
  ["since_gc_space", "bytes"],
  ["alloc_objects", "count"],
  ["alloc_space", "bytes"],
] as const;
export type SampleTypeName = (typeof SAMPLE_TYPES)[number][0];
export const DEFAULT_SAMPLE_TYPE: SampleTypeName = "inuse_space";
export const VIEW_INDEX = Object.fromEntries(SAMPLE_TYPES.map(([n], i) => [n, i])) as Record<SampleTypeName, number>;

/** One bucket's values in SAMPLE_TYPES order, already scaled to estimate real totals. */
export interface HeapSample {
  stack: number[];
  values: number[];
}

/**
 * One memRecord slot (0: active, 1-3: future cycles) is [allocs, frees, alloc bytes,
 * free bytes]. Go 1.27's 8-word memRecord keeps only {allocs, frees} per cycle (a bucket
 * holds one object size), so its bytes are the counts times the size. Read a word at a
 * time: this runs for every bucket at death, and tuples cost 100,000 allocations there.
 */
function slotWord(b: MemProfileBucket, recordWords: MemRecordWords, slot: number, word: 0 | 1 | 2 | 3): number {
  if (recordWords === 16) return b.counts[slot * 4 + word]!;
  const count = b.counts[slot * 2 + (word & 1)]!;
  return word < 2 ? count : count * b.size;
}

/**
 * runtime/pprof's scaleHeapSample (runtime/pprof/protomem.go, unchanged from Go 1.19 to
 * 1.27): a bucket sampled at `rate` bytes stands for 1/(1-exp(-avgSize/rate)) times its
 * recorded count and size, converted back with int64(), which truncates: rounding made
 * many stacks one byte or object larger than the program's own profile.
 */
export function scaleHeapSample(count: number, size: number, rate: number): [number, number] {
  const out = [0, 0];
  scaleInto(out, 0, count, size, rate);
  return out as [number, number];
}

/** scaleHeapSample, written at out[at] and out[at + 1]. */
function scaleInto(out: number[], at: number, count: number, size: number, rate: number): void {
  if (count <= 0 || size <= 0) {
    out[at] = 0;
    out[at + 1] = 0;
  } else if (rate <= 1) {
    out[at] = count;
    out[at + 1] = size;
  } else {
    const scale = 1 / (1 - Math.exp(-size / count / rate));
    out[at] = Math.trunc(count * scale);
    out[at + 1] = Math.trunc(size * scale);
  }
}

/**
 * Turns buckets into samples. `cycle` is the runtime's heap-profile cycle (-1 when
 * unknown, in which case gc_live is active alone); `recordWords` the binary's memRecord
 * layout (8: Go 1.27's counts-only records). It sums in place: it runs over every
 * bucket at death.
 */
export function heapSamples(buckets: MemProfileBucket[], memProfileRate: number, cycle: number, recordWords: MemRecordWords): HeapSample[] {
  // runtime.MemProfile: if no bucket has active data, no GC has run yet and the
  // runtime folds every cycle in; mirror that so gc_live matches what it would say.
  const noGcYet = buckets.every((b) => b.counts[0] === 0 && b.counts[1] === 0);
  const view = { memProfileRate, cycle, recordWords, noGcYet };
  const out: HeapSample[] = [];
  for (const b of buckets) {
    const values = sampleValues(b, view);
    if (values) out.push({ stack: b.stack, values });
  }
  return out;
}

/** How a bucket's counters become a sample's values: the process's rate and cycle, its record layout, and whether a GC has run. */
interface SampleView {
  memProfileRate: number;
  cycle: number;
  recordWords: MemRecordWords;
  /** No bucket has active data (see heapSamples): every cycle counts as live. */
  noGcYet: boolean;
}

/** One bucket's values in SAMPLE_TYPES order, or undefined when they are all zero (runtime/pprof leaves such a bucket out). */
function sampleValues(b: MemProfileBucket, view: SampleView): number[] | undefined {
  const { memProfileRate, cycle, recordWords, noGcYet } = view;
  // gc_live: active + future[cycle % 3], the slot MemProfile flushes before reading.
  const liveSlot = cycle >= 0 ? 1 + (cycle % 3) : 0;
  let allocs = 0;
  let frees = 0;
  let allocBytes = 0;
  let freeBytes = 0;
  let liveAllocs = 0;
  let liveFrees = 0;
  let liveAllocBytes = 0;
  let liveFreeBytes = 0;
  for (let slot = 0; slot < 4; slot++) {
    const a = slotWord(b, recordWords, slot, 0);
    const f = slotWord(b, recordWords, slot, 1);
    const ab = slotWord(b, recordWords, slot, 2);
    const fb = slotWord(b, recordWords, slot, 3);
    allocs += a;
    frees += f;
    allocBytes += ab;
    freeBytes += fb;
    if (noGcYet || slot === 0 || slot === liveSlot) {
      liveAllocs += a;
      liveFrees += f;
      liveAllocBytes += ab;
      liveFreeBytes += fb;
    }
  }
  const values = [0, 0, 0, 0, 0, 0, 0, 0];
  scaleInto(values, 0, Math.max(0, allocs - frees), Math.max(0, allocBytes - freeBytes), memProfileRate);
  scaleInto(values, 2, Math.max(0, liveAllocs - liveFrees), Math.max(0, liveAllocBytes - liveFreeBytes), memProfileRate);
  scaleInto(values, 6, allocs, allocBytes, memProfileRate);
  values[4] = Math.max(0, values[0]! - values[2]!);
  values[5] = Math.max(0, values[1]! - values[3]!);
  return values.every((v) => v === 0) ? undefined : values;
}
