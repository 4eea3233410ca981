import type { BpftraceHost } from "../probes/bpftrace-host.ts";
import { bucketCapacity, bufferPages } from "../probes/buffer-size.ts";
import type { GeneratedScript } from "../probes/generate.ts";
import { WHILE_DEFAULTS, type WalkLimits } from "../probes/walk-templates.ts";
import type { WalkRecord } from "../stream/records.ts";

/** The part of a running bpftrace the lifecycle needs (a BpftraceSession, or a fake in tests). */
export interface RunningSession {
  readonly pid: number;
  /** Resolves with the probe count once every probe is attached; rejects if it never is. */
  readonly attached: Promise<number>;
  readonly exited: Promise<unknown>;
  readonly lostEvents: number;
  stop(): void;
  errorSummary(): string;
}

export interface LaunchSpec {
  script: GeneratedScript;
  canaryNonce: number;
  bufferPages: number;
}

export type SessionFactory = (spec: LaunchSpec, onRecord: (r: WalkRecord) => void) => RunningSession;

export interface LifecycleEvents {
  onWarning(message: string): void;
  onVerbose?(message: string): void;
  /** The current bpftrace ended while oomprof still needed it. */
  onSessionLost?(why: string): void;
}

export interface LifecycleOptions {
  host: BpftraceHost;
  /** The script for the current targets, with these loop limits and canary nonce. */
  script(limits: Partial<WalkLimits>, nonce: number): GeneratedScript;
  start: SessionFactory;
  /** Every record of every bpftrace, the current one and those retiring. */
  onRecord(r: WalkRecord): void;
  events: LifecycleEvents;
  /** Buckets the first output buffer is sized for. */
  initialBuckets: number;
  /** The counter map's size (0.27+) whatever the buckets expected (config's test knob). */
  counterMapEntries?: number;
  /** Gives back the pages of bpftrace's compiler once it is attached (see process/pageout.ts). */
  pageOut?(pid: number): { bytes: number } | { error: string };
  /**
   * A bpftrace has attached, and is about to replace the current one: whatever was added
   * since its script was generated must be given to it now.
   */
  onAttached?(session: RunningSession, nonce: number): void;
  /** A bpftrace has exited. */
  onExited?(session: RunningSession): void;
  /**
   * The walk's counters that session's map holds (a script with a counter map), taken out
   * of it as C records. Asked at a walk's B line (with the count it gives), and at the exit
   * of a process whose walk broke off before one. Throws when the map cannot be read.
   */
  takeCounters?(session: RunningSession, written?: number): WalkRecord[];
  /**
   * session's script has a counter map: find it now, once attached, rather than at a
   * death (finding a bpftrace's map by name took 4-9 ms). Errors are left to takeCounters.
   */
  openCounters?(session: RunningSession): void;
  /** How long a replaced bpftrace may keep running so a walk in progress in it can finish. */
  retireGraceMs?: number;
  /** How long a replaced bpftrace's output is read before it is judged idle. */
  retireSettleMs?: number;
}

/**
 * The bpftrace processes behind one oomprof command. A change of targets or buffer size
 * means a new bpftrace: it is started with everything, and the old one is stopped only
 * once the new one is attached, so there is no moment without probes. Records from the
 * overlap reach onRecord from both; the assembler de-duplicates them.
 */
export class BpftraceLifecycle {
  private current: RunningSession | undefined;
  /** Every bpftrace still running: the current one, retiring ones, one still attaching. */
  private live = new Set<RunningSession>();
  /** Walks each bpftrace has started (H) and not yet ended (E, or X: the process is gone). */
  private walking = new Map<RunningSession, Set<number>>();
  private retiredLost = 0;
  private stopping = false;
  private rebuild: Promise<void> = Promise.resolve();
  /** A relaunch queued behind the current one and not started yet. */
  private queuedLaunch: Promise<void> | undefined;
  private nonce = 0;
  private limits: Partial<WalkLimits> = {};
  private expectedBuckets: number;
  private capacity = 0;
  private pages = 0;
  private growing = false;
  private soon: ReturnType<typeof setTimeout> | undefined;
  /** The walk template the current bpftrace uses. */
  walk = "";

  constructor(private o: LifecycleOptions) {
    this.expectedBuckets = o.initialBuckets;
  }

  get lostEvents(): number {
    let n = this.retiredLost;
    for (const s of this.live) n += s.lostEvents;
    return n;
  }

  /** bpftraces running now (the current one, and any retiring or attaching). */
  get running(): number {
    return this.live.size;
  }

  /** Buffer pages of the current bpftrace. */
  get bufferPages(): number {
    return this.pages;
  }

  /** Starts a bpftrace (the first, or again after one died); resolves with its probe count once attached. */
  async launch(): Promise<number> {
    for (let vanished = 0; ;) {
      try {
        return await this.launchOnce();
      } catch (e) {
        // A binary deleted between writing the script and bpftrace reading it: its uprobe
        // cannot attach, and the next script leaves it out.
        if (/uprobe target file .* does not exist/.test((e as Error).message) && ++vanished <= 3) {
          this.o.events.onVerbose?.(`a binary was deleted while bpftrace started; starting it again without that binary's uprobe`);
          continue;
        }
        // An older or stricter verifier than the one these bounds were measured on:
        // halve the loop bounds and try again rather than capture nothing.
        const msg = (e as Error).message;
        const current = { ...WHILE_DEFAULTS, ...this.limits };
        if (!/Error loading|too large|processed \d+ insns/i.test(msg) || current.counterIterations <= 250) throw e;
        this.limits = {
          ...this.limits,
          counterIterations: Math.floor(current.counterIterations / 2),
          stackIterations: Math.max(50, Math.floor(current.stackIterations / 2)),
        };
        this.o.events.onWarning(`the kernel's verifier rejected the walk; retrying with ${this.limits.counterIterations} buckets per firing`);
      }
    }
  }

  /**
   * Starts a bpftrace with the targets as they are once the current rebuild is done.
   * Rebuilds are serialised, and one that has not started yet will carry every target
   * added since, so callers share it: ten new binaries at once cost one relaunch.
   */
  relaunch(): Promise<void> {
    if (this.queuedLaunch) return this.queuedLaunch;
    const next = this.rebuild
      .catch(() => undefined)
      .then(() => {
        this.queuedLaunch = undefined;
        return this.launch();
      })
      .then(() => undefined);
    this.queuedLaunch = next;
    this.rebuild = next;
    return next;
  }

  /**
   * A relaunch in delayMs, shared by everything that asks meanwhile: for what only a new
   * bpftrace can add (a uprobe on a new binary), when nothing waits for it.
   */
  relaunchSoon(delayMs: number): void {
    if (this.soon || this.stopping) return;
    this.soon = setTimeout(() => {
      this.soon = undefined;
      this.relaunch().catch((e) => this.o.events.onWarning(`could not restart bpftrace: ${(e as Error).message}`));
    }, delayMs);
  }

  /** The bpftrace the probes come from now, once one is attached. */
  get currentSession(): RunningSession | undefined {
    return this.current;
  }

  /** Resolves once any rebuild under way is done. */
  settled(): Promise<void> {
    return this.rebuild;
  }

  /**
   * The walk must fit the output buffer, which is sized when bpftrace starts. When the
   * mirror sees more buckets than the current buffer holds, start a bigger one.
   */
  ensureCapacity(buckets: number, bucketsPerFiring = 0): void {
    if (this.growing) return;
    const expected = Math.ceil(buckets * 1.5);
    // At the size cap a restart would buy nothing.
    const buffer = buckets > this.capacity && bufferPages(this.o.host.version, expected) > this.pages;
    const extra = this.walk === "while" ? extraCounterProbesFor(bucketsPerFiring, { ...WHILE_DEFAULTS, ...this.limits }) : 0;
    const walk = extra > (this.limits.extraCounterProbes ?? WHILE_DEFAULTS.extraCounterProbes);
    if (!buffer && !walk) return;
    if (buffer) this.expectedBuckets = expected;
    if (walk) this.limits = { ...this.limits, extraCounterProbes: extra };
    this.growing = true;
    const what = [buffer && "output buffer", walk && `walk (${extra} more counter probes a firing)`].filter(Boolean).join(" and ");
    this.relaunch()
      .then(() => this.o.events.onVerbose?.(`${what} grown for ${buckets} buckets (${this.pages} pages)`))
      // A bpftrace still compiling when oomprof stops fails to attach: nothing to say then.
      .catch((e) => this.stopping || this.o.events.onWarning(`could not grow the ${what}: ${(e as Error).message}`))
      .finally(() => {
        this.growing = false;
      });
  }

  /** Stops every bpftrace, attaching ones too; resolves when they are gone (or after 2.5 s). */
  stop(): Promise<unknown> {
    this.stopping = true;
    if (this.soon) clearTimeout(this.soon);
    const all = [...this.live];
    for (const s of all) s.stop();
    return Promise.race([Promise.all(all.map((s) => s.exited)), new Promise((r) => setTimeout(r, 2500))]);
  }

  private async launchOnce(): Promise<number> {
    const pages = bufferPages(this.o.host.version, this.expectedBuckets);
    const nonce = ++this.nonce;
    // The counter map (0.27+) is sized with the output buffer, for the buckets expected.
    const script = this.o.script({ counterMapEntries: this.o.counterMapEntries ?? this.expectedBuckets, ...this.limits }, nonce);
    const session = this.o.start({ script, canaryNonce: nonce, bufferPages: pages }, (r) => {
      // The counters first, so the B line (or the exit) comes after them as it would after C lines.
      if (script.counterMap && (r.tag === "B" || (r.tag === "X" && this.walking.get(session)?.has(r.pid)))) {
        this.takeCounters(session, r.tag === "B" ? r.written : undefined);
      }
      this.noteWalk(session, r);
      this.o.onRecord(r);
    });
    this.live.add(session);
    void session.exited.then(() => {
      this.live.delete(session);
      this.o.onExited?.(session);
      if (!this.stopping && this.current === session) this.o.events.onSessionLost?.(session.errorSummary() || "bpftrace exited");
    });
    if (this.stopping) session.stop();
    const probes = await session.attached;
    if (!this.stopping) this.o.onAttached?.(session, nonce);
    if (script.counterMap) this.o.openCounters?.(session);
    const old = this.current;
    this.current = session;
    this.walk = script.walk;
    this.pages = pages;
    this.capacity = bucketCapacity(this.o.host.version, pages);
    if (old) this.retire(old, session);
    else this.dropCompilerPages(session);
    return probes;
  }

  private takeCounters(session: RunningSession, written: number | undefined): void {
    let records: WalkRecord[];
    try {
      records = this.o.takeCounters?.(session, written) ?? [];
    } catch (e) {
      this.o.events.onWarning(`cannot read the walk's counters from bpftrace's map (${(e as Error).message}): the capture will be partial`);
      return;
    }
    for (const c of records) this.o.onRecord(c);
  }

  private noteWalk(session: RunningSession, r: WalkRecord): void {
    if (r.tag !== "H" && r.tag !== "E" && r.tag !== "X") return;
    let walking = this.walking.get(session);
    if (!walking) this.walking.set(session, (walking = new Set()));
    if (r.tag === "H") walking.add(r.pid);
    else walking.delete(r.pid);
  }

  /**
   * Stops a replaced bpftrace. A walk it started before its successor attached would not
   * start again there (each thread's SIGKILL fires once), so it is let finish, for up to
   * retireGraceMs; with none under way it stops at once, so bpftraces do not pile up
   * (each holds ~40 MB, and its ring buffer) when new binaries keep appearing.
   */
  private retire(old: RunningSession, successor: RunningSession): void {
    const graceMs = this.o.retireGraceMs ?? 5000;
    const stop = () => {
      old.stop();
      void old.exited.then(() => {
        this.walking.delete(old);
        // Count what it lost to the end.
        this.retiredLost += old.lostEvents;
        // Only now: pages the old bpftrace also maps are not paged out.
        this.dropCompilerPages(successor);
      });
    };
    // First let records already in its buffers arrive: a walk's H may be in flight.
    setTimeout(() => {
      const started = [...(this.walking.get(old) ?? [])];
      if (!started.length) return stop();
      const deadline = performance.now() + graceMs;
      const timer = setInterval(() => {
        const walking = this.walking.get(old);
        if (performance.now() < deadline && started.some((pid) => walking?.has(pid))) return;
        clearInterval(timer);
        stop();
      }, 50);
    }, this.o.retireSettleMs ?? 300);
  }

  /** An attached bpftrace needs its compiler no more: give those pages back. */
  private dropCompilerPages(session: RunningSession): void {
    if (this.stopping || this.current !== session || !this.o.pageOut) return;
    const r = this.o.pageOut(session.pid);
    if ("error" in r) this.o.events.onVerbose?.(`bpftrace's compiler pages stay resident: ${r.error}`);
    else this.o.events.onVerbose?.(`paged out ${Math.round(r.bytes / 2 ** 20)} MiB of bpftrace's compiler libraries (LLVM, Clang)`);
  }
}

/**
 * The while walk prints counterIterations buckets per probe at each firing (one per
 * thread at its SIGKILL). Probes that only continue the counter phase cost about as much
 * to verify as the walk itself (~0.4 s each on 0.17), so they are added only when a live
 * process needs them, by a relaunch in the background; a quarter again as margin, for
 * buckets added between the last mirror pass and the kill.
 */
export function extraCounterProbesFor(bucketsPerFiring: number, limits: WalkLimits): number {
  const probes = Math.ceil((bucketsPerFiring * 1.25) / limits.counterIterations);
  return Math.min(MAX_EXTRA_COUNTER_PROBES, Math.max(0, probes - 1));
}

/** 9 probes a firing: 36,000 buckets per thread, ~4 s to verify on 0.17. */
export const MAX_EXTRA_COUNTER_PROBES = 8;
