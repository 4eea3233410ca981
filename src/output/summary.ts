import { config } from "../config.ts";
import type { SiteGrowth, SiteTable } from "../profile/sites.ts";
import type { KillEvent } from "./events.ts";
import { describeContainer, formatBytes, formatGoroutines, formatMemoryBreakdown, formatPercent } from "./format.ts";

const TOP = 8;
/** Sites listed under "grew fastest before death". */
const TOP_GROWTH = 5;
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

/**
 * One screen on stderr: what died, how big it was, what held its heap and, when a base
 * was asked for (`before`), what grew fastest before death.
 */
export function renderKillSummary(e: KillEvent, table: SiteTable | undefined, style: Style, before?: { growth: SiteGrowth[] | undefined }): string {
  const lines: string[] = [];
  const what = e.event === "oom_kill" ? "OOM kill" : e.event === "runtime_oom" ? `Go runtime fatal error (${e.message})` : "SIGKILL";
  const trigger = e.trigger && e.trigger.pid !== e.pid ? `, triggered by ${e.trigger.comm} (pid ${e.trigger.pid})` : "";
  const limit = e.limit_bytes ? ` (limit ${formatBytes(e.limit_bytes)})` : "";
  const container = describeContainer(e.container, " in ");
  // Inside a container the path is long and says no more than the line before it.
  const where = container || (e.cgroup ? ` in cgroup ${e.cgroup}${limit}` : "");
  const pid = e.ns_pid !== null && e.ns_pid !== e.pid ? `pid ${e.pid}, ${e.ns_pid} in its namespace` : `pid ${e.pid}`;
  lines.push(style.red(style.bold(`oomprof: ${what} of ${e.comm} (${pid})${trigger}${where}`)));
  if (container && e.cgroup) lines.push(`  cgroup ${e.cgroup}${limit}`);
  const goroutines = e.goroutines === null ? undefined : formatGoroutines(e.goroutines, e.goroutines_upper_bound);
  const rss = e.anon_rss_kb === null ? null : (e.anon_rss_kb + (e.file_rss_kb ?? 0) + (e.shmem_rss_kb ?? 0)) * 1024;
  if (rss !== null && e.anon_rss_kb !== null) {
    const heap = e.profile ? `; Go heap in use ${formatBytes(e.inuse_bytes)}, live at last GC ${formatBytes(e.gc_live_bytes)}` : "";
    lines.push(`  RSS at death ${formatBytes(rss)} (anon ${formatBytes(e.anon_rss_kb * 1024)})${heap}${goroutines ? `; ${goroutines}` : ""}`);
  } else if (goroutines) lines.push(`  ${goroutines} at death`);
  const breakdown = formatMemoryBreakdown(rss, e.memory);
  if (breakdown) lines.push(`  ${breakdown}`);
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
  if (before) lines.push(...growthLines(e, before.growth, style));
  lines.push(`  profile: ${e.profile}`);
  if (e.base_profile) lines.push(`  base: ${e.base_profile}`);
  lines.push(style.dim(`  dig deeper: go tool pprof -http=: ${e.profile}`));
  if (e.base_profile) lines.push(style.dim(`  what grew: go tool pprof -http=: -diff_base ${e.base_profile} ${e.profile}`));
  return lines.join("\n") + "\n";
}

/** "Grew fastest in the 60.2 s before death": the sites by in-use growth since the base, with their rates. */
function growthLines(e: KillEvent, growth: SiteGrowth[] | undefined, style: Style): string[] {
  if (!e.base_profile || e.base_age_ms === null || !growth) {
    return [style.dim("  no base profile: no reading of its counters while it grew, at least half a second before death")];
  }
  const seconds = (e.base_age_ms / 1000).toFixed(1);
  if (growth.length === 0) return [`  Nothing grew in the ${seconds} s before death (inuse_space against the base profile)`];
  const lines = [`  Grew fastest in the ${seconds} s before death (inuse_space, against the base profile):`];
  for (const g of growth.slice(0, TOP_GROWTH)) {
    const s = g.site;
    lines.push(
      `    +${formatBytes(g.grewBytes).padEnd(10)} ${`${formatBytes(Math.round(g.bytesPerSecond))}/s`.padStart(12)}  ${s.function}${s.location ? style.dim(`  ${s.location}`) : ""}`,
    );
  }
  return lines;
}
