import { ptr } from "bun:ffi";
import { describe, expect, test } from "bun:test";
import { chooseReading, CounterHistory, MIN_BASE_AGE_MS, planCounterReads, readCounters, readingIntervalMs } from "../../src/capture/counter-readings.ts";
import { memRecordOffset } from "../../src/gobinary/bucket-layout.ts";
import type { MemProfileBucket } from "../../src/gobinary/mem-profile-bucket.ts";
import { ProcessMemory } from "../../src/process/memory.ts";

describe("how often counters are read", () => {
  test("about six readings per base age, never more often than every 2 s", () => {
    expect(readingIntervalMs(60_000)).toBe(10_000);
    expect(readingIntervalMs(3_000)).toBe(2_000);
    expect(readingIntervalMs(600_000)).toBe(100_000);
  });
});

describe("choosing the base reading", () => {
  const at = (...ms: number[]) => ms.map((atMs) => ({ atMs }));

  test("the reading closest to the base age before death, with its real age", () => {
    const r = chooseReading(at(0, 10_000, 20_000, 30_000, 40_000), 72_000, 60_000);
    expect(r).toEqual({ reading: { atMs: 10_000 }, ageMs: 62_000 });
    expect(chooseReading(at(0, 10_000), 62_000, 60_000)?.ageMs).toBe(62_000);
  });

  test("as close either side: the older one", () => {
    expect(chooseReading(at(0, 10_000), 65_000, 60_000)?.ageMs).toBe(65_000);
  });

  test("none old enough: the oldest, whatever its age", () => {
    expect(chooseReading(at(50_000, 55_000), 60_000, 60_000)?.ageMs).toBe(10_000);
  });

  test("readings after death, or too recent to show growth, are no base", () => {
    expect(chooseReading(at(61_000), 60_000, 3_000)).toBeUndefined();
    expect(chooseReading(at(60_000 - MIN_BASE_AGE_MS + 1), 60_000, 3_000)).toBeUndefined();
    expect(chooseReading([], 60_000, 3_000)).toBeUndefined();
  });
});

describe("planning the reads", () => {
  test("records a few hundred bytes apart share one read; far ones do not; the order is kept", () => {
    const plan = planCounterReads([0x10300, 0x10000, 0x10180, 0x90000], 128, 4096, 1 << 20);
    expect(plan).toEqual([
      {
        address: 0x10000,
        length: 0x300 + 128,
        records: [
          [1, 0],
          [2, 0x180],
          [0, 0x300],
        ],
      },
      { address: 0x90000, length: 128, records: [[3, 0]] },
    ]);
  });

  test("a read never spans more than maxSpan bytes", () => {
    const addresses = Array.from({ length: 100 }, (_, i) => 0x1000 + i * 256);
    const plan = planCounterReads(addresses, 128, 4096, 4096);
    expect(plan.length).toBe(7);
    expect(Math.max(...plan.map((s) => s.length))).toBeLessThanOrEqual(4096);
    expect(plan.flatMap((s) => s.records.map(([i]) => i)).sort((a, b) => a - b)).toEqual(addresses.map((_, i) => i));
  });
});

/**
 * Fake buckets laid out in this process's own memory the way the runtime lays them out
 * (header, stack, memRecord), read back through /proc/self/mem: the real read path.
 */
function fakeBuckets(n: number, nstk: number, words: 16 | 8) {
  const stride = memRecordOffset(nstk) + words * 8 + 16;
  const arena = new BigUint64Array((n * stride) / 8);
  const base = ptr(arena);
  const buckets: MemProfileBucket[] = [];
  const setCounts = (i: number, f: (w: number) => number) => {
    const at = (i * stride + memRecordOffset(nstk)) / 8;
    for (let w = 0; w < words; w++) arena[at + w] = BigInt(f(w));
  };
  for (let i = 0; i < n; i++) {
    buckets.push({ address: base + i * stride, size: 64, stack: Array.from({ length: nstk }, (_, k) => 0x401000 + k), counts: [] });
    setCounts(i, (w) => i * 1000 + w);
  }
  return { arena, buckets, setCounts };
}

describe("reading counters through /proc/PID/mem", () => {
  test("every bucket's record, coalesced or one by one, reads the same, 64-bit values included", () => {
    const { arena, buckets, setCounts } = fakeBuckets(300, 5, 16);
    setCounts(7, (w) => 2 ** 40 + w);
    const mem = new ProcessMemory(process.pid);
    try {
      const addresses = buckets.map((b) => b.address + memRecordOffset(b.stack.length));
      const coalesced = readCounters(mem, planCounterReads(addresses, 128), buckets.length, 16)!;
      const single = readCounters(mem, planCounterReads(addresses, 128, -1), buckets.length, 16)!;
      expect(planCounterReads(addresses, 128).length).toBeLessThan(5);
      expect(Array.from(coalesced)).toEqual(Array.from(single));
      expect(coalesced[3 * 16 + 2]).toBe(3002);
      expect(coalesced[7 * 16 + 1]).toBe(2 ** 40 + 1);
      expect(readCounters(mem, [{ address: 8, length: 128, records: [[0, 0]] }], 1, 16)).toBeUndefined();
    } finally {
      mem.close();
    }
    expect(arena.length).toBeGreaterThan(0);
  });

  test("a history keeps changed readings only, and gives the base's buckets with the counts of then", () => {
    const { arena, buckets, setCounts } = fakeBuckets(50, 3, 8);
    const mem = new ProcessMemory(process.pid);
    try {
      const h = new CounterHistory(3000, 8);
      const state = { memProfileRate: 512 * 1024, cycle: 4 };
      expect(h.startCheck(0)).toBe(true);
      expect(h.startCheck(1000)).toBe(false);
      expect(h.read(mem, buckets, state, 0)).toBeDefined();
      // Nothing changed: nothing kept.
      expect(h.read(mem, buckets, state, 2000)).toBeUndefined();
      setCounts(9, () => 77);
      expect(h.read(mem, buckets, state, 4000)?.counts[9 * 8]).toBe(77);
      expect(h.readings.map((r) => r.atMs)).toEqual([0, 4000]);
      // A new bucket found since: the base covers only those of then.
      const base = h.base([...buckets, { ...buckets[0]!, address: 1 }], 3500)!;
      expect(base.ageMs).toBe(3500);
      expect(base.buckets.length).toBe(50);
      expect(base.buckets[9]!.counts).toEqual(
        Array(8)
          .fill(9000)
          .map((v, w) => v + w),
      );
      expect(base.buckets[9]!.stack).toBe(buckets[9]!.stack);
      expect(base).toMatchObject({ memProfileRate: 512 * 1024, cycle: 4 });
    } finally {
      mem.close();
    }
    expect(arena.length).toBeGreaterThan(0);
  });

  test("at most eight readings are kept, the oldest dropped first", () => {
    const { arena, buckets, setCounts } = fakeBuckets(4, 2, 16);
    const mem = new ProcessMemory(process.pid);
    try {
      const h = new CounterHistory(60_000, 16);
      for (let i = 0; i < 12; i++) {
        setCounts(0, () => i);
        h.read(mem, buckets, { memProfileRate: 1, cycle: i }, i * 10_000);
      }
      expect(h.readings.map((r) => r.atMs / 10_000)).toEqual([4, 5, 6, 7, 8, 9, 10, 11]);
    } finally {
      mem.close();
    }
    expect(arena.length).toBeGreaterThan(0);
  });
});
