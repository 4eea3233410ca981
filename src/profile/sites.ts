import type { Symbolizer } from "../symbolize/types.ts";
import { pprofStack } from "./stack-rules.ts";
import { VIEW_INDEX, type HeapSample, type SampleTypeName } from "./heap-views.ts";

export interface Site {
  function: string;
  /** "dir/file.go:123", for a summary line. */
  location: string;
  /** The source file as the binary names it, and the line; null without symbols. */
  file: string | null;
  line: number | null;
  bytes: Record<"inuse" | "gcLive", number>;
  share: Record<"inuse" | "gcLive", number>;
}

export interface SiteTable {
  totals: Record<"inuse" | "gcLive" | "sinceGc" | "alloc", number>;
  sites: Site[];
}

/**
 * Groups samples by allocation site: the innermost frame of the stack runtime/pprof
 * would show (stack-rules.ts: the runtime's own frames at the top hidden), so a site is
 * what `go tool pprof -top` lists first. Shares are of the whole profile in the given view.
 */
export function allocationSites(samples: HeapSample[], symbolizer: Symbolizer | undefined): SiteTable {
  const idx = (n: SampleTypeName) => VIEW_INDEX[n];
  const totals = { inuse: 0, gcLive: 0, sinceGc: 0, alloc: 0 };
  const bySite = new Map<string, Site>();
  const nameCache = new Map<number, Pick<Site, "function" | "location" | "file" | "line">>();
  const nameOf = (pc: number) => {
    let named = nameCache.get(pc);
    if (!named) {
      const f = symbolizer?.frames(BigInt(pc - 1))[0];
      named = f
        ? { function: f.function, location: `${shortFile(f.file)}:${f.line}`, file: f.file, line: f.line }
        : { function: `0x${pc.toString(16)}`, location: "", file: null, line: null };
      nameCache.set(pc, named);
    }
    return named;
  };
  const siteOf = (stack: number[]) => {
    const leaf = pprofStack(stack, (pc) => (symbolizer ? nameOf(pc).function : undefined))[0];
    return leaf === undefined ? { function: "(unknown)", location: "", file: null, line: null } : nameOf(leaf);
  };
  for (const s of samples) {
    totals.inuse += s.values[idx("inuse_space")]!;
    totals.gcLive += s.values[idx("gc_live_space")]!;
    totals.sinceGc += s.values[idx("since_gc_space")]!;
    totals.alloc += s.values[idx("alloc_space")]!;
    const where = siteOf(s.stack);
    const key = siteKey(where);
    let site = bySite.get(key);
    if (!site) bySite.set(key, (site = { ...where, bytes: { inuse: 0, gcLive: 0 }, share: { inuse: 0, gcLive: 0 } }));
    site.bytes.inuse += s.values[idx("inuse_space")]!;
    site.bytes.gcLive += s.values[idx("gc_live_space")]!;
  }
  const sites = [...bySite.values()];
  for (const s of sites) {
    s.share.inuse = totals.inuse ? s.bytes.inuse / totals.inuse : 0;
    s.share.gcLive = totals.gcLive ? s.bytes.gcLive / totals.gcLive : 0;
  }
  sites.sort((a, b) => b.bytes.inuse - a.bytes.inuse);
  return { totals, sites };
}

/** What makes two sites one: the function and the line. */
export function siteKey(s: Pick<Site, "function" | "location">): string {
  return `${s.function} ${s.location}`;
}

export interface SiteGrowth {
  site: Site;
  /** In-use bytes at the base (0 for a site not there yet). */
  baseBytes: number;
  /** In-use bytes at death less at the base. */
  grewBytes: number;
  bytesPerSecond: number;
}

/**
 * The sites whose in-use bytes grew between a base table and a later one (the table
 * allocationSites built from each profile), fastest first, over `seconds` between them.
 */
export function siteGrowth(base: SiteTable, later: SiteTable, seconds: number): SiteGrowth[] {
  const before = new Map(base.sites.map((s) => [siteKey(s), s.bytes.inuse]));
  const grew: SiteGrowth[] = [];
  for (const site of later.sites) {
    const baseBytes = before.get(siteKey(site)) ?? 0;
    const grewBytes = site.bytes.inuse - baseBytes;
    if (grewBytes > 0) grew.push({ site, baseBytes, grewBytes, bytesPerSecond: seconds > 0 ? grewBytes / seconds : 0 });
  }
  return grew.sort((a, b) => b.grewBytes - a.grewBytes);
}

function shortFile(file: string): string {
  const parts = file.split("/");
  return parts.slice(-2).join("/");
}
