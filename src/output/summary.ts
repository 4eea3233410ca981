import { config } from "../config.ts";
import type { SiteTable } from "../profile/sites.ts";
import type { KillEvent } from "./events.ts";
import { formatBytes, formatGoroutines, formatPercent } from "./format.ts";

const TOP = 8;
/** Sites whose share differs by this much between the two views are named. */
const DISAGREE_POINTS = 0.1;

export interface Style {
  bold(s: string): string;
  red(s: string): string;
  dim(s: string): string;
}

export function terminalStyle(stream: { isTTY?: boolean }): Style {
  const on = !!stream.isTTY && !config().noColor;
  const wrap = (code: string) => (s: string) => (on ? `\x1b[${code}m${s}\x1b[0m` : s);
  return { bold: wrap("1"), red: wrap("31"), dim: wrap("2") };
}

/** One screen on stderr: what died, how big it was, and what held its heap. */
export function renderKillSummary(e: KillEvent, table: SiteTable | undefined, style: Style): string {
  const lines: string[] = [];
  const what = e.event === "oom_kill" ? "OOM kill" : e.event === "runtime_oom" ? `Go runtime fatal error (${e.message})` : "SIGKILL";
  const trigger = e.trigger && e.trigger.pid !== e.pid ? `, triggered by ${e.trigger.comm} (pid ${e.trigger.pid})` : "";
  const where = e.cgroup ? ` in cgroup ${e.cgroup}${e.limit_bytes ? ` (limit ${formatBytes(e.limit_bytes)})` : ""}` : "";
  lines.push(style.red(style.bold(`oomprof: ${what} of ${e.comm} (pid ${e.pid})${trigger}${where}`)));
  const goroutines = e.goroutines === null ? undefined : formatGoroutines(e.goroutines, e.goroutines_upper_bound);
  if (e.anon_rss_kb !== null) {
    const rss = (e.anon_rss_kb + (e.file_rss_kb ?? 0) + (e.shmem_rss_kb ?? 0)) * 1024;
    const heap = e.profile ? `; Go heap in use ${formatBytes(e.inuse_bytes)}, live at last GC ${formatBytes(e.gc_live_bytes)}` : "";
    lines.push(`  RSS at death ${formatBytes(rss)} (anon ${formatBytes(e.anon_rss_kb * 1024)})${heap}${goroutines ? `; ${goroutines}` : ""}`);
  } else if (goroutines) lines.push(`  ${goroutines} at death`);
  if (!e.profile) {
    lines.push(`  no heap profile: ${e.reason ?? "unknown reason"}`);
    return lines.join("\n") + "\n";
  }
  if (!e.complete) lines.push(style.red(`  PARTIAL capture: ${e.reason}`));
  if (table && table.sites.length) {
    lines.push(`  Top allocation sites in use at death (inuse_space: not known to be freed, uncollected garbage included):`);
    for (const s of table.sites.slice(0, TOP)) {
      lines.push(
        `    ${formatPercent(s.share.inuse).padStart(6)} ${formatBytes(s.bytes.inuse).padStart(10)}  ${s.function}${s.location ? style.dim(`  ${s.location}`) : ""}`,
      );
    }
    const disagree = table.sites.filter((s) => Math.abs(s.share.inuse - s.share.gcLive) >= DISAGREE_POINTS);
    if (disagree.length) {
      lines.push(`  Where live-at-last-GC (gc_live_space, what runtime/pprof shows) disagrees:`);
      for (const s of disagree.slice(0, TOP)) {
        const note = s.share.inuse > s.share.gcLive ? "allocated since the last GC, likely garbage" : "long-lived";
        lines.push(`    ${s.function}: ${formatPercent(s.share.inuse)} at death vs ${formatPercent(s.share.gcLive)} at last GC (${note})`);
      }
    }
  }
  lines.push(`  profile: ${e.profile}`);
  lines.push(style.dim(`  dig deeper: go tool pprof -http=: ${e.profile}`));
  return lines.join("\n") + "\n";
}
