import { join } from "node:path";
import { pageSize } from "../process/libc.ts";
import type { ProcessCapture } from "../capture/walk-capture.ts";
import { placementFields, type ProcessPlacement } from "../cgroup/process-placement.ts";
import type { MemProfileBucket } from "../gobinary/mem-profile-bucket.ts";
import { WALK_COUNT_WORDS, type MemRecordWords } from "../gobinary/bucket-layout.ts";
import { config } from "../config.ts";
import { UserError } from "../errors.ts";
import { DISABLED_HINT, UNKNOWN_LAYOUT_HINT } from "../gobinary/go-target.ts";
import { memoryBreakdown, type MemoryBreakdown } from "../gobinary/memstats-layout.ts";
import { memoryComment } from "../profile/memory-comment.ts";
import { formatMemoryBreakdown } from "./format.ts";
import { heapSamples } from "../profile/heap-views.ts";
import { buildPprof, encodeProfileGz } from "../profile/pprof.ts";
import { LocationTable } from "../profile/location-table.ts";
import { allocationSites, siteGrowth, type SiteGrowth, type SiteTable } from "../profile/sites.ts";
import type { BaseCounters } from "../capture/counter-readings.ts";
import type { Symbolizer } from "../symbolize/types.ts";
import type { GoTarget } from "../gobinary/go-target.ts";
import type { Liveness } from "../process/liveness.ts";
import { nowIso, topSites, type KillEvent } from "./events.ts";
import { baseProfileName, profileFileName, writeFileAtomic } from "./profile-file.ts";

export interface KillContext {
  /** The Go binary the walk belonged to, or undefined for a process oomprof could not profile. */
  target: GoTarget | undefined;
  symbolizer: Symbolizer | undefined;
  outDir: string;
  lostEvents: number;
  /** Where it ran as /proc showed it while it lived; what its own thread read at the kill wins. */
  where: ProcessPlacement;
  limitBytes: number | null;
  /** When the OOM record arrived, for capture_ms. */
  firstSeenMs: number | undefined;
  /** Why no profile is possible, when known in advance (non-Go target...). */
  noProfileReason?: string;
  /** The executable, when known without a target (a non-Go victim). */
  exe?: string;
  /** The victim still runs as this is reported: picked by the OOM killer, not (yet) killed. */
  stillRunning?: Liveness;
  /**
   * Its counters of about --base-age before death, for a base profile beside the kill's:
   * asked for once the kill's profile is on disk (at 100,000 buckets building them took
   * tens of milliseconds).
   */
  base?: () => BaseCounters | undefined;
  /** Its stacks' locations, prepared while it lived (locationTableFor's for its target and bias). */
  locations?: LocationTable;
  /** Hears when a written profile could not be fsynced. */
  onSyncFailed?: (message: string) => void;
  /** Do everything but write: a rehearsal on made-up counters (see KillReporter.rehearse). */
  rehearsal?: boolean;
}

export interface KillReport {
  event: KillEvent;
  sites: SiteTable | undefined;
  /** Sites by growth between the base profile and death, fastest first; undefined without a base. */
  growth: SiteGrowth[] | undefined;
  /** Why a base there were counters for could not be written. */
  baseError?: string;
  phases: PhaseTimes;
}

export interface HeapProfileInput {
  target: GoTarget;
  symbolizer: Symbolizer | undefined;
  outDir: string;
  pid: number;
  comm: string;
  when: Date;
  buckets: MemProfileBucket[];
  memProfileRate: number;
  cycle: number;
  bias: number;
  /** What moment the profile is of ("OOM kill", "snapshot"...), for its comments. */
  what: string;
  /** Why the capture is partial; empty when complete. */
  gaps: string[];
  /** Where the time goes, for `--verbose` and scripts/bench-capacity. */
  phases?: PhaseTimes;
  /** The file's name in outDir (default: profileFileName's). */
  name?: string;
  /** Where the memory went, for the profile's comments (and so `oomprof report`). */
  memory?: { rssBytes: number | null; figures: MemoryBreakdown };
  /** The process's locations, prepared while it lived (must be locationTableFor's, for this bias). */
  locations?: LocationTable;
  /** The layout of the buckets' counts: a walk's C records are always 8 words (WALK_COUNT_WORDS); the binary's own where they were read from its memory. */
  recordWords: MemRecordWords;
  /** Hears when the written file could not be fsynced (see writeFileAtomic). */
  onSyncFailed?: (message: string) => void;
  /** Build and encode the profile, but write nothing (the path returned is where it would be). */
  rehearsal?: boolean;
}

/** Milliseconds spent in each step of turning records into a profile on disk, in order. */
export class PhaseTimes {
  readonly steps: Array<[string, number]> = [];
  private last = performance.now();
  mark(step: string): void {
    const now = performance.now();
    this.steps.push([step, now - this.last]);
    this.last = now;
  }
  toString(): string {
    return this.steps.map(([s, ms]) => `${s} ${ms.toFixed(1)}`).join(", ");
  }
}

/**
 * A process's table of locations: its symbolizer sees run-time PCs through the load
 * bias (the binary's tables are at link-time addresses: PIE), and its text range is
 * the mapping's.
 */
export function locationTableFor(t: GoTarget, symbolizer: Symbolizer | undefined, bias: number): LocationTable {
  const biased = symbolizer && bias !== 0 ? { frames: (pc: bigint) => symbolizer.frames(pc - BigInt(bias)) } : symbolizer;
  const start = Number(t.text.vaddr) + bias;
  return new LocationTable(biased, { start: start - (start % 4096), limit: start + t.text.memsz });
}

/** Encodes buckets as a pprof profile and writes it atomically into outDir; writtenMs is when it was there (performance.now()). */
export function writeHeapProfile(p: HeapProfileInput): { path: string; sites: SiteTable; writtenMs: number } {
  const t = p.target;
  // Counters read with an unknown record layout would make a wrong profile.
  if (!t.memRecordWords) throw new UserError(UNKNOWN_LAYOUT_HINT(t.buildInfo.goVersion));
  const samples = heapSamples(p.buckets, p.memProfileRate, p.cycle, p.recordWords);
  p.phases?.mark("samples");
  const locations = p.locations ?? locationTableFor(t, p.symbolizer, p.bias);
  const start = Number(t.text.vaddr) + p.bias;
  const pageStart = start - (start % 4096);
  const pprof = buildPprof(
    samples,
    {
      binaryPath: t.path,
      buildId: t.buildId,
      mapping: { start: pageStart, limit: start + t.text.memsz, offset: t.text.offset - (start - pageStart) },
      memProfileRate: p.memProfileRate,
      timeNanos: BigInt(p.when.getTime()) * 1_000_000n,
      comments: [
        `oomprof: heap at ${p.what} of pid ${p.pid} (${p.comm})`,
        `go: ${t.buildInfo.goVersion}${t.buildInfo.mainModule ? ` module ${t.buildInfo.mainModule.path}@${t.buildInfo.mainModule.version}` : ""}`,
        `capture: ${p.buckets.length} buckets, ${p.gaps.length === 0 ? "complete" : `PARTIAL (${p.gaps.join("; ")})`}`,
        "views: inuse_* = active + all future cycles (default); gc_live_* = live at the last completed GC (runtime/pprof's view); since_gc_* = the difference",
        ...memoryComments(p.memory),
      ],
    },
    locations.symbolizer,
    locations,
  );
  p.phases?.mark("symbolize+pprof");
  const gz = encodeProfileGz(pprof, p.phases && ((step) => p.phases!.mark(step)));
  const name = p.name ?? profileFileName(p.comm, p.pid, p.when);
  const path = p.rehearsal ? join(p.outDir, name) : writeFileAtomic(p.outDir, name, gz, p.onSyncFailed);
  const writtenMs = performance.now();
  p.phases?.mark("write");
  const sites = allocationSites(samples, locations.symbolizer);
  p.phases?.mark("sites");
  return { path, sites, writtenMs };
}

/** A readable line for `go tool pprof -comments`, and the figures for `oomprof report`. */
function memoryComments(m: HeapProfileInput["memory"]): string[] {
  const line = m && formatMemoryBreakdown(m.rssBytes, m.figures);
  return m && line ? [`memory: ${line}`, memoryComment(m.rssBytes, m.figures)] : [];
}

function notKilledReason(l: Liveness, firstSeenMs: number | undefined): string {
  const after = firstSeenMs !== undefined ? ` ${Math.round(performance.now() - firstSeenMs)} ms after it was picked` : "";
  const stuck = l.killPending ? `, with its SIGKILL still pending (state ${l.state}: blocked where signals wait)` : ` (state ${l.state})`;
  return `picked by the OOM killer but not killed: still running${after}${stuck}; no heap walk ran`;
}

/** Turns what the probes saw about one dead process into its profile file and event. */
export function reportKill(c: ProcessCapture, ctx: KillContext): KillReport {
  const when = new Date();
  const phases = new PhaseTimes();
  const t = ctx.target;
  // Some bpftrace versions (0.23) print the victim's comm as "" (a __data_loc field).
  const exeName = (t?.path ?? ctx.exe)?.split("/").pop();
  const comm = c.victim?.comm || exeName?.slice(0, 15) || "unknown";
  let profile: string | null = null;
  let sites: SiteTable | undefined;
  let reason: string | null = null;
  let base: { path: string; ageMs: number } | undefined;
  let growth: SiteGrowth[] | undefined;
  let baseError: string | undefined;
  /** When the kill's profile was on disk: capture_ms does not count the base's writing. */
  let onDiskMs: number | undefined;
  // Lost output shows up as a gap in the bucket chain or a partial stack, which c.gaps
  // already names; lost lines the mirror made up for do not make a capture partial.
  const gaps = [...c.gaps];
  // The kprobe's pick (K) says so too when mark_victim's record never came.
  const oomKilled = c.victim !== undefined || c.oomKillProcess !== undefined;
  const complete = gaps.length === 0 && c.header !== undefined;
  // Without a walk, a victim that still runs was picked but not killed; with one it is dying.
  const notKilled = c.header ? undefined : ctx.stillRunning;
  if (notKilled) reason = notKilledReason(notKilled, ctx.firstSeenMs);
  else if (!t) reason = ctx.noProfileReason ?? "not a Go program oomprof knows";
  else if (!c.header && oomKilled)
    reason =
      ctx.noProfileReason ??
      "no heap walk ran: it died before oomprof's walk for its binary was attached, or it was already exiting when the OOM killer picked it";
  else if (!c.header) reason = gaps[0] ?? "the walk did not run";
  else if (c.header.memProfileRate === 0) reason = DISABLED_HINT;
  else if (t.memRecordWords === undefined) reason = UNKNOWN_LAYOUT_HINT(t.buildInfo.goVersion);
  else if (!complete) reason = gaps.join("; ");
  const v = c.victim;
  // RSS at death as oom:mark_victim saw it; unknown on kernels whose tracepoint has only pid.
  const rssBytes = v && v.anonRssKb !== null ? (v.anonRssKb + (v.fileRssKb ?? 0) + (v.shmemRssKb ?? 0)) * 1024 : null;
  const memory = memoryBreakdown(c.memStats, rssBytes);
  if (t?.memRecordWords && c.header && c.buckets.length > 0) {
    const what = oomKilled ? "OOM kill" : c.runtimeOom !== undefined ? "Go runtime out of memory" : "SIGKILL";
    // The base profile takes the same path as the kill's, so that sample types, stacks and names match for -diff_base.
    // One table for both: the base's stacks are the kill's, symbolized once.
    const locations = ctx.locations ?? locationTableFor(t, ctx.symbolizer, c.header.bias);
    const same = {
      target: t,
      symbolizer: ctx.symbolizer,
      outDir: ctx.outDir,
      pid: c.pid,
      comm,
      bias: c.header.bias,
      locations,
      onSyncFailed: ctx.onSyncFailed,
      rehearsal: ctx.rehearsal,
    };
    try {
      const written = writeHeapProfile({
        ...same,
        when,
        buckets: c.buckets,
        memProfileRate: c.header.memProfileRate,
        cycle: c.header.cycle,
        what,
        gaps,
        phases,
        memory: { rssBytes, figures: memory },
        recordWords: WALK_COUNT_WORDS,
      });
      profile = written.path;
      // Its site table comes after the write, and is not part of getting it on disk.
      onDiskMs = written.writtenMs;
      sites = written.sites;
      const b = ctx.base?.();
      if (b) {
        try {
          const written = writeHeapProfile({
            ...same,
            when: new Date(when.getTime() - b.ageMs),
            buckets: b.buckets,
            memProfileRate: b.memProfileRate,
            cycle: b.cycle,
            what: `${(b.ageMs / 1000).toFixed(1)} s before the ${what}`,
            gaps: [],
            name: baseProfileName(profile),
            recordWords: t.memRecordWords,
          });
          base = { path: written.path, ageMs: b.ageMs };
          growth = siteGrowth(written.sites, sites, b.ageMs / 1000);
          phases.mark("base");
        } catch (e) {
          baseError = (e as Error).message;
        }
      }
    } catch (e) {
      // A full disk or a vanished --out: the event still says what happened. Anything
      // else is a bug, but the kill is still reported rather than lost with a crash.
      reason = e instanceof UserError ? e.message : `could not build the profile (a bug in oomprof, please report it): ${(e as Error).message}`;
      if (!(e instanceof UserError) && config().debug) console.error(e);
    }
  }
  const event: KillEvent = {
    event: oomKilled ? "oom_kill" : c.runtimeOom !== undefined ? "runtime_oom" : "kill",
    message: c.runtimeOom ?? null,
    time: nowIso(),
    pid: c.pid,
    comm,
    exe: t?.path ?? ctx.exe ?? null,
    go_version: t?.buildInfo.goVersion ?? null,
    module: t?.buildInfo.mainModule?.path ?? t?.buildInfo.path ?? null,
    profile,
    reason,
    buckets: c.buckets.length,
    complete: complete && profile !== null,
    lost_events: ctx.lostEvents,
    memprofile_rate: c.header?.memProfileRate ?? null,
    inuse_bytes: sites?.totals.inuse ?? 0,
    gc_live_bytes: sites?.totals.gcLive ?? 0,
    still_running: notKilled !== undefined,
    goroutines: c.goroutines?.count ?? null,
    goroutines_upper_bound: c.goroutines?.atMost ?? false,
    memory,
    anon_rss_kb: v?.anonRssKb ?? null,
    file_rss_kb: v?.fileRssKb ?? null,
    shmem_rss_kb: v?.shmemRssKb ?? null,
    total_vm_kb: v?.totalVmKb ?? null,
    oom_score_adj: v?.oomScoreAdj ?? null,
    trigger: v && c.trigger ? { pid: v.triggerPid, comm: c.trigger.triggerComm } : null,
    constraint: c.oomKillProcess ? (c.oomKillProcess.memcgConstrained ? "memcg" : "global") : null,
    ...placementFields({ ...ctx.where, ...(c.cgroupPath !== undefined && { cgroup: c.cgroupPath }), ...(c.nsPid !== undefined && { nsPid: c.nsPid }) }),
    limit_bytes: ctx.limitBytes ?? (c.limitPages !== undefined ? c.limitPages * pageSize() : null),
    top: topSites(sites?.sites ?? []),
    capture_ms: ctx.firstSeenMs !== undefined ? Math.round((onDiskMs ?? performance.now()) - ctx.firstSeenMs) : null,
    base_profile: base?.path ?? null,
    base_age_ms: base?.ageMs ?? null,
  };
  return { event, sites, growth, baseError, phases };
}
