import { describe, expect, test } from "bun:test";
import { COUNTER_KEY_BYTES, COUNTER_VALUE_BYTES, counterRecords } from "../../src/capture/counter-map.ts";
import { words } from "../../src/process/bpf-maps.ts";

// Entries as the kernel hands them back from @wc (probes/walk/for-map-counters-map.bt):
// keys {pid, bucket} and values {allnext, nstk, size, 8 counts}, u64 little-endian each.
describe("counter map entries", () => {
  test("become the C records the walk's printf would have given", () => {
    const keys = new Uint8Array([...words(4242, 0x7f0000c000n), ...words(4242, 0xc000a0)]);
    const values = new Uint8Array([...words(0xc000a0, 5, 48, 1, 0, 2, 1, 0, 0, 3, 2), ...words(0, 32, 2 ** 40, 7, 7, 0, 0, 0, 0, 2 ** 33, 1)]);
    expect(keys.byteLength).toBe(2 * COUNTER_KEY_BYTES);
    expect(values.byteLength).toBe(2 * COUNTER_VALUE_BYTES);
    expect(counterRecords(keys, values, 2)).toEqual([
      { tag: "C", pid: 4242, bucket: 0x7f0000c000, allnext: 0xc000a0, nstk: 5, size: 48, counts: [1, 0, 2, 1, 0, 0, 3, 2] },
      { tag: "C", pid: 4242, bucket: 0xc000a0, allnext: 0, nstk: 32, size: 2 ** 40, counts: [7, 7, 0, 0, 0, 0, 2 ** 33, 1] },
    ]);
  });

  test("none, and too few bytes for the count, are told apart", () => {
    expect(counterRecords(new Uint8Array(0), new Uint8Array(0), 0)).toEqual([]);
    expect(() => counterRecords(new Uint8Array(COUNTER_KEY_BYTES), new Uint8Array(COUNTER_VALUE_BYTES - 8), 1)).toThrow("counter map");
  });
});
