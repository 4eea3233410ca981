import { gunzipSync } from "node:zlib";
import { Profile } from "pprof-format";
import { UserError } from "../errors.ts";

/**
 * A pprof profile folded into a call tree for the HTML report: one tree for all
 * sample types at once (each node carries one value per sample type), merged by
 * function name along each root-to-leaf path, plus a per-function flat/cumulative table.
 */

export interface SampleTypeInfo {
  type: string;
  unit: string;
}

export interface FlameNode {
  /** Function name, or the location's hex address when it has no line records. */
  name: string;
  /** Source file of the function ("" when unknown). */
  file: string;
  /** This frame was inlined into its caller (at least once, where the tree merged it). */
  inlined: boolean;
  /** Values of every sample passing through this node, one per sample type. */
  total: number[];
  /** Values of samples whose innermost frame is this node. */
  self: number[];
  children: FlameNode[];
}

export interface TopEntry {
  name: string;
  file: string;
  /** Values of samples whose innermost frame is this function. */
  flat: number[];
  /** Values of samples with this function anywhere on the stack (counted once per sample). */
  cum: number[];
}

export interface FlameData {
  sampleTypes: SampleTypeInfo[];
  /** Index into sampleTypes of the view shown first. */
  defaultIndex: number;
  comments: string[];
  /** Milliseconds since the epoch when the profile was taken, or null. */
  timeMs: number | null;
  period: number;
  periodType: SampleTypeInfo | null;
  /** The main binary's path, from the first mapping. */
  binary: string;
  root: FlameNode;
  /** Every function, sorted by flat value of the default sample type, largest first. */
  top: TopEntry[];
}

/** The preferred first view when the profile does not name one. */
const PREFERRED_DEFAULT = "inuse_space";

/**
 * gunzip + decode, turning every way the input can be wrong into one readable line.
 * `label` names the input in messages (usually its path).
 */
export function decodeProfile(bytes: Uint8Array, label: string): Profile {
  if (bytes.length < 2 || bytes[0] !== 0x1f || bytes[1] !== 0x8b) {
    throw new UserError(`${label}: not gzip-compressed (expected a gzipped pprof profile, .pb.gz)`);
  }
  let raw: Uint8Array;
  try {
    raw = gunzipSync(bytes);
  } catch (e) {
    throw new UserError(`${label}: corrupt gzip data (${firstLine(e)})`);
  }
  let p: Profile;
  try {
    p = Profile.decode(raw);
  } catch (e) {
    throw new UserError(`${label}: not a pprof profile (${firstLine(e)})`);
  }
  const why = invalidReason(p);
  if (why) throw new UserError(`${label}: not a pprof profile (${why})`);
  return p;
}

/** Checks the cross-references a decoder cannot: a random protobuf decodes "fine". */
function invalidReason(p: Profile): string | undefined {
  const strings = p.stringTable.strings;
  if (strings.length === 0 || strings[0] !== "") return "its string table does not start with the empty string";
  if (p.sampleType.length === 0) return "it has no sample types";
  const strOk = (i: number | bigint) => Number(i) >= 0 && Number(i) < strings.length;
  if (!p.sampleType.every((t) => strOk(t.type) && strOk(t.unit) && strings[Number(t.type)] !== "")) return "a sample type has no name";
  if (!p.comment.every(strOk) || !strOk(p.defaultSampleType)) return "it refers to missing strings";
  if (!p.mapping.every((m) => strOk(m.filename) && strOk(m.buildId))) return "a mapping names a missing string";
  const locIds = new Set(p.location.map((l) => Number(l.id)));
  const fnIds = new Set(p.function.map((f) => Number(f.id)));
  if (!p.function.every((f) => strOk(f.name) && strOk(f.filename))) return "a function names a missing string";
  for (const l of p.location) {
    for (const line of l.line) if (!fnIds.has(Number(line.functionId))) return `location ${l.id} refers to missing function ${line.functionId}`;
  }
  for (const s of p.sample) {
    if (s.value.length !== p.sampleType.length) return `a sample has ${s.value.length} values for ${p.sampleType.length} sample types`;
    for (const id of s.locationId) if (!locIds.has(Number(id))) return `a sample refers to missing location ${id}`;
  }
  return undefined;
}

interface Frame {
  name: string;
  file: string;
  inlined: boolean;
}

export function foldProfile(p: Profile): FlameData {
  const str = (i: number | bigint) => p.stringTable.strings[Number(i)] ?? "";
  const sampleTypes = p.sampleType.map((t) => ({ type: str(t.type), unit: str(t.unit) }));
  const n = sampleTypes.length;

  const functions = new Map<number, { name: string; file: string }>();
  for (const f of p.function) functions.set(Number(f.id), { name: str(f.name) || str(f.systemName) || "?", file: str(f.filename) });

  // Each location expands to its frames, outermost first (pprof lists lines innermost
  // first: every line but the last is inlined into the one after it).
  const framesOfLocation = new Map<number, Frame[]>();
  for (const l of p.location) {
    let frames: Frame[];
    if (l.line.length === 0) {
      frames = [{ name: `0x${BigInt(l.address).toString(16)}`, file: "", inlined: false }];
    } else {
      frames = l.line.map((line, i) => {
        const fn = functions.get(Number(line.functionId))!;
        return { name: fn.name, file: fn.file, inlined: i < l.line.length - 1 };
      });
      frames.reverse();
    }
    framesOfLocation.set(Number(l.id), frames);
  }

  const zeros = () => new Array<number>(n).fill(0);
  const root: FlameNode = { name: "total", file: "", inlined: false, total: zeros(), self: zeros(), children: [] };
  const childIndex = new Map<FlameNode, Map<string, FlameNode>>();
  const child = (parent: FlameNode, f: Frame): FlameNode => {
    let idx = childIndex.get(parent);
    if (!idx) childIndex.set(parent, (idx = new Map()));
    let c = idx.get(f.name);
    if (!c) {
      c = { name: f.name, file: f.file, inlined: f.inlined, total: zeros(), self: zeros(), children: [] };
      idx.set(f.name, c);
      parent.children.push(c);
    } else if (f.inlined) c.inlined = true;
    return c;
  };
  const top = new Map<string, TopEntry>();
  const entry = (f: Frame) => {
    let e = top.get(f.name);
    if (!e) top.set(f.name, (e = { name: f.name, file: f.file, flat: zeros(), cum: zeros() }));
    return e;
  };
  const add = (into: number[], values: number[]) => {
    for (let i = 0; i < n; i++) into[i]! += values[i]!;
  };

  for (const s of p.sample) {
    const values = s.value.map(Number);
    const stack: Frame[] = [];
    for (let i = s.locationId.length - 1; i >= 0; i--) stack.push(...framesOfLocation.get(Number(s.locationId[i]))!);
    let node = root;
    add(root.total, values);
    const seen = new Set<string>();
    for (const f of stack) {
      node = child(node, f);
      add(node.total, values);
      if (!seen.has(f.name)) {
        seen.add(f.name);
        add(entry(f).cum, values);
      }
    }
    add(node.self, values);
    const leaf = stack[stack.length - 1];
    if (leaf) add(entry(leaf).flat, values);
  }

  const defaultName = str(p.defaultSampleType);
  let defaultIndex = sampleTypes.findIndex((t) => t.type === defaultName && defaultName !== "");
  if (defaultIndex < 0) defaultIndex = sampleTypes.findIndex((t) => t.type === PREFERRED_DEFAULT);
  if (defaultIndex < 0) defaultIndex = n - 1; // pprof's convention: the last sample type

  const timeNs = Number(p.timeNanos);
  const firstMapping = p.mapping[0];
  return {
    sampleTypes,
    defaultIndex,
    comments: p.comment.map(str),
    timeMs: timeNs > 0 ? Math.round(timeNs / 1e6) : null,
    period: Number(p.period),
    periodType: p.periodType ? { type: str(p.periodType.type), unit: str(p.periodType.unit) } : null,
    binary: firstMapping ? str(firstMapping.filename) : "",
    root,
    top: [...top.values()].sort(
      (a, b) => b.flat[defaultIndex]! - a.flat[defaultIndex]! || b.cum[defaultIndex]! - a.cum[defaultIndex]! || a.name.localeCompare(b.name),
    ),
  };
}

/** One function's growth between a base profile and a later one, in one sample type. */
export interface GrowthRow {
  name: string;
  file: string;
  /** Flat value (innermost frame) in the base, and in the later profile. */
  base: number;
  later: number;
}

export interface ProfileGrowth {
  /** The sample type compared (the later profile's default view). */
  sampleType: SampleTypeInfo;
  /** Seconds between the two profiles' times, or null when either has none. */
  seconds: number | null;
  /** Functions whose flat value grew, most first: what `go tool pprof -top -diff_base` lists first. */
  rows: GrowthRow[];
}

/**
 * What grew between a base profile and a later one of the same program, by innermost
 * function (the top tables foldProfile built): undefined when the two do not share the
 * later one's default sample type.
 */
export function profileGrowth(base: FlameData, later: FlameData): ProfileGrowth | undefined {
  const sampleType = later.sampleTypes[later.defaultIndex];
  const i = base.sampleTypes.findIndex((t) => t.type === sampleType?.type && t.unit === sampleType.unit);
  if (!sampleType || i < 0) return undefined;
  const before = new Map(base.top.map((e) => [e.name, e.flat[i]!]));
  const rows = later.top
    .map((e) => ({ name: e.name, file: e.file, base: before.get(e.name) ?? 0, later: e.flat[later.defaultIndex]! }))
    .filter((r) => r.later > r.base)
    .sort((a, b) => b.later - b.base - (a.later - a.base));
  const seconds = base.timeMs !== null && later.timeMs !== null && later.timeMs > base.timeMs ? (later.timeMs - base.timeMs) / 1000 : null;
  return { sampleType, seconds, rows };
}

function firstLine(e: unknown): string {
  return (e instanceof Error ? e.message : String(e)).split("\n")[0]!;
}
