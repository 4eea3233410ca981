import { describe, expect, test } from "bun:test";
import { gunzipSync } from "node:zlib";
import { Profile } from "pprof-format";
import { EncodedSamples } from "../../src/profile/encoded-samples.ts";
import { sampleValues, type HeapSample } from "../../src/profile/heap-views.ts";
import { LocationTable } from "../../src/profile/location-table.ts";
import { buildPprof, buildPprofParts, encodeProfileGz, type ProfileMeta } from "../../src/profile/pprof.ts";
import type { SourceFrame, Symbolizer } from "../../src/symbolize/types.ts";

// A made-up binary: the PC before 0x1000+16n is main.fN at line N.
const symbolizer: Symbolizer = {
  frames(pc: bigint): SourceFrame[] {
    const n = (Number(pc) + 1 - 0x1000) / 16;
    return [{ function: `main.f${n}`, file: `pkg${n % 3}/f.go`, line: n, inlined: false }];
  },
};
const text = { start: 0x1000, limit: 0x10000 };
const meta: ProfileMeta = {
  binaryPath: "/bin/made-up",
  buildId: "id",
  mapping: { ...text, offset: 0 },
  memProfileRate: 512 * 1024,
  timeNanos: 1n,
  comments: ["kill"],
};

const stacks = Array.from({ length: 6 }, (_, i) => [0x1010 + 16 * i, 0x1100 + 16 * (i % 2), 0x1200]);
const samples: HeapSample[] = stacks.map((stack, i) => ({ stack, values: [i + 1, 100 * (i + 1), i + 1, 100 * (i + 1), 0, 0, i + 2, 200 * (i + 2)] }));

/** A profile's bytes as what `go tool pprof` reads of it: samples (leaf first, with values) sorted, and the other fields. */
function readBack(gz: Uint8Array) {
  const p = Profile.decode(gunzipSync(gz));
  const st = p.stringTable.strings;
  const fns = new Map(p.function.map((f) => [Number(f.id), st[Number(f.name)]]));
  const locs = new Map(p.location.map((l) => [Number(l.id), l.line.map((ln) => `${fns.get(Number(ln.functionId))}:${ln.line}`).join("+")]));
  return {
    samples: p.sample.map((s) => `${s.locationId.map((id) => locs.get(Number(id))).join(";")} ${s.value.join(",")}`).sort(),
    sampleTypes: p.sampleType.map((t) => `${st[Number(t.type)]}/${st[Number(t.unit)]}`),
    comments: p.comment.map((c) => st[Number(c)]),
    defaultSampleType: st[Number(p.defaultSampleType)],
    period: Number(p.period),
    strings: st.length,
  };
}

describe("samples encoded while the records stream in", () => {
  test("make the profile the samples encoded at death make", () => {
    const plain = encodeProfileGz(buildPprof(samples, meta, symbolizer, new LocationTable(symbolizer, text)));
    const table = new LocationTable(symbolizer, text);
    const encoded = new EncodedSamples(table);
    // Four of six encoded ahead, one of them with values that changed before death.
    for (const s of samples.slice(0, 3)) encoded.add(s.stack, s.values);
    encoded.add(samples[3]!.stack, [9, 9, 9, 9, 0, 0, 9, 9]);
    const parts = buildPprofParts(samples, meta, table, encoded);
    expect({ appended: parts.encodedSamples.length, inProfile: parts.profile.sample.length }).toEqual({ appended: 3, inProfile: 3 });
    expect(readBack(encodeProfileGz(parts.profile, parts.encodedSamples))).toEqual(readBack(plain));
    expect(readBack(plain).samples).toHaveLength(6);
  });

  test("are not used with another table's locations", () => {
    const table = new LocationTable(symbolizer, text);
    const encoded = new EncodedSamples(new LocationTable(symbolizer, text));
    for (const s of samples) encoded.add(s.stack, s.values);
    expect(buildPprofParts(samples, meta, table, encoded).encodedSamples).toHaveLength(0);
  });

  test("a bucket's values as a sample: what heapSamples gives, and none when all are zero", () => {
    const view = { memProfileRate: 1, cycle: 1, recordWords: 16 as const, noGcYet: false };
    const counts = [3, 1, 300, 100, 0, 0, 0, 0, 2, 0, 200, 0, 0, 0, 0, 0];
    expect(sampleValues({ counts, size: 100 }, view)).toEqual([4, 400, 4, 400, 0, 0, 5, 500]);
    expect(sampleValues({ counts: new Array(16).fill(0), size: 100 }, view)).toBeUndefined();
  });
});
