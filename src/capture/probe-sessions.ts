import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { config } from "../config.ts";
import type { GoTarget } from "../gobinary/go-target.ts";
import { versionAtLeast, type BpftraceHost } from "../probes/bpftrace-host.ts";
import type { GeneratedScript } from "../probes/generate.ts";
import { sessionScript, type ScriptMode } from "../probes/session-script.ts";
import type { WalkLimits } from "../probes/walk-templates.ts";
import { monotonicMs } from "../process/libc.ts";
import { pageOutCompiler } from "../process/pageout.ts";
import { CounterMapReader } from "./counter-map.ts";
import { BpftraceSession } from "../stream/bpftrace-session.ts";
import type { WalkRecord } from "../stream/records.ts";
import { BinaryRegistry, type ExecInfo } from "./binary-registry.ts";
import { BpftraceLifecycle, type RunningSession, type SessionFactory } from "./bpftrace-lifecycle.ts";
import { ExecPolicy, type ExecMode } from "./exec-policy.ts";
import { TargetRowWriter } from "./target-rows.ts";
import { StacksSeenWriter } from "./stacks-seen.ts";
import { linkTargets } from "./uprobe-links.ts";
import type { MemProfileBucket } from "../gobinary/mem-profile-bucket.ts";
import { CaptureAssembler, type ProcessCapture } from "./walk-capture.ts";

export type { ExecInfo } from "./binary-registry.ts";
export type SessionMode = ExecMode;

export interface ProbeSessionEvents {
  onRecord?(r: WalkRecord, pid: number | undefined): void;
  onWarning(message: string): void;
  onVerbose?(message: string): void;
  /** A Go binary was found after start: its walk is attached (or, without profiling in watch, it gets none). */
  onTargetAdded?(target: GoTarget): void;
  /** The bpftrace process ended while oomprof still needed it. */
  onSessionLost?(why: string): void;
}

/** What the kill reporter reads of the probes' records: one capture per process, and what it ran. */
export interface CaptureSource {
  /** What the probes said of pid, with mirrored stacks filling gaps; undefined if they said nothing. */
  capture(pid: number, mirrored?: Map<number, MemProfileBucket>): ProcessCapture | undefined;
  /** Drops pid's records once reported. */
  forget(pid: number): void;
  targetById(id: number): GoTarget | undefined;
  /** run: a program the child exec'd, as read when it started. */
  exec(pid: number): ExecInfo | undefined;
  readonly lostEvents: number;
}

/**
 * The probes behind one oomprof command: the Go binaries it walks (BinaryRegistry), the
 * bpftrace processes that walk them (BpftraceLifecycle), what happens at exec
 * (ExecPolicy), and the records they produce (CaptureAssembler), wired together.
 */
export class ProbeSessions implements CaptureSource {
  private assembler = new CaptureAssembler();
  private registry: BinaryRegistry;
  private lifecycle: BpftraceLifecycle;
  private execPolicy: ExecPolicy;
  private linkDir: string | undefined;
  private rows = new TargetRowWriter();
  private stacksSeen = new StacksSeenWriter();
  private counterMaps = new CounterMapReader();
  /** Marks could not be written once: the walks print every stack (said once, verbosely). */
  private stacksSeenFailed = false;
  /** Targets in the registry when each running bpftrace's script was generated, by nonce. */
  private scriptTargets = new Map<number, Set<GoTarget>>();

  constructor(
    private host: BpftraceHost,
    private mode: SessionMode,
    private events: ProbeSessionEvents,
    startSession: SessionFactory = (spec, onRecord) =>
      new BpftraceSession(
        { bpftracePath: host.path, script: spec.script.text, unsafe: spec.script.unsafe, canaryNonce: spec.canaryNonce, bufferPages: spec.bufferPages },
        {
          onRecord,
          onBadRecord: (line, why) => events.onWarning(`unparseable probe record (${why}): ${line.slice(0, 120)}`),
          onHelperError: (msg) => events.onVerbose?.(`bpftrace helper error: ${msg}`),
        },
      ),
  ) {
    // watch cannot turn profiling on, so a binary without it has nothing to walk.
    this.registry = new BinaryRegistry((t) => mode.kind === "run" || !t.memProfilingDisabled);
    this.execPolicy = new ExecPolicy(mode, this.registry, (found) => this.addTargets(found), events);
    this.lifecycle = new BpftraceLifecycle({
      host,
      script: (limits, nonce) => this.script(limits, nonce),
      start: startSession,
      onRecord: (r) => this.handle(r),
      events,
      initialBuckets: initialBuckets(host, mode),
      counterMapEntries: config().counterMapEntries,
      pageOut: config().pageOut ? pageOutCompiler : undefined,
      onAttached: (session, nonce) => {
        this.fillRows(session, nonce);
        this.writeStacksSeen(() => this.stacksSeen.replay(session.pid));
      },
      onExited: (session) => {
        this.rows.forget(session.pid);
        this.stacksSeen.forget(session.pid);
        this.counterMaps.forget(session.pid);
      },
      takeCounters: (session, written) => this.counterMaps.take(session.pid, written),
      openCounters: (session) => this.counterMaps.open(session.pid),
    });
  }

  get lostEvents(): number {
    return this.lifecycle.lostEvents;
  }

  /** The walk template the current bpftrace uses. */
  get walk(): string {
    return this.lifecycle.walk;
  }

  /** The binaries walked now. */
  get targets(): GoTarget[] {
    return this.registry.targets;
  }

  targetById(id: number): GoTarget | undefined {
    return this.registry.byIdOf(id);
  }

  targetByInode(inode: number): GoTarget | undefined {
    return this.registry.byInode(inode);
  }

  exec(pid: number): ExecInfo | undefined {
    return this.execPolicy.exec(pid);
  }

  /** Pids of the Go programs run's child exec'd. */
  goExecPids(): number[] {
    return this.execPolicy.goExecPids();
  }

  capture(pid: number, mirrored?: Map<number, MemProfileBucket>): ProcessCapture | undefined {
    return this.assembler.has(pid) ? this.assembler.capture(pid, mirrored) : undefined;
  }

  /** The capture as readiness sees it: without buckets while its counters are still arriving (CaptureAssembler.status). */
  status(pid: number, mirrored?: Map<number, MemProfileBucket>): ProcessCapture | undefined {
    return this.assembler.has(pid) ? this.assembler.status(pid, mirrored) : undefined;
  }

  forget(pid: number): void {
    this.assembler.forget(pid);
  }

  /** Pids the probes have said something about and that are not reported yet. */
  pids(): number[] {
    return this.assembler.pids();
  }

  /** Its binary has a goroutine probe (the count may arrive after the walk's end). */
  countsGoroutines(c: ProcessCapture): boolean {
    return c.header !== undefined && this.targetById(c.header.targetId)?.goroutines !== undefined;
  }

  /** Reads a process's executable; a Go target, or why not. */
  inspect(pid: number, inode: number): Promise<ExecInfo> {
    return this.registry.inspect(pid, inode);
  }

  /** Starts bpftrace with the initial targets and resolves with its probe count once attached. */
  start(initial: GoTarget[]): Promise<number> {
    const added = this.registry.add(initial);
    return this.lifecycle.launch().then((probes) => {
      this.registry.markLive(added, monotonicMs());
      return probes;
    });
  }

  /** When a target's walk went live (monotonic ms), if it has. */
  liveAtMs(t: GoTarget): number | undefined {
    return this.registry.liveAtMs(t);
  }

  /** oomprof's read of the executable with this inode is under way. */
  isReading(inode: number): boolean {
    return this.registry.isReading(inode);
  }

  /** What oomprof read of the executable with this inode, if it has. */
  describe(inode: number) {
    return this.registry.describe(inode);
  }

  /**
   * Adds walks for Go binaries found after start, and resolves once they are live: their
   * rows are written into the running bpftrace's target table (milliseconds). A new
   * bpftrace follows in the background only for what a table cannot add (the runtime-OOM
   * uprobe on a new binary), or, if the table cannot be written, is waited for instead.
   */
  addTargets(found: GoTarget[]): Promise<void> {
    const fresh = this.registry.add(found);
    // Without profiling, watch walks nothing: the caller says so.
    for (const t of found) if (!fresh.includes(t) && !this.registry.byInode(t.inode)) this.events.onTargetAdded?.(t);
    if (!fresh.length) return this.lifecycle.settled();
    const live = () => {
      this.registry.markLive(fresh, monotonicMs());
      for (const t of fresh) {
        this.events.onVerbose?.(`walk live for ${t.path} (${t.buildInfo.goVersion})`);
        this.events.onTargetAdded?.(t);
      }
    };
    const session = this.lifecycle.currentSession;
    const uprobes = fresh.some((t) => t.throwSymbol && t.arch === "amd64");
    // run holds the program at its exec until this resolves: for its own programs it
    // waits for the runtime-OOM uprobe too (a new bpftrace), or a program that runs out of
    // memory within a second or two of its start would die uncaught.
    const waitForUprobes = uprobes && this.mode.kind === "run";
    if (session && this.tryWriteRows(session, fresh)) {
      live();
      if (waitForUprobes) return this.lifecycle.relaunch();
      if (uprobes) this.lifecycle.relaunchSoon(UPROBE_RELAUNCH_DELAY_MS);
      return Promise.resolve();
    }
    return this.lifecycle.relaunch().then(live);
  }

  /**
   * watch: stops walking binaries that have had no process for a while, so a host that
   * builds and runs Go binaries all day does not grow the table, the open descriptors,
   * or keep deleted binaries' blocks. Their rows go with one relaunch, which also forgets
   * the executables seen, so a binary that runs again is read again.
   */
  prune(liveInodes: Set<number>, now = performance.now()): void {
    const gone = this.registry.prune(liveInodes, config().pruneAfterMs, now);
    if (!gone.length) return;
    this.events.onVerbose?.(`no longer walking ${gone.length} binaries without processes: ${gone.map((t) => t.path).join(", ")}`);
    // Out of the running bpftrace's table and its executables seen at once, so one that
    // runs again is read again with no window; a relaunch then drops their uprobes (which
    // pin the file), and they are released once it is done (a kill meanwhile can still be
    // symbolized through them).
    const session = this.lifecycle.currentSession;
    try {
      if (session) this.rows.remove(session.pid, gone);
    } catch (e) {
      this.events.onVerbose?.(`cannot take rows out of bpftrace's table (${(e as Error).message}); the relaunch will`);
    }
    this.lifecycle
      .relaunch()
      .then(() => new Promise((r) => setTimeout(r, 5000)))
      .catch(() => undefined)
      .finally(() => gone.forEach((t) => t.release()));
  }

  /** Starts bpftrace again with every known walk (after it died). */
  restart(): Promise<number> {
    this.execPolicy.continueOrphanedHolds();
    return this.lifecycle.launch();
  }

  /**
   * The live mirror holds pid's bucket list, stacks and all, from bucket `from` to its
   * end (0: no longer): the walk at pid's death prints stacks only for newer buckets.
   */
  markMirrored(pid: number, from: number): void {
    this.writeStacksSeen(() => this.stacksSeen.set(pid, from, this.lifecycle.currentSession?.pid));
  }

  ensureCapacity(buckets: number, bucketsPerFiring = 0): void {
    this.lifecycle.ensureCapacity(buckets, bucketsPerFiring);
  }

  stop(): Promise<unknown> {
    if (this.linkDir) rmSync(this.linkDir, { recursive: true, force: true });
    return this.lifecycle.stop().finally(() => {
      this.rows.close();
      this.stacksSeen.close();
    });
  }

  private writeStacksSeen(write: () => void): void {
    try {
      write();
    } catch (e) {
      if (this.stacksSeenFailed) return;
      this.stacksSeenFailed = true;
      this.events.onVerbose?.(`cannot tell the walk which stacks oomprof has (${(e as Error).message}); it prints them all`);
    }
  }

  /** Writes targets' rows into a running bpftrace; false (and why, verbosely) if it cannot. */
  private tryWriteRows(session: RunningSession, targets: GoTarget[]): boolean {
    try {
      this.rows.write(
        session.pid,
        targets.map((t) => [this.registry.idOf(t), t]),
      );
      return true;
    } catch (e) {
      this.events.onVerbose?.(`cannot add rows to bpftrace's target table (${(e as Error).message}); starting a new bpftrace instead`);
      return false;
    }
  }

  /** A new bpftrace attached: give it the binaries added since its script was generated. */
  private fillRows(session: RunningSession, nonce: number): void {
    const known = this.scriptTargets.get(nonce) ?? new Set();
    for (const n of this.scriptTargets.keys()) if (n <= nonce) this.scriptTargets.delete(n);
    const added = this.registry.targets.filter((t) => !known.has(t));
    if (added.length && !this.tryWriteRows(session, added)) this.lifecycle.relaunchSoon(0);
  }

  private script(limits: Partial<WalkLimits>, nonce: number): GeneratedScript {
    this.linkDir ??= mkdtempSync(join(tmpdir(), "oomprof-bin-"));
    const targets = this.registry.table;
    this.scriptTargets.set(nonce, new Set(this.registry.targets));
    const mode: ScriptMode = this.mode.kind === "run" ? { kind: "run", rootPid: this.mode.rootPid } : this.mode;
    return sessionScript({ host: this.host, targets, mode, limits, uprobeLinks: linkTargets(this.linkDir, targets), canary: { pid: process.pid, nonce } });
  }

  private handle(r: WalkRecord): void {
    const pid = this.assembler.add(r);
    this.execPolicy.onRecord(r);
    this.events.onRecord?.(r, pid);
  }
}

/**
 * A new Go binary's runtime-OOM uprobe needs a new bpftrace; relaunches asked for within
 * this long share one, so a burst of new binaries costs one compile.
 */
const UPROBE_RELAUNCH_DELAY_MS = 1000;

/**
 * Buckets the first output buffer is sized for. A process can make its stacks and die
 * within a second, before the mirror sees them and the buffer grows. 0.19+ share one
 * ring buffer, so it starts large: 32 MiB (about 100,000 buckets) for `run`, whose
 * programs may be born to die; 16 MiB (about 50,000) for `watch`, which mostly meets
 * long-lived services the mirror sizes it for, and whose resident memory counts
 * (bpftrace maps the ring twice: RSS shows it doubled). 0.17-0.18 have one buffer per
 * CPU, so they start at 20,000 buckets' worth.
 */
function initialBuckets(host: BpftraceHost, mode: SessionMode): number {
  if (!versionAtLeast(host.version, 0, 19)) return 20_000;
  return mode.kind === "run" ? 90_000 : 45_000;
}
