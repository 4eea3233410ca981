import { describe, expect, test } from "bun:test";
import { gunzipSync } from "node:zlib";
import { Profile } from "pprof-format";
import { LocationTable } from "../../src/profile/location-table.ts";
import { buildPprof, encodeProfileGz, type ProfileMeta } from "../../src/profile/pprof.ts";
import type { HeapSample } from "../../src/profile/heap-views.ts";
import type { SourceFrame, Symbolizer } from "../../src/symbolize/types.ts";

// A made-up binary: PC 0x1000+16n is in main.fN at line N, except 0x9000 (runtime.mallocgc,
// hidden at a stack's top) and 0x2010, an inlined call whose caller's PC comes next.
const symbolizer: Symbolizer & { calls: number } = {
  calls: 0,
  frames(pc: bigint): SourceFrame[] {
    this.calls++;
    const ret = Number(pc) + 1;
    if (ret === 0x9000) return [{ function: "runtime.mallocgc", file: "runtime/malloc.go", line: 1, inlined: false }];
    if (ret === 0x2010)
      return [
        { function: "main.inner", file: "main.go", line: 7, inlined: true },
        { function: "main.outer", file: "main.go", line: 9, inlined: false },
      ];
    if (ret === 0x2020) return [{ function: "main.outer", file: "main.go", line: 9, inlined: false }];
    const n = (ret - 0x1000) / 16;
    return [{ function: `main.f${n}`, file: `pkg${n % 3}/f.go`, line: n, inlined: false }];
  },
};

const text = { start: 0x1000, limit: 0x10000 };
const meta = (comments: string[]): ProfileMeta => ({
  binaryPath: "/bin/made-up",
  buildId: "id",
  mapping: { ...text, offset: 0 },
  memProfileRate: 512 * 1024,
  timeNanos: 1n,
  comments,
});

const stacks = [
  [0x9000, 0x1010, 0x1020, 0x1030],
  [0x9000, 0x2010, 0x2020, 0x1040],
  [0x1050, 0x1020, 0x1030],
];
const samples: HeapSample[] = stacks.map((stack, i) => ({ stack, values: [i + 1, 100 * (i + 1), i + 1, 100 * (i + 1), 0, 0, i + 2, 200 * (i + 2)] }));

/** Each sample as "function:line;..." leaf first, with its values: what `go tool pprof` reads. */
function readBack(p: Profile): string[] {
  const back = Profile.decode(gunzipSync(encodeProfileGz(p)));
  const st = back.stringTable.strings;
  const fns = new Map(back.function.map((f) => [Number(f.id), st[Number(f.name)]]));
  const locs = new Map(back.location.map((l) => [Number(l.id), l.line.map((ln) => `${fns.get(Number(ln.functionId))}:${ln.line}`).join("+")]));
  return back.sample.map((s) => `${s.locationId.map((id) => locs.get(Number(id))).join(";")} ${s.value.join(",")}`);
}

describe("a location table prepared before death", () => {
  test("gives the profile a fresh one gives, comments and all", () => {
    const prepared = new LocationTable(symbolizer, text);
    prepared.prepare(stacks);
    // An earlier profile from the same table must leave nothing behind in the next one.
    buildPprof(samples, meta(["an earlier profile's comment"]), symbolizer, prepared);
    const fromPrepared = buildPprof(samples, meta(["kill"]), symbolizer, prepared);
    const fresh = buildPprof(samples, meta(["kill"]), symbolizer);
    expect(readBack(fromPrepared)).toEqual(readBack(fresh));
    expect(readBack(fresh)[1]).toBe("main.inner:7+main.outer:9;main.f4:4 2,200,2,200,0,0,3,600");
    const st = Profile.decode(gunzipSync(encodeProfileGz(fromPrepared))).stringTable.strings;
    expect(st).toContain("kill");
    expect(st).not.toContain("an earlier profile's comment");
  });

  test("symbolizes each PC once, and nothing at death for a prepared stack", () => {
    symbolizer.calls = 0;
    const table = new LocationTable(symbolizer, text);
    table.prepare(stacks);
    const before = symbolizer.calls;
    expect(before).toBe(new Set(stacks.flat()).size);
    buildPprof(samples, meta([]), symbolizer, table);
    expect(symbolizer.calls).toBe(before);
    // The same array is the same stack: ids are not worked out again.
    expect(table.stackIds(stacks[0]!)).toBe(table.stackIds(stacks[0]!));
  });

  test("a stack first seen at death is added then", () => {
    const table = new LocationTable(symbolizer, text);
    table.prepare(stacks.slice(0, 1));
    const p = buildPprof(samples, meta([]), symbolizer, table);
    expect(readBack(p)).toEqual(readBack(buildPprof(samples, meta([]), symbolizer)));
  });

  test("without symbols: addresses only, no functions", () => {
    const table = new LocationTable(undefined, text);
    const back = Profile.decode(gunzipSync(encodeProfileGz(buildPprof(samples, meta([]), undefined, table))));
    expect(back.function.length).toBe(0);
    expect(back.location.map((l) => Number(l.address)).sort((a, b) => a - b)).toEqual([...new Set(stacks.flat())].map((pc) => pc - 1).sort((a, b) => a - b));
  });
});
