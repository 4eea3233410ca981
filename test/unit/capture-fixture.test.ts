import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { gunzipSync } from "node:zlib";
import { Profile } from "pprof-format";
import { CaptureAssembler } from "../../src/capture/walk-capture.ts";
import { WALK_COUNT_WORDS } from "../../src/gobinary/bucket-layout.ts";
import { heapSamples } from "../../src/profile/heap-views.ts";
import { buildPprof, encodeProfileGz } from "../../src/profile/pprof.ts";
import { parseBpftraceLine } from "../../src/stream/bpftrace-json.ts";
import { parseRecord } from "../../src/stream/records.ts";

// Recorded from a real `oomprof run --limit 64M` of test/go/leaker (Go 1.19, bpftrace 0.17).
// Its C lines were recorded with the memRecord's 16 words and rewritten to today's 8
// counts (the byte words were checked to be the counts times the bucket's size).
const FIXTURE = new URL("../fixtures/leaker-go1.19-bpftrace0.17.ndjson", import.meta.url);

function assemble(lines: string[]) {
  const a = new CaptureAssembler();
  let pid = 0;
  for (const line of lines) {
    const m = parseBpftraceLine(line);
    if (m.type !== "printf") continue;
    const r = parseRecord(m.data);
    if (r.tag === "V") pid = r.pid;
    a.add(r);
  }
  return a.capture(pid);
}

describe("capture assembly from a recorded stream", () => {
  const lines = readFileSync(FIXTURE, "utf8").trim().split("\n");

  test("the walk is complete and every bucket has its whole stack", () => {
    const c = assemble(lines);
    expect(c.victim?.comm).toBe("leaker");
    expect(c.complete).toBe(true);
    expect(c.walkEnded).toBe(true);
    expect(c.buckets.length).toBeGreaterThanOrEqual(2);
    for (const b of c.buckets) expect(b.stack.length).toBeGreaterThan(0);
  });

  test("duplicated lines (two threads walking at once) change nothing", () => {
    const once = assemble(lines);
    const twice = assemble([...lines, ...lines.filter((l) => l.includes('"C ') || l.includes('"S '))]);
    expect(twice.buckets).toEqual(once.buckets);
  });

  test("C lines three to a printf, those past the list's end (bucket 0), assemble the same", () => {
    // As the while walk prints them; the session splits a printf's data into records.
    const counters = lines.filter((l) => parseBpftraceLine(l).type === "printf" && /"data": ?"C /.test(l));
    const data = counters.map((l) => (parseBpftraceLine(l) as { data: string }).data);
    expect(data.length).toBeGreaterThanOrEqual(2);
    const past = `C ${/^C (\d+)/.exec(data[0]!)![1]} 0 0 0 0 ${Array(8).fill(0).join(" ")}\n`;
    // The list's end after the last printf's third, second or first line.
    for (const first of [1, 2, 3]) {
      const groups: string[][] = [data.slice(0, first)];
      for (let i = first; i < data.length; i += 3) groups.push(data.slice(i, i + 3));
      const last = groups.at(-1)!;
      while (last.length < 3) last.push(past);
      const paired = groups.map((g) => JSON.stringify({ type: "printf", data: g.join("") }));
      const rest = lines.filter((l) => !counters.includes(l));
      const a = new CaptureAssembler();
      let pid = 0;
      for (const line of [...paired, ...rest]) {
        const m = parseBpftraceLine(line);
        if (m.type !== "printf") continue;
        for (const text of m.data.split("\n").filter(Boolean)) {
          const r = parseRecord(text);
          if (r.tag === "V") pid = r.pid;
          a.add(r);
        }
      }
      const c = a.capture(pid);
      expect(c.complete).toBe(true);
      expect(c.buckets).toEqual(assemble(lines).buckets);
      expect(c.buckets.some((b) => b.address === 0)).toBe(false);
    }
  });

  test("a lost stack line makes the capture partial, and says so", () => {
    const dropped = lines.filter((l, i) => !(l.includes('"S ') && i === lines.findIndex((x) => x.includes('"S '))));
    const c = assemble(dropped);
    expect(c.complete).toBe(false);
    expect(c.gaps.join(" ")).toContain("partial stacks");
  });

  test("a walk cut short is detected from the list, not from the end marker", () => {
    const firstC = lines.findIndex((l) => l.includes('"C '));
    const c = assemble(lines.filter((_, i) => i !== firstC + 1));
    expect(c.complete).toBe(false);
    expect(c.gaps.join(" ")).toContain("stopped after");
  });

  test("the profile encodes and decodes with the right sample types and period", () => {
    const c = assemble(lines);
    const samples = heapSamples(c.buckets, c.header!.memProfileRate, c.header!.cycle, WALK_COUNT_WORDS);
    const p = buildPprof(samples, {
      binaryPath: "/tmp/leaker",
      buildId: "x",
      mapping: { start: 0x400000, limit: 0x500000, offset: 0 },
      memProfileRate: c.header!.memProfileRate,
      timeNanos: 1n,
      comments: ["test"],
    });
    const back = Profile.decode(gunzipSync(encodeProfileGz(p)));
    const st = back.stringTable.strings;
    expect(back.sampleType.map((t) => st[Number(t.type)])).toEqual([
      "inuse_objects",
      "inuse_space",
      "gc_live_objects",
      "gc_live_space",
      "since_gc_objects",
      "since_gc_space",
      "alloc_objects",
      "alloc_space",
    ]);
    expect(st[Number(back.defaultSampleType)]).toBe("inuse_space");
    expect(Number(back.period)).toBe(524288);
    expect(back.sample.length).toBe(samples.length);
    // Locations hold the call instruction (return PC - 1), inside the mapping.
    for (const loc of back.location) expect(Number(loc.mappingId)).toBe(1);
  });
});

describe("stack gaps", () => {
  test("a missing middle chunk of a deep stack is a gap, and a mirrored copy fills it", async () => {
    const { CaptureAssembler } = await import("../../src/capture/walk-capture.ts");
    const a = new CaptureAssembler();
    const counts = Array.from({ length: 8 }, () => "1").join(" ");
    a.add(parseRecord("H 7 0 0 a0 512 1"));
    a.add(parseRecord(`C 7 a0 0 20 64 ${counts}`));
    a.add(parseRecord("S 7 a0 0 1 2 3 4 5 6 7 8"));
    a.add(parseRecord("S 7 a0 16 11 12 13 14 15 16 17 18"));
    const c = a.capture(7);
    expect(c.complete).toBe(false);
    const full = Array.from({ length: 20 }, (_, i) => i + 1);
    const mirrored = new Map([[0xa0, { address: 0xa0, size: 64, stack: full, counts: [] }]]);
    const m = a.capture(7, mirrored);
    expect(m.complete).toBe(true);
    expect(m.buckets[0]!.stack).toEqual(full);
  });
});

describe("the bucket chain", () => {
  const counts = Array.from({ length: 8 }, () => "1").join(" ");
  test("a list that loops is cut where it comes back, and says so", () => {
    const a = new CaptureAssembler();
    a.add(parseRecord("H 7 0 0 a0 512 1"));
    for (const [at, next] of [
      ["a0", "b0"],
      ["b0", "c0"],
      ["c0", "b0"],
    ])
      a.add(parseRecord(`C 7 ${at} ${next} 0 64 ${counts}`));
    const c = a.capture(7);
    expect(c.buckets.map((b) => b.address)).toEqual([0xa0, 0xb0, 0xc0]);
    expect(c.complete).toBe(false);
    expect(c.gaps).toEqual(["the bucket list loops"]);
  });

  test("a whole list takes the mirror's stacks where no stack line came", () => {
    const a = new CaptureAssembler();
    a.add(parseRecord("H 7 0 0 a0 512 1"));
    a.add(parseRecord(`C 7 a0 b0 2 64 ${counts}`));
    a.add(parseRecord(`C 7 b0 0 2 64 ${counts}`));
    a.add(parseRecord("S 7 b0 0 21 22 0 0 0 0 0 0"));
    const mirrored = new Map([
      [0xa0, { address: 0xa0, size: 64, stack: [0x11, 0x12], counts: [] }],
      [0xb0, { address: 0xb0, size: 64, stack: [0x21, 0x22], counts: [] }],
    ]);
    const c = a.capture(7, mirrored);
    expect(c.complete).toBe(true);
    // The mirror's own arrays, where the prepared locations are found.
    expect(c.buckets[0]!.stack).toBe(mirrored.get(0xa0)!.stack);
    expect(c.buckets[1]!.stack).toBe(mirrored.get(0xb0)!.stack);
    expect(a.capture(7).buckets.map((b) => b.stack)).toEqual([[], [0x21, 0x22]]);
  });
});
