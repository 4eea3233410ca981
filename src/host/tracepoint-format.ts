import { readFileSync } from "node:fs";

/** Where tracefs keeps the events: its own mount, or debugfs's on older setups. */
export const TRACEFS_ROOTS = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];

/** A tracepoint's format file (`oom/mark_victim`), or undefined where tracefs does not show it. */
export function readTracepointFormat(event: string): string | undefined {
  for (const root of TRACEFS_ROOTS) {
    try {
      return readFileSync(`${root}/events/${event}/format`, "utf8");
    } catch {
      /* try the next mount point */
    }
  }
  return undefined;
}

/** The field names a format file declares (`field:unsigned long anon_rss;` → anon_rss), arrays included. */
export function formatFields(format: string): Set<string> {
  const names = new Set<string>();
  for (const m of format.matchAll(/field:[^;]*?([A-Za-z_][A-Za-z0-9_]*)(\[\d*\])?;/g)) names.add(m[1]!);
  return names;
}

/**
 * Fields of oom:mark_victim beyond `pid` that probes/oom/mark-victim.bt prints. The kernel
 * added them together ("mm: update mark_victim tracepoints fields", Linux 6.8, backported
 * to 6.1.y); before that the tracepoint had `pid` alone, and mark-victim-pid-only.bt runs.
 */
export const MARK_VICTIM_COUNTERS = ["comm", "total_vm", "anon_rss", "file_rss", "shmem_rss", "oom_score_adj"];

export function markVictimHasCounters(format: string): boolean {
  const fields = formatFields(format);
  return MARK_VICTIM_COUNTERS.every((f) => fields.has(f));
}
