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

interface Record4 {
  allocs: number;
  frees: number;
  allocBytes: number;
  freeBytes: number;
}

/**
 * Buckets as heapSamples reads them, with per-cycle byte counts: Go 1.27's 8-word
 * memRecord keeps only {allocs, frees} per cycle (a bucket holds one object size), so
 * the bytes are the counts times the size.
 */
export function withByteCounts(buckets: MemProfileBucket[], recordWords: 16 | 8): MemProfileBucket[] {
  if (recordWords === 16) return buckets;
  return buckets.map((b) => {
    const counts: number[] = [];
    for (let cycle = 0; cycle < 4; cycle++) {
      const allocs = b.counts[cycle * 2]!;
      const frees = b.counts[cycle * 2 + 1]!;
      counts.push(allocs, frees, allocs * b.size, frees * b.size);
    }
    return { ...b, counts };
  });
}

function rec(counts: number[], slot: number): Record4 {
  const o = slot * 4;
  return { allocs: counts[o]!, frees: counts[o + 1]!, allocBytes: counts[o + 2]!, freeBytes: counts[o + 3]! };
}

function sum(...rs: Record4[]): Record4 {
  const out = { allocs: 0, frees: 0, allocBytes: 0, freeBytes: 0 };
  for (const r of rs) {
    out.allocs += r.allocs;
    out.frees += r.frees;
    out.allocBytes += r.allocBytes;
    out.freeBytes += r.freeBytes;
  }
  return out;
}

/**
 * runtime/pprof's scaleHeapSample (runtime/pprof/protomem.go, unchanged from Go 1.19 to
 * 1.27): a bucket sampled at `rate` bytes stands for 1/(1-exp(-avgSize/rate)) times its
 * recorded count and size, converted back with int64(), which truncates: rounding made
 * many stacks one byte or object larger than the program's own profile.
 */
export function scaleHeapSample(count: number, size: number, rate: number): [number, number] {
  if (count <= 0 || size <= 0) return [0, 0];
  if (rate <= 1) return [count, size];
  const avg = size / count;
  const scale = 1 / (1 - Math.exp(-avg / rate));
  return [Math.trunc(count * scale), Math.trunc(size * scale)];
}

/**
 * Turns buckets into samples. `cycle` is the runtime's heap-profile cycle (-1 when
 * unknown, in which case gc_live is active alone).
 */
export function heapSamples(buckets: MemProfileBucket[], memProfileRate: number, cycle: number): HeapSample[] {
  // runtime.MemProfile: if no bucket has active data, no GC has run yet and the
  // runtime folds every cycle in; mirror that so gc_live matches what it would say.
  const noGcYet = buckets.every((b) => b.counts[0] === 0 && b.counts[1] === 0);
  const out: HeapSample[] = [];
  for (const b of buckets) {
    const active = rec(b.counts, 0);
    const futures = [rec(b.counts, 1), rec(b.counts, 2), rec(b.counts, 3)];
    const all = sum(active, ...futures);
    const gcLive = noGcYet ? all : cycle >= 0 ? sum(active, futures[cycle % 3]!) : active;
    const inuse = (r: Record4) => [Math.max(0, r.allocs - r.frees), Math.max(0, r.allocBytes - r.freeBytes)] as const;
    const [inObj, inBytes] = inuse(all);
    const [gcObj, gcBytes] = inuse(gcLive);
    const values = [
      ...scaleHeapSample(inObj, inBytes, memProfileRate),
      ...scaleHeapSample(gcObj, gcBytes, memProfileRate),
      0,
      0,
      ...scaleHeapSample(all.allocs, all.allocBytes, memProfileRate),
    ];
    values[4] = Math.max(0, values[0]! - values[2]!);
    values[5] = Math.max(0, values[1]! - values[3]!);
    if (values.every((v) => v === 0)) continue;
    out.push({ stack: b.stack, values });
  }
  return out;
}
