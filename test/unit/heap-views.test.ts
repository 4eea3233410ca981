import { describe, expect, test } from "bun:test";
import type { MemProfileBucket } from "../../src/gobinary/mem-profile-bucket.ts";
import { VIEW_INDEX, heapSamples, scaleHeapSample } from "../../src/profile/heap-views.ts";

/** counts: active, future[0], future[1], future[2], each [allocs, frees, alloc_bytes, free_bytes]. */
function bucket(counts: number[][]): MemProfileBucket {
  return { address: 0x1000, size: 1024, stack: [0x401000], counts: counts.flat() };
}

describe("scaleHeapSample (runtime/pprof's unsampling)", () => {
  test("rate 1 or no samples leaves values alone", () => {
    expect(scaleHeapSample(3, 300, 1)).toEqual([3, 300]);
    expect(scaleHeapSample(0, 0, 524288)).toEqual([0, 0]);
  });
  test("small objects at the default rate scale up by 1/(1-exp(-avg/rate))", () => {
    const [n, b] = scaleHeapSample(10, 10 * 1024, 512 * 1024);
    const scale = 1 / (1 - Math.exp(-1024 / (512 * 1024)));
    // Truncated, as Go's int64() conversion does.
    expect(n).toBe(Math.trunc(10 * scale));
    expect(b).toBe(Math.trunc(10240 * scale));
    expect(scaleHeapSample(1, 1, 2)).toEqual([2, 2]);
    // 1/(1-exp(-0.5)) = 2.54...: 2, not 3.
    expect(scaleHeapSample(1, 512 * 1024, 1024 * 1024)).toEqual([2, Math.trunc(512 * 1024 * (1 / (1 - Math.exp(-0.5))))]);
  });
});

describe("views", () => {
  const b = bucket([
    [10, 4, 10240, 4096],
    [1, 0, 1024, 0],
    [2, 1, 2048, 1024],
    [4, 0, 4096, 0],
  ]);
  test("inuse counts every cycle; gc_live folds in future[cycle % 3] only", () => {
    const [s] = heapSamples([b], 1, 4, 16); // cycle 4 -> slot 1
    const v = s!.values;
    expect(v[VIEW_INDEX.inuse_objects]).toBe(17 - 5);
    expect(v[VIEW_INDEX.inuse_space]).toBe(17408 - 5120);
    expect(v[VIEW_INDEX.gc_live_objects]).toBe(12 - 5);
    expect(v[VIEW_INDEX.gc_live_space]).toBe(12288 - 5120);
    expect(v[VIEW_INDEX.since_gc_space]).toBe(17408 - 12288);
    expect(v[VIEW_INDEX.alloc_objects]).toBe(17);
    expect(v[VIEW_INDEX.alloc_space]).toBe(17408);
  });
  test("before any GC, gc_live is everything, as runtime.MemProfile reports it", () => {
    const fresh = bucket([
      [0, 0, 0, 0],
      [1, 0, 1024, 0],
      [0, 0, 0, 0],
      [2, 0, 2048, 0],
    ]);
    const [s] = heapSamples([fresh], 1, 0, 16);
    expect(s!.values[VIEW_INDEX.gc_live_space]).toBe(3072);
    expect(s!.values[VIEW_INDEX.since_gc_space]).toBe(0);
  });
  test("unknown cycle: gc_live is the active record", () => {
    const [s] = heapSamples([b], 1, -1, 16);
    expect(s!.values[VIEW_INDEX.gc_live_space]).toBe(10240 - 4096);
  });
});
