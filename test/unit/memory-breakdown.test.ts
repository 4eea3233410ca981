import { describe, expect, test } from "bun:test";
import { CaptureAssembler } from "../../src/capture/walk-capture.ts";
import { memoryBreakdown } from "../../src/gobinary/memstats-layout.ts";
import { parseRecord } from "../../src/stream/records.ts";

const MiB = 1 << 20;

describe("the memory breakdown", () => {
  test("an M record is read strictly, its three inStacks generations signed", () => {
    expect(parseRecord("M 42 1048576 4194304 0 65536 -8192 0")).toEqual({
      tag: "M",
      pid: 42,
      heapInUse: 1048576,
      mappedReady: 4194304,
      stacksSys: 0,
      inStacks: [65536, -8192, 0],
    });
    expect(() => parseRecord("M 42 1048576 4194304 0 65536 -8192")).toThrow();
    expect(() => parseRecord("M 42 1048576 0x10 0 65536 -8192 0")).toThrow();
  });

  test("the capture sums the generations, keeping the first M record of a process", () => {
    const a = new CaptureAssembler();
    a.add(parseRecord("M 7 100 1000 8 300 -44 0"));
    a.add(parseRecord("M 7 999 9999 9 9 9 9"));
    expect(a.capture(7).memStats).toEqual({ heapInUse: 100, mappedReady: 1000, stacksSys: 8, inStacks: 256 });
  });

  test("figures: HeapInuse, StackSys, the rest of Sys - HeapReleased, and RSS less all that", () => {
    const words = { heapInUse: 100 * MiB, mappedReady: 130 * MiB, stacksSys: 1 * MiB, inStacks: 19 * MiB };
    expect(memoryBreakdown(words, 200 * MiB)).toEqual({
      heap_inuse_bytes: 100 * MiB,
      stacks_bytes: 20 * MiB,
      runtime_other_bytes: 10 * MiB,
      not_go_bytes: 70 * MiB,
    });
    // No RSS (a pid-only oom:mark_victim): the runtime's figures stay, outside Go is unknown.
    expect(memoryBreakdown(words, null).not_go_bytes).toBeNull();
    // A torn read that contradicts itself is no figure at all, never a guess.
    expect(memoryBreakdown({ ...words, mappedReady: 50 * MiB }, 200 * MiB)).toEqual({
      heap_inuse_bytes: null,
      stacks_bytes: null,
      runtime_other_bytes: null,
      not_go_bytes: null,
    });
    expect(memoryBreakdown(undefined, 200 * MiB).heap_inuse_bytes).toBeNull();
  });
});
