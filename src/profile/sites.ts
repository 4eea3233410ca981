import type { Symbolizer } from "../symbolize/types.ts";
import { VIEW_INDEX, type HeapSample, type SampleTypeName } from "./heap-views.ts";

export interface Site {
  function: string;
  location: string;
  bytes: Record<"inuse" | "gcLive", number>;
  share: Record<"inuse" | "gcLive", number>;
}

export interface SiteTable {
  totals: Record<"inuse" | "gcLive" | "sinceGc" | "alloc", number>;
  sites: Site[];
}

/** Frames of the runtime's own allocation machinery, skipped to find the caller that allocated. */
const RUNTIME_INTERNAL =
  /^runtime\.(malg|mallocgc|newobject|newarray|makeslice|makeslicecopy|growslice|makemap|makemap_small|makechan|mapassign|rawstring|rawbyteslice|rawruneslice|slicebytetostring|concatstrings|concatstring\d|stringtoslicebyte|convT|convTslice|convTstring|(mProf_Malloc|profilealloc))/;

/**
 * Groups samples by allocation site: the innermost frame that is not the runtime's
 * allocator. Shares are of the whole profile in the given view.
 */
export function allocationSites(samples: HeapSample[], symbolizer: Symbolizer | undefined): SiteTable {
  const idx = (n: SampleTypeName) => VIEW_INDEX[n];
  const totals = { inuse: 0, gcLive: 0, sinceGc: 0, alloc: 0 };
  const bySite = new Map<string, Site>();
  const nameCache = new Map<number, { function: string; location: string }>();
  const siteOf = (stack: number[]) => {
    for (const pc of stack) {
      let named = nameCache.get(pc);
      if (!named) {
        const frames = symbolizer?.frames(BigInt(pc - 1)) ?? [];
        const f = frames[0];
        named = f ? { function: f.function, location: `${shortFile(f.file)}:${f.line}` } : { function: `0x${pc.toString(16)}`, location: "" };
        nameCache.set(pc, named);
      }
      if (!RUNTIME_INTERNAL.test(named.function)) return named;
    }
    return { function: "(unknown)", location: "" };
  };
  for (const s of samples) {
    totals.inuse += s.values[idx("inuse_space")]!;
    totals.gcLive += s.values[idx("gc_live_space")]!;
    totals.sinceGc += s.values[idx("since_gc_space")]!;
    totals.alloc += s.values[idx("alloc_space")]!;
    const where = siteOf(s.stack);
    const key = `${where.function} ${where.location}`;
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

function shortFile(file: string): string {
  const parts = file.split("/");
  return parts.slice(-2).join("/");
}
