import { describe, expect, test } from "bun:test";
import { CaptureAssembler } from "../../src/capture/walk-capture.ts";
import { madeUpCounterEntries, madeUpWalk } from "../../src/cli/warm-up.ts";
import { counterRecords } from "../../src/capture/counter-map.ts";
import { parseBpftraceLine } from "../../src/stream/bpftrace-json.ts";
import { parseRecord } from "../../src/stream/records.ts";

/** The warm-up only warms what a kill runs if its made-up walk takes the path a real one does: whole. */
describe("the warm-up's made-up walk", () => {
  test("parses and assembles into a complete capture of every bucket", () => {
    const a = new CaptureAssembler();
    for (const line of madeUpWalk(500)) {
      const m = parseBpftraceLine(line);
      if (m.type !== "printf") throw new Error(`not a printf line: ${line}`);
      a.add(parseRecord(m.data));
    }
    const c = a.capture(1);
    expect({ complete: c.complete, buckets: c.buckets.length, gaps: c.gaps, walkEnded: c.walkEnded }).toEqual({
      complete: true,
      buckets: 500,
      gaps: [],
      walkEnded: true,
    });
    expect(c.buckets.every((b) => b.stack.length === 16)).toBe(true);
  });

  test("its counter-map entries decode to the C records of its lines (the path bpftrace 0.27+ takes)", () => {
    const lines = madeUpWalk(300)
      .map((l) => parseBpftraceLine(l))
      .flatMap((m) => (m.type === "printf" ? [parseRecord(m.data)] : []))
      .filter((r) => r.tag === "C");
    const { keys, values } = madeUpCounterEntries(300);
    expect(lines).toHaveLength(300);
    expect(counterRecords(keys, values, 300)).toEqual(lines);
  });
});
