import type { ProcessCapture } from "../capture/walk-capture.ts";
import type { MemProfileBucket } from "../gobinary/mem-profile-bucket.ts";
import { config } from "../config.ts";
import { UserError } from "../errors.ts";
import { DISABLED_HINT, UNKNOWN_LAYOUT_HINT } from "../gobinary/go-target.ts";
import { heapSamples, withByteCounts } from "../profile/heap-views.ts";
import { buildPprof, encodeProfileGz } from "../profile/pprof.ts";
import { allocationSites, type SiteTable } from "../profile/sites.ts";
import type { Symbolizer } from "../symbolize/types.ts";
import type { GoTarget } from "../gobinary/go-target.ts";
import type { Liveness } from "../process/liveness.ts";
import { nowIso, type KillEvent } from "./events.ts";
import { profileFileName, writeFileAtomic } from "./profile-file.ts";

export interface KillContext {
  /** The Go binary the walk belonged to, or undefined for a process oomprof could not profile. */
  target: GoTarget | undefined;
  symbolizer: Symbolizer | undefined;
  outDir: string;
  lostEvents: number;
  cgroup: string | null;
  limitBytes: number | null;
  /** When the OOM record arrived, for capture_ms. */
  firstSeenMs: number | undefined;
  /** Why no profile is possible, when known in advance (non-Go target...). */
  noProfileReason?: string;
  /** The executable, when known without a target (a non-Go victim). */
  exe?: string;
  /** The victim still runs as this is reported: picked by the OOM killer, not (yet) killed. */
  stillRunning?: Liveness;
}

export interface KillReport {
  event: KillEvent;
  sites: SiteTable | undefined;
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
}

/** Encodes buckets as a pprof profile and writes it atomically into outDir. */
export function writeHeapProfile(p: HeapProfileInput): { path: string; sites: SiteTable } {
  const t = p.target;
  // Counters read with an unknown record layout would make a wrong profile.
  if (!t.memRecordWords) throw new UserError(UNKNOWN_LAYOUT_HINT(t.buildInfo.goVersion));
  const samples = heapSamples(withByteCounts(p.buckets, t.memRecordWords), p.memProfileRate, p.cycle);
  // The PCs are run-time addresses; the binary's tables are at link-time ones (PIE).
  const inner = p.symbolizer;
  const symbolizer = inner && p.bias !== 0 ? { frames: (pc: bigint) => inner.frames(pc - BigInt(p.bias)) } : inner;
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
      ],
    },
    symbolizer,
  );
  const path = writeFileAtomic(p.outDir, profileFileName(p.comm, p.pid, p.when), encodeProfileGz(pprof));
  return { path, sites: allocationSites(samples, symbolizer) };
}

function notKilledReason(l: Liveness, firstSeenMs: number | undefined): string {
  const after = firstSeenMs !== undefined ? ` ${Math.round(performance.now() - firstSeenMs)} ms after it was picked` : "";
  const stuck = l.killPending ? `, with its SIGKILL still pending (state ${l.state}: blocked where signals wait)` : ` (state ${l.state})`;
  return `picked by the OOM killer but not killed: still running${after}${stuck}; no heap walk ran`;
}

/** Turns what the probes saw about one dead process into its profile file and event. */
export function reportKill(c: ProcessCapture, ctx: KillContext): KillReport {
  const when = new Date();
  const t = ctx.target;
  // Some bpftrace versions (0.23) print the victim's comm as "" (a __data_loc field).
  const exeName = (t?.path ?? ctx.exe)?.split("/").pop();
  const comm = c.victim?.comm || exeName?.slice(0, 15) || "unknown";
  let profile: string | null = null;
  let sites: SiteTable | undefined;
  let reason: string | null = null;
  // Lost output shows up as a gap in the bucket chain or a partial stack, which c.gaps
  // already names; lost lines the mirror made up for do not make a capture partial.
  const gaps = [...c.gaps];
  const complete = gaps.length === 0 && c.header !== undefined;
  // Without a walk, a victim that still runs was picked but not killed; with one it is dying.
  const notKilled = c.header ? undefined : ctx.stillRunning;
  if (notKilled) reason = notKilledReason(notKilled, ctx.firstSeenMs);
  else if (!t) reason = ctx.noProfileReason ?? "not a Go program oomprof knows";
  else if (!c.header && c.victim)
    reason =
      ctx.noProfileReason ??
      "no heap walk ran: it died before oomprof's walk for its binary was attached, or it was already exiting when the OOM killer picked it";
  else if (!c.header) reason = gaps[0] ?? "the walk did not run";
  else if (c.header.memProfileRate === 0) reason = DISABLED_HINT;
  else if (t.memRecordWords === undefined) reason = UNKNOWN_LAYOUT_HINT(t.buildInfo.goVersion);
  else if (!complete) reason = gaps.join("; ");
  if (t?.memRecordWords && c.header && c.buckets.length > 0) {
    try {
      const written = writeHeapProfile({
        target: t,
        symbolizer: ctx.symbolizer,
        outDir: ctx.outDir,
        pid: c.pid,
        comm,
        when,
        buckets: c.buckets,
        memProfileRate: c.header.memProfileRate,
        cycle: c.header.cycle,
        bias: c.header.bias,
        what: c.victim ? "OOM kill" : c.runtimeOom !== undefined ? "Go runtime out of memory" : "SIGKILL",
        gaps,
      });
      profile = written.path;
      sites = written.sites;
    } catch (e) {
      // A full disk or a vanished --out: the event still says what happened. Anything
      // else is a bug, but the kill is still reported rather than lost with a crash.
      reason = e instanceof UserError ? e.message : `could not build the profile (a bug in oomprof, please report it): ${(e as Error).message}`;
      if (!(e instanceof UserError) && config().debug) console.error(e);
    }
  }
  const v = c.victim;
  const event: KillEvent = {
    event: v ? "oom_kill" : c.runtimeOom !== undefined ? "runtime_oom" : "kill",
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
    anon_rss_kb: v?.anonRssKb ?? null,
    file_rss_kb: v?.fileRssKb ?? null,
    shmem_rss_kb: v?.shmemRssKb ?? null,
    total_vm_kb: v?.totalVmKb ?? null,
    oom_score_adj: v?.oomScoreAdj ?? null,
    trigger: v && c.trigger ? { pid: v.triggerPid, comm: c.trigger.triggerComm } : null,
    constraint: c.oomKillProcess ? (c.oomKillProcess.memcgConstrained ? "memcg" : "global") : null,
    cgroup: ctx.cgroup,
    limit_bytes: ctx.limitBytes,
    top: (sites?.sites ?? []).slice(0, 10).map((s) => ({ function: s.function, inuse_bytes: s.bytes.inuse, share: Number(s.share.inuse.toFixed(4)) })),
    capture_ms: ctx.firstSeenMs !== undefined ? Math.round(performance.now() - ctx.firstSeenMs) : null,
  };
  return { event, sites };
}
