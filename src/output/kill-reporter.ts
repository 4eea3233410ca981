import { readFileSync } from "node:fs";
import type { LiveMirror, MirrorFound } from "../capture/live-mirror.ts";
import type { CaptureSource } from "../capture/probe-sessions.ts";
import type { GoTarget } from "../gobinary/go-target.ts";
import type { ProcessPlacement } from "../cgroup/process-placement.ts";
import { stillRunning } from "../process/liveness.ts";
import { loadSymbolizer } from "../symbolize/load.ts";
import type { Symbolizer } from "../symbolize/types.ts";
import { nowIso, type EventWriter, type KillEvent } from "./events.ts";
import { containerLabels, defaultAppName, redactUrl, uploadProfile, type UploadTarget } from "./upload/index.ts";
import { locationTableFor, reportKill, type PhaseTimes } from "./report-kill.ts";
import { writesSynced } from "./profile-file.ts";
import type { LocationTable } from "../profile/location-table.ts";
import type { ProcessCapture } from "../capture/walk-capture.ts";
import { monotonicMs, nsToMs } from "../process/libc.ts";
import { renderKillSummary, terminalStyle } from "./summary.ts";
import { rehearsalCapture } from "./rehearsal.ts";

export interface KillReporterOptions {
  captures: CaptureSource;
  events: EventWriter;
  outDir: string;
  /** Where the human summary of each kill goes; none with --quiet or JSON logs. */
  summary?(text: string): void;
  warn(message: string): void;
  /** Where the time of each capture went (`--verbose`). */
  verbose?(message: string): void;
  mirror?: LiveMirror;
  /** Where the process ran (read while it lived) and its memory limit, when oomprof knows. */
  placement(pid: number): { where: ProcessPlacement; limitBytes: number | null };
  /** Where to send each profile (--upload); it stays on disk either way. */
  upload?: UploadTarget;
  /** A target known by other means (run's command), and why there is none. */
  fallback?(pid: number): { target?: GoTarget; why?: string; exe?: string };
  /** --base-age in ms: a base profile is written from the mirror's readings (absent or 0: none asked for). */
  baseAgeMs?: number;
  /**
   * Mirrored buckets from which a process's stacks are symbolized while it lives (default
   * PREPARE_MIN_BUCKETS). run gives 0: its one program is the one expected to die.
   */
  prepareMinBuckets?: number;
}

const SYMBOLIZERS_KEPT = 4;
/**
 * From this many mirrored buckets a process's stacks are always symbolized ahead (at
 * 3,000 buckets, building its locations at death took 14-23 ms).
 */
export const PREPARE_MIN_BUCKETS = 5000;
/**
 * Smaller processes are prepared too while their stacks together stay under this: a
 * table costs about 300 bytes a stack (950 KiB for 3,000 of manystacks'), so this
 * bounds what a host of many small Go programs makes watch hold, at a few MiB. Past it,
 * their binary's tables are still read ahead (mapped, not copied: see mapFile) while
 * fewer than SYMBOLIZERS_KEPT are.
 */
const SMALL_PREPARED_STACKS = 20_000;
/** Stacks of a binary's first process symbolized, and dropped, when its tables are read ahead. */
const WARM_STACKS = 256;
/** Stacks symbolized per turn of the event loop, so that a kill's records never wait long behind them. */
const PREPARE_SLICE = 1000;
/**
 * Rehearsals of a whole report (see rehearse) in a reporter's life, REHEARSAL_GAP_MS
 * apart, each of at most REHEARSAL_BUCKETS of a process's stacks.
 */
const REHEARSALS = 3;
const REHEARSAL_GAP_MS = 100;
const REHEARSAL_BUCKETS = 2000;

/** One process's locations, symbolized from its mirrored stacks while it lives. */
interface Prepared {
  target: GoTarget;
  bias: number;
  /** Made at the first slice: reading the symbol tables is kept out of the mirror's pass. */
  table?: LocationTable;
  /** What table symbolizes with. */
  symbolizer?: Symbolizer;
  queue: Array<readonly number[]>;
  /** How far into queue the stacks are symbolized. */
  done: number;
  /** Its report has been rehearsed (or there were no rehearsals left). */
  rehearsed?: boolean;
}

/**
 * Turns a finished capture into its outputs, once per process: the profile file,
 * the event, and the summary on stderr. Shared by `run` and `watch`.
 */
export class KillReporter {
  private reported = new Set<number>();
  private uploads: Array<Promise<void>> = [];
  private symbolizers = new Map<GoTarget, Symbolizer | undefined>();
  private prepared = new Map<number, Prepared>();
  private preparing: ReturnType<typeof setImmediate> | undefined;
  private preloading = new Set<GoTarget>();
  private rehearsalsLeft = REHEARSALS;
  private style = terminalStyle(process.stderr);
  bpftraceLost: string | undefined;

  constructor(private o: KillReporterOptions) {}

  hasReported(pid: number): boolean {
    return this.reported.has(pid);
  }

  /** Reports pid if the probes saw it killed; returns the event, or undefined if there is nothing to say. */
  report(pid: number): KillEvent | undefined {
    const { captures } = this.o;
    if (this.reported.has(pid)) return undefined;
    const capture = captures.capture(pid, this.o.mirror?.buckets(pid));
    if (!capture || (!capture.victim && !capture.header)) return undefined;
    this.reported.add(pid);
    const exec = captures.exec(pid);
    const fallback = this.o.fallback?.(pid);
    const walked = capture.header ? captures.targetById(capture.header.targetId) : undefined;
    const target = walked ?? exec?.target ?? fallback?.target;
    const prepared = this.prepared.get(pid);
    this.forget(pid);
    const locations = ctxLocations(prepared, target, capture.header?.bias);
    const { event, sites, growth, baseError, phases } = reportKill(capture, {
      target,
      // Only a walk gives something to symbolize.
      symbolizer: target && capture.header ? this.symbolizer(target) : undefined,
      outDir: this.o.outDir,
      lostEvents: captures.lostEvents,
      ...this.o.placement(pid),
      firstSeenMs: capture.firstSeenMs,
      exe: exec?.path ?? fallback?.exe,
      stillRunning: capture.exited ? undefined : stillRunning(pid),
      noProfileReason: this.bpftraceLost ? `bpftrace exited early: ${this.bpftraceLost}` : (exec?.why ?? fallback?.why),
      base: this.o.baseAgeMs ? () => this.o.mirror?.base(pid, capture.firstSeenMs) : undefined,
      locations,
      onSyncFailed: this.o.warn,
    });
    if (baseError) this.o.warn(`no base profile for pid ${pid}: ${baseError}`);
    this.o.verbose?.(captureTimeline(capture, phases) + (locations ? `; ${prepared!.done} stacks symbolized before death` : ""));
    this.o.events.emit(event);
    this.o.summary?.(renderKillSummary(event, sites, this.style, this.o.baseAgeMs ? { growth } : undefined));
    if (this.o.upload && event.profile) this.uploads.push(this.send(this.o.upload, event));
    captures.forget(pid);
    return event;
  }

  /**
   * Symbolizes the stacks the live mirror found for pid, a slice at a time (the mirror's
   * onFound): from PREPARE_MIN_BUCKETS, or below it within SMALL_PREPARED_STACKS.
   */
  prepare(pid: number, found: MirrorFound): void {
    let p = this.prepared.get(pid);
    if (p && (p.target !== found.target || p.bias !== found.bias)) this.forget(pid);
    p = this.prepared.get(pid);
    if (!p) {
      if (this.reported.has(pid)) return;
      const min = this.o.prepareMinBuckets ?? PREPARE_MIN_BUCKETS;
      if (found.total < min && this.smallStacks(min) + found.total > SMALL_PREPARED_STACKS) return this.preloadSoon(found);
      // Every stack mirrored so far, not only this pass's.
      const all = this.o.mirror ? [...this.o.mirror.buckets(pid).values()] : found.buckets;
      p = { target: found.target, bias: found.bias, queue: all.map((b) => b.stack), done: 0 };
      this.prepared.set(pid, p);
    } else for (const b of found.buckets) p.queue.push(b.stack);
    this.preparing ??= setImmediate(() => this.prepareSome());
  }

  /**
   * Stacks prepared for processes still under `min` buckets: what SMALL_PREPARED_STACKS
   * bounds. One that has grown past it would be prepared anyway, and no longer counts.
   */
  private smallStacks(min: number): number {
    let stacks = 0;
    for (const p of this.prepared.values()) if (p.queue.length < min) stacks += p.queue.length;
    return stacks;
  }

  /** Drops what was prepared for pid (it was reported, or the mirror forgot it). */
  forget(pid: number): void {
    this.prepared.delete(pid);
  }

  private prepareSome(): void {
    this.preparing = undefined;
    let budget = PREPARE_SLICE;
    for (const p of this.prepared.values()) {
      if (p.done === p.queue.length) continue;
      if (p.symbolizer?.unchanged?.() === false) Object.assign(p, { table: undefined, symbolizer: undefined, done: 0 });
      if (!p.table) {
        p.symbolizer = this.symbolizer(p.target);
        p.table = locationTableFor(p.target, p.symbolizer, p.bias);
      }
      const slice = p.queue.slice(p.done, p.done + budget);
      p.table.prepare(slice);
      p.done += slice.length;
      budget -= slice.length;
      if (budget <= 0) break;
    }
    if ([...this.prepared.values()].some((p) => p.done < p.queue.length)) this.preparing = setImmediate(() => this.prepareSome());
    for (const [pid, p] of this.prepared) {
      if (p.rehearsed || p.done < p.queue.length) continue;
      p.rehearsed = true;
      this.rehearse(pid);
    }
  }

  /**
   * A kill's whole report (samples, pprof, encoding, sites, the event and the summary)
   * built from a prepared process's own stacks with made-up counters, and thrown away;
   * nothing is written or emitted. warmCapturePath runs the same code on made-up stacks
   * at start, yet on 0.27 run's first real report at 500 buckets still encoded in 8-12
   * ms, against 1.5-3.5 ms for encoding the same profile again: real stacks, names and
   * inlined frames take paths the made-up ones do not. A few rounds, a little apart.
   */
  private rehearse(pid: number): void {
    // Checked before the stacks are copied: watch prepares every process, and only the first few rehearse.
    const p = this.prepared.get(pid);
    if (this.rehearsalsLeft <= 0 || !p?.table) return;
    const stacks = this.o.mirror ? [...this.o.mirror.buckets(pid).values()].slice(0, REHEARSAL_BUCKETS) : [];
    // A process with nothing to rehearse on leaves the rounds to the next one prepared.
    if (!stacks.length) return;
    this.rehearsalsLeft--;
    const { event, sites } = reportKill(rehearsalCapture(pid, stacks, p.bias), {
      target: p.target,
      symbolizer: p.symbolizer,
      outDir: this.o.outDir,
      lostEvents: 0,
      where: {},
      limitBytes: null,
      firstSeenMs: performance.now(),
      locations: p.table,
      rehearsal: true,
    });
    renderKillSummary(event, sites, this.style);
    setTimeout(() => this.rehearse(pid), REHEARSAL_GAP_MS).unref();
  }

  /** Resolves once every upload started so far has finished (or given up), and every profile written is fsynced. */
  async flushUploads(): Promise<void> {
    await Promise.all([...this.uploads, writesSynced()]);
  }

  private async send(target: UploadTarget, event: KillEvent): Promise<void> {
    const profile = event.profile!;
    const now = Date.now() / 1000;
    const result = await uploadProfile(target, new Uint8Array(readFileSync(profile)), {
      appName: defaultAppName(event.comm),
      pid: event.pid,
      comm: event.comm,
      startSec: now - 10,
      endSec: now,
      labels: { reason: event.event, ...containerLabels(event.container) },
    });
    const url = redactUrl(target.url);
    if (!result.ok) this.o.warn(`upload of ${profile} to ${url} failed after ${result.attempts} attempts (${result.error}); the profile stays on disk`);
    this.o.events.emit({
      event: "upload",
      time: nowIso(),
      pid: event.pid,
      profile,
      url,
      ok: result.ok,
      attempts: result.attempts,
      error: result.ok ? null : (result.error ?? "failed"),
    });
  }

  /**
   * Reads t's symbol tables now rather than at a kill (13-15 ms for a 2 MB test program
   * when read whole, more for a large one, at the moment the host is shortest of memory).
   * For `run`, whose one program is the one expected to die, and for watch's first few
   * binaries. Quietly: tables that cannot be read are warned about at a kill, if one comes.
   */
  preload(t: GoTarget): void {
    if (this.symbolizers.has(t)) return;
    const symbolizer = loadSymbolizer(t, () => {});
    if (symbolizer) this.keep(t, symbolizer);
  }

  /**
   * preload on a later turn of the event loop, if there is room to keep the tables of
   * found's binary; and symbolize a few of found's stacks into a table that is then
   * dropped. That runs the symbolizer's code before a kill needs it: at 500 buckets on
   * 0.23, watch's symbolize+pprof took 9-13 ms with the tables read but the code never
   * run, against 1 ms for a table prepared ahead.
   */
  private preloadSoon(found: MirrorFound): void {
    const t = found.target;
    if (this.symbolizers.has(t) || this.preloading.has(t) || this.symbolizers.size + this.preloading.size >= SYMBOLIZERS_KEPT) return;
    this.preloading.add(t);
    setImmediate(() => {
      this.preloading.delete(t);
      this.preload(t);
      const symbolizer = this.symbolizers.get(t);
      if (symbolizer) locationTableFor(t, symbolizer, found.bias).prepare(found.buckets.slice(0, WARM_STACKS).map((b) => b.stack));
    });
  }

  /**
   * Symbol tables are read once per binary while its processes die together (a cgroup
   * OOM-killed at once); only the last few binaries' are kept, as each holds its file.
   */
  private symbolizer(t: GoTarget): Symbolizer | undefined {
    if (this.symbolizers.get(t)?.unchanged?.() === false) this.symbolizers.delete(t);
    if (!this.symbolizers.has(t)) this.keep(t, loadSymbolizer(t, this.o.warn));
    return this.symbolizers.get(t);
  }

  private keep(t: GoTarget, symbolizer: Symbolizer | undefined): void {
    if (this.symbolizers.size >= SYMBOLIZERS_KEPT) this.symbolizers.delete(this.symbolizers.keys().next().value!);
    this.symbolizers.set(t, symbolizer);
  }
}

/** What was prepared for a process, if it is for the binary and load address its walk reported. */
function ctxLocations(p: Prepared | undefined, target: GoTarget | undefined, bias: number | undefined): LocationTable | undefined {
  return p && p.target === target && p.bias === bias && p.symbolizer?.unchanged?.() !== false ? p.table : undefined;
}

/**
 * "capture of pid N: kill → first record 3 ms, → last record 40 ms, → reported 41 ms, → on
 * disk 60 ms (samples 2.0, ...)": the kernel's kill time (the victim's own thread at its
 * SIGKILL) put on performance.now()'s clock.
 */
function captureTimeline(c: ProcessCapture, phases: PhaseTimes): string {
  const now = performance.now();
  const mono = monotonicMs();
  const kill = c.identity && mono !== undefined ? nsToMs(c.identity.killNs) - (mono - now) : undefined;
  const from = kill ?? c.firstSeenMs;
  const at = (t: number) => `${Math.round(t - from)} ms`;
  const reported = now - phases.steps.reduce((sum, [, ms]) => sum + ms, 0);
  // The kill's profile is on disk when its write step ends: the site table and a base
  // profile come after it (a base of 100,000 buckets took 0.9 s, which this line used to count).
  let onDisk = reported;
  for (const [step, ms] of phases.steps) {
    onDisk += ms;
    if (step === "write") break;
  }
  return (
    `capture of pid ${c.pid}: ${kill !== undefined ? `kill → first record ${at(c.firstSeenMs)}, → ` : "first record → "}last record ${at(c.lastSeenMs)}, ` +
    `→ reported ${at(reported)}, → on disk ${at(onDisk)}, → done ${at(now)}${phases.steps.length ? ` (${phases})` : ""}`
  );
}
