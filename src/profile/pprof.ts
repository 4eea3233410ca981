import { gzipSync } from "node:zlib";
import { Function as PFunction, Line, Location, Mapping, Profile, Sample, StringTable, ValueType } from "pprof-format";
import type { SourceFrame, Symbolizer } from "../symbolize/types.ts";
import { pprofStack } from "./stack-rules.ts";
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
 * Encodes heap samples as a pprof profile. Locations carry the call instruction's
 * address (return PC − 1, as runtime/pprof does) and, when a symbolizer is given,
 * Function and Line records, so `go tool pprof` needs no binary to name frames.
 */
export function buildPprof(samples: HeapSample[], meta: ProfileMeta, symbolizer?: Symbolizer): Profile {
  const strings = new StringTable();
  const s = (v: string) => strings.dedup(v);
  const mapping = new Mapping({
    id: 1,
    memoryStart: meta.mapping.start,
    memoryLimit: meta.mapping.limit,
    fileOffset: meta.mapping.offset,
    filename: s(meta.binaryPath),
    buildId: s(meta.buildId),
    hasFunctions: symbolizer !== undefined,
    hasFilenames: symbolizer !== undefined,
    hasLineNumbers: symbolizer !== undefined,
    hasInlineFrames: symbolizer !== undefined,
  });
  const locations = new Map<number, Location>();
  const framesOf = new Map<number, SourceFrame[]>();
  const framesFor = (returnPc: number) => {
    let f = framesOf.get(returnPc);
    if (!f) framesOf.set(returnPc, (f = symbolizer ? symbolizer.frames(BigInt(returnPc - 1)) : []));
    return f;
  };
  const functions = new Map<string, PFunction>();
  const functionId = (f: SourceFrame) => {
    const key = `${f.function}\0${f.file}`;
    let fn = functions.get(key);
    if (!fn) {
      fn = new PFunction({ id: functions.size + 1, name: s(f.function), systemName: s(f.function), filename: s(f.file), startLine: f.startLine ?? 0 });
      functions.set(key, fn);
    }
    return fn.id;
  };
  const locationId = (returnPc: number) => {
    let loc = locations.get(returnPc);
    if (!loc) {
      const address = returnPc - 1;
      const frames = framesFor(returnPc);
      loc = new Location({
        id: locations.size + 1,
        mappingId: address >= meta.mapping.start && address < meta.mapping.limit ? 1 : 0,
        address,
        line: frames.map((f) => new Line({ functionId: functionId(f), line: f.line })),
      });
      locations.set(returnPc, loc);
    }
    return loc.id;
  };
  /**
   * The runtime records one PC per logical frame, inlined ones included, while one
   * look-up already expands a PC into its whole inline chain. So after a location
   * with k frames, the PCs of its k-1 inline parents are skipped, as runtime/pprof does.
   */
  const stackLocations = (stack: number[]) => {
    const ids: Array<number | bigint> = [];
    for (let i = 0; i < stack.length; i++) {
      const pc = stack[i]!;
      ids.push(locationId(pc));
      const chain = framesFor(pc);
      for (let depth = 1; depth < chain.length && i + 1 < stack.length; depth++) {
        const next = framesFor(stack[i + 1]!);
        if (!next.length || !sameFrame(next[0]!, chain[depth]!)) break;
        i++;
      }
    }
    return ids;
  };
  const innermost = (returnPc: number) => framesFor(returnPc)[0]?.function;
  const sample = samples.map((h) => new Sample({ locationId: stackLocations(pprofStack(h.stack, innermost)), value: h.values }));
  return new Profile({
    sampleType: SAMPLE_TYPES.map(([type, unit]) => new ValueType({ type: s(type), unit: s(unit) })),
    sample,
    mapping: [mapping],
    location: [...locations.values()],
    function: [...functions.values()],
    stringTable: strings,
    timeNanos: meta.timeNanos,
    periodType: new ValueType({ type: s("space"), unit: s("bytes") }),
    period: meta.memProfileRate,
    comment: meta.comments.map(s),
    defaultSampleType: s(DEFAULT_SAMPLE_TYPE),
  });
}

export function encodeProfileGz(p: Profile): Uint8Array {
  return gzipSync(p.encode());
}

function sameFrame(a: SourceFrame, b: SourceFrame): boolean {
  return a.function === b.function && a.file === b.file;
}
