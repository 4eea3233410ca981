import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { gunzipSync } from "node:zlib";
import { Profile, Sample, StringTable, ValueType } from "pprof-format";
import { encodeProfileGz } from "../../src/profile/pprof.ts";

// pprof-format is patched (scripts/patches) so that a number's two 32-bit halves pass
// through module variables, not a new pair, and so that a whole number below 2^32 skips
// the split altogether. These pin the varints it writes for every range the halves take
// and every length the short path gives, so a patch that went wrong could not pass unnoticed.

/** The protobuf varint of n (7 bits a byte, low first; negatives as 64-bit two's complement). */
function varint(n: bigint): number[] {
  let v = BigInt.asUintN(64, n);
  const out: number[] = [];
  do {
    const low = Number(v & 0x7fn);
    v >>= 7n;
    out.push(v ? low | 0x80 : low);
  } while (v);
  return out;
}

const edges = [
  ...[1, 127, 128, 16_383, 16_384, 2 ** 21 - 1, 2 ** 21, 2 ** 28 - 1, 2 ** 28, 2 ** 31 - 1, 2 ** 31, 3_000_000_000, 2 ** 32 - 1],
  ...[2 ** 32, 2 ** 35, 2 ** 49 + 3, Number.MAX_SAFE_INTEGER, -1, -300],
];

describe("pprof-format's varints (patched)", () => {
  test("a value field holds each number's varint, byte for byte", () => {
    for (const n of edges) {
      const bytes = [...new Profile({ period: n, stringTable: new StringTable() }).encode()];
      // The empty string table's one entry (field 6, length 0), then period (field 12).
      expect(bytes).toEqual([0x32, 0x00, 0x60, ...varint(BigInt(n))]);
    }
  });

  test("bigints, as timeNanos is given, encode as the same number would", () => {
    for (const n of [1n, 2n ** 32n, 1_796_465_737_553_000_000n]) {
      const bytes = [...new Profile({ timeNanos: n, stringTable: new StringTable() }).encode()];
      expect(bytes).toEqual([0x32, 0x00, 0x48, ...varint(n)]);
    }
  });

  test("packed samples round-trip through decode, and the lengths written match", () => {
    const positive = edges.filter((n) => n > 0);
    const p = new Profile({
      sampleType: [new ValueType({ type: 1, unit: 2 })],
      sample: positive.map((n, i) => new Sample({ locationId: [i + 1, n], value: [n, 0, n] })),
      stringTable: new StringTable(),
    });
    p.stringTable.dedup("space");
    p.stringTable.dedup("bytes");
    const back = Profile.decode(gunzipSync(encodeProfileGz(p)));
    expect(back.sample.map((s) => s.value.map(Number))).toEqual(positive.map((n) => [n, 0, n]));
    expect(back.sample.map((s) => s.locationId.map(Number))).toEqual(positive.map((n, i) => [i + 1, n]));
  });

  test("the installed pprof-format carries the patch (a version bump must carry it over)", () => {
    const source = readFileSync(Bun.resolveSync("pprof-format", import.meta.dir), "utf8");
    expect(source).toContain("longHi = hi;");
    expect(source).not.toContain("return [hi, lo];");
  });

  test("encodeProfileGz marks the encode and the gzip", () => {
    const steps: string[] = [];
    encodeProfileGz(new Profile({ stringTable: new StringTable() }), (s) => steps.push(s));
    expect(steps).toEqual(["encode", "gzip"]);
  });
});
