import { describe, expect, test } from "bun:test";
import { parseBpftraceLine } from "../../src/stream/bpftrace-json.ts";
import { parseRecord } from "../../src/stream/records.ts";

describe("bpftrace JSON envelope", () => {
  test("recognises the message types oomprof acts on", () => {
    expect(parseBpftraceLine('{"type": "attached_probes", "data": {"probes": 3}}')).toEqual({ type: "attached_probes", data: { probes: 3 } });
    expect(parseBpftraceLine('{"type": "printf", "data": "E 12\\n"}')).toEqual({ type: "printf", data: "E 12\n" });
    expect(parseBpftraceLine('{"type": "lost_events", "data": {"events": 7}}')).toEqual({ type: "lost_events", data: { events: 7 } });
  });
  test("passes unknown types through and rejects garbage", () => {
    expect(parseBpftraceLine('{"type": "map", "data": {}}').type).toBe("other");
    expect(parseBpftraceLine("Attaching 3 probes...").type).toBe("invalid");
    expect(parseBpftraceLine('{"type": "printf", "data": 5}').type).toBe("other");
  });
});

describe("walk records", () => {
  test("victim record keeps a comm with spaces", () => {
    expect(parseRecord("V 10 11 100 200 3 0 -999 my app\n")).toEqual({
      tag: "V",
      pid: 10,
      triggerPid: 11,
      totalVmKb: 100,
      anonRssKb: 200,
      fileRssKb: 3,
      shmemRssKb: 0,
      oomScoreAdj: -999,
      comm: "my app",
    });
  });
  test("counter record", () => {
    // {allocs, frees} of each of the four cycles: the bytes are the counts times the size.
    const counts = Array.from({ length: 8 }, (_, i) => String(i)).join(" ");
    const r = parseRecord(`C 42 7f00aa 7f00bb 4 49152 ${counts}`);
    expect(r).toMatchObject({ tag: "C", pid: 42, bucket: 0x7f00aa, allnext: 0x7f00bb, nstk: 4, size: 49152, counts: [0, 1, 2, 3, 4, 5, 6, 7] });
    // The 16-word lines of earlier walks are refused, not misread.
    expect(() => parseRecord(`C 42 7f00aa 7f00bb 4 49152 ${counts} ${counts}`)).toThrow("expected 14");
  });
  test("counters-in-map record", () => {
    expect(parseRecord("B 42 40000")).toEqual({ tag: "B", pid: 42, written: 40000 });
    expect(() => parseRecord("B 42")).toThrow();
  });
  test("stack record", () => {
    expect(parseRecord("S 42 7f00aa 8 4b032f 4b0745 4365f2 4602a1 5a 0 438000 0")).toEqual({
      tag: "S",
      pid: 42,
      bucket: 0x7f00aa,
      index: 8,
      pcs: [0x4b032f, 0x4b0745, 0x4365f2, 0x4602a1, 0x5a, 0, 0x438000, 0],
    });
  });
  test.each([
    ["wrong field count", "C 1 2 3"],
    ["non-hex address", "S 42 xyz 0 1 2 3 4 5 6 7 8"],
    ["non-decimal count", "E twelve"],
    ["unknown tag", "Q 1 2"],
    ["empty", ""],
    ["address too long", "H 1 0 0 11111111111111111 5 1"],
  ])("rejects %s", (_, line) => {
    expect(() => parseRecord(line)).toThrow();
  });
});
