import { gzipSync } from "node:zlib";
import { Mapping, Profile, Sample, StringTable, ValueType } from "pprof-format";
import type { Symbolizer } from "../symbolize/types.ts";
import { LocationTable } from "./location-table.ts";
import { DEFAULT_SAMPLE_TYPE, SAMPLE_TYPES, type HeapSample } from "./heap-views.ts";

export interface ProfileMeta {
  binaryPath: string;
  buildId: string;
  /** Runtime address range and file offset of the executable text mapping. */
  mapping: { start: number; limit: number; offset: number };
  memProfileRate: number;
  timeNanos: bigint;
  comments: string[];
}

/**
 * Encodes heap samples as a pprof profile. Locations and functions come from `table`
 * (one process's, possibly prepared before its death; a fresh one from the symbolizer
 * when none is given), so `go tool pprof` needs no binary to name frames.
 */
export function buildPprof(samples: HeapSample[], meta: ProfileMeta, symbolizer?: Symbolizer, table?: LocationTable): Profile {
  const locations = table ?? new LocationTable(symbolizer, meta.mapping);
  // Stacks first: one not prepared adds its locations, functions and strings now.
  const sample = samples.map((h) => new Sample({ locationId: locations.stackIds(h.stack), value: h.values }));
  // The table's strings first, in its order: its Function records hold their indices.
  const strings = new StringTable();
  for (let i = 1; i < locations.strings.length; i++) strings.dedup(locations.strings[i]!);
  const s = (v: string) => strings.dedup(v);
  const symbolized = locations.symbolizer !== undefined;
  const mapping = new Mapping({
    id: 1,
    memoryStart: meta.mapping.start,
    memoryLimit: meta.mapping.limit,
    fileOffset: meta.mapping.offset,
    filename: s(meta.binaryPath),
    buildId: s(meta.buildId),
    hasFunctions: symbolized,
    hasFilenames: symbolized,
    hasLineNumbers: symbolized,
    hasInlineFrames: symbolized,
  });
  return new Profile({
    sampleType: SAMPLE_TYPES.map(([type, unit]) => new ValueType({ type: s(type), unit: s(unit) })),
    sample,
    mapping: [mapping],
    location: locations.locations,
    function: locations.functions,
    stringTable: strings,
    timeNanos: meta.timeNanos,
    periodType: new ValueType({ type: s("space"), unit: s("bytes") }),
    period: meta.memProfileRate,
    comment: meta.comments.map(s),
    defaultSampleType: s(DEFAULT_SAMPLE_TYPE),
  });
}

/**
 * The profile's bytes, gzipped at level 1, as runtime/pprof writes its own profiles
 * (proto.go's profileBuilder uses gzip.BestSpeed, Go 1.19-1.27): at 40,000 buckets level
 * 6 cost about 40 ms more at death for a file about a quarter smaller. `mark` is told
 * when each step ends, for the capture's timeline.
 *
 * pprof-format is patched (scripts/patches): unpatched, it allocated a pair for every
 * number it measured or wrote, about 180 MB of garbage for 40,000 samples. The first
 * encoding after an idle spell had to fault that memory in afresh: 250-400 ms of which
 * 190-270 ms system time, against about 100 ms with the patch. The patch also writes and
 * measures a whole number below 2^32 (nearly all of a profile's) without splitting it into
 * 32-bit halves by float division: a real 40,000-bucket profile encoded in 35 ms before,
 * 13-20 ms after, to the same bytes.
 */
export function encodeProfileGz(p: Profile, mark?: (step: string) => void): Uint8Array {
  const raw = p.encode();
  mark?.("encode");
  const gz = gzipSync(raw, { level: 1 });
  mark?.("gzip");
  return gz;
}
