import { threadCount } from "../process/liveness.ts";
import { statSync } from "node:fs";
import type { GoTarget } from "../gobinary/go-target.ts";
import { loadBias, ProcessMemory, readMaps, residentBytes } from "../process/memory.ts";
import { readLiveBuckets, readProfileState } from "./live-buckets.ts";
import { CounterHistory, type BaseCounters } from "./counter-readings.ts";
import type { MemProfileBucket } from "../gobinary/mem-profile-bucket.ts";

interface Tracked {
  mem: ProcessMemory;
  bias: number;
  target: GoTarget;
  buckets: Map<number, MemProfileBucket>;
  /** The same buckets in the order found: a counter reading covers a prefix of it. */
  found: MemProfileBucket[];
  /** Earlier counter readings (none with --base-age 0, or an unknown record layout). */
  history: CounterHistory | undefined;
  /** The least resident size seen since the last reading: growth is measured from it. */
  rssFloor: number;
  /** Every bucket from this one to the list's end is mirrored, stack and all (0: none yet). */
  wholeFrom: number;
  /** Passes in a row that found no new bucket: an idle process is read less often. */
  quietPasses: number;
  /** When it is read next (performance.now()); Infinity once its walk has begun (freeze). */
  dueMs: number;
}

/**
 * An idle process's list is read every pass at first, then every 2nd, 4th, 8th: watch
 * keeps hundreds of idle services cheap, and a new bucket in one is still mirrored within
 * seconds (until then its stack travels at death, as any new bucket's does).
 */
const MAX_SKIPPED_PASSES = 8;

export interface LiveMirrorOptions {
  intervalMs: number;
  /**
   * When set, passes come only as often as some process is due (its back-off) and at
   * least this often, instead of every interval: an idle host's watch wakes every few
   * seconds, not every second. New candidates must then be announced with wake().
   */
  idleIntervalMs?: number;
  /**
   * Called after each pass with the bucket count of every mirrored process together
   * (the output buffer holds them all), and the most buckets any one process would ask
   * of each of its threads' SIGKILL firings (the while walk's budget is per firing).
   */
  onCount?: (totalBuckets: number, bucketsPerFiring: number) => void;
  /**
   * Called when every bucket from `from` to the end of pid's list is mirrored (a newer
   * `from` as the list grows), and with 0 once pid is forgotten: the walk at its death
   * need print no stack from `from` on.
   */
  onWhole?: (pid: number, from: number) => void;
  /** How long before death the base profile should be (0: no counter readings at all). */
  baseAgeMs?: number;
  /** Called with the time each kept counter reading took (`--verbose`). */
  onReading?: (pid: number, buckets: number, ms: number) => void;
  /**
   * Called with the buckets a pass found (newest first), and with how many pid has in
   * all: their stacks can be symbolized before pid dies.
   */
  onFound?: (pid: number, found: MirrorFound) => void;
  /** Called when pid is forgotten: what was kept for it can go. */
  onForget?: (pid: number) => void;
}

export interface MirrorFound {
  target: GoTarget;
  bias: number;
  /** New this pass, newest first. */
  buckets: MemProfileBucket[];
  /** How many the mirror holds for the process in all. */
  total: number;
}

/** Resident growth since the last reading that makes another worth taking. */
const GROWTH_BYTES = 1 << 20;

/**
 * A read-ahead copy of the stacks of a live target's memory-profile buckets, taken
 * through /proc/PID/mem. Buckets never move and their stacks never change, so at death
 * the probes only have to deliver counters for the buckets mirrored here, and stacks
 * only for the newest ones (which come first in the runtime's list).
 */
/** Below this many buckets one SIGKILL firing walks them all whatever the walk. */
const PER_FIRING_CHECK = 2000;

export class LiveMirror {
  private tracked = new Map<number, Tracked>();
  private timer: ReturnType<typeof setTimeout> | undefined;
  private nextPassAt = Infinity;
  /** A candidate the last pass could not track yet (not yet exec'd): look again next interval. */
  private untracked = false;
  private closed = false;

  constructor(
    private candidates: () => Iterable<[pid: number, targets: GoTarget[]]>,
    private options: LiveMirrorOptions,
  ) {}

  start(): void {
    if (!this.timer) this.schedule(this.options.intervalMs);
  }

  /** A new candidate: its first pass comes within one interval, however idle the rest. */
  wake(): void {
    if (this.timer && this.nextPassAt > performance.now() + this.options.intervalMs) this.schedule(this.options.intervalMs);
  }

  private schedule(delayMs: number): void {
    if (this.timer) clearTimeout(this.timer);
    this.nextPassAt = performance.now() + delayMs;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.tick();
      if (!this.closed) this.schedule(this.nextDelayMs());
    }, delayMs);
  }

  /** Until the first tracked process is due, within [intervalMs, idleIntervalMs]. */
  private nextDelayMs(): number {
    const { intervalMs, idleIntervalMs } = this.options;
    if (idleIntervalMs === undefined || this.untracked) return intervalMs;
    const now = performance.now();
    let due = now + idleIntervalMs;
    for (const t of this.tracked.values()) due = Math.min(due, t.dueMs);
    return Math.min(idleIntervalMs, Math.max(intervalMs, due - now));
  }

  /** Stops reading; what was mirrored stays available to buckets(). */
  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    for (const t of this.tracked.values()) t.mem.close();
    this.closed = true;
  }

  /**
   * pid's walk has begun: it is dying, and nothing read from it now would be used. Its
   * mirrored buckets stay; it is not read again. A read of a dying process's memory
   * also waits for the kernel's hold on its address space, which its teardown keeps.
   */
  freeze(pid: number): void {
    const t = this.tracked.get(pid);
    if (t) t.dueMs = Infinity;
  }

  /** Drops what is known about pid (its capture is reported, or it exited normally). */
  forget(pid: number): void {
    const t = this.tracked.get(pid);
    if (!t) return;
    if (!this.closed) t.mem.close();
    this.tracked.delete(pid);
    if (t.wholeFrom) this.options.onWhole?.(pid, 0);
    this.options.onForget?.(pid);
  }

  /** The mirrored buckets of pid, by address (empty when it was never mirrored). */
  buckets(pid: number): Map<number, MemProfileBucket> {
    return this.tracked.get(pid)?.buckets ?? new Map();
  }

  /**
   * The base profile's buckets for a death of pid at deathMs (performance.now()): the
   * reading closest to the base age, with its age; undefined when there is none.
   */
  base(pid: number, deathMs: number): BaseCounters | undefined {
    const t = this.tracked.get(pid);
    return t?.history?.base(t.found, deathMs);
  }

  /**
   * Every few seconds, a reading of every bucket's counters, but only while the process
   * grows: an idle one costs a read of /proc/PID/statm per interval, nothing more.
   */
  private readCounters(pid: number, t: Tracked): void {
    const now = performance.now();
    if (!t.history?.startCheck(now)) return;
    const rss = residentBytes(pid);
    if (rss === undefined) return;
    if (rss < t.rssFloor + GROWTH_BYTES) {
      t.rssFloor = Math.min(t.rssFloor, rss);
      return;
    }
    const state = readProfileState(t.mem, t.target, t.bias);
    if (!state) return;
    const kept = t.history.read(t.mem, t.found, state, now);
    // Kept or unchanged, growth is counted from here on.
    t.rssFloor = rss;
    if (!kept) return;
    this.options.onReading?.(pid, kept.bucketCount, performance.now() - now);
  }

  /** One pass: start tracking new Go processes, then read each list down to where the mirror is already whole. */
  tick(): void {
    if (this.closed) return;
    this.untracked = false;
    for (const [pid, targets] of this.candidates()) {
      if (this.tracked.has(pid)) continue;
      try {
        const ino = statSync(`/proc/${pid}/exe`).ino;
        const target = targets.find((t) => t.inode === ino);
        if (!target) {
          this.untracked = true;
          continue;
        }
        const baseAgeMs = this.options.baseAgeMs ?? 0;
        this.tracked.set(pid, {
          mem: new ProcessMemory(pid),
          bias: loadBias(target, readMaps(pid)),
          target,
          buckets: new Map(),
          found: [],
          history: baseAgeMs > 0 && target.memRecordWords ? new CounterHistory(baseAgeMs, target.memRecordWords) : undefined,
          rssFloor: residentBytes(pid) ?? 0,
          wholeFrom: 0,
          quietPasses: 0,
          dueMs: 0,
        });
      } catch {
        // Gone (until watch's prune forgets it), or not yet exec'd into its Go binary.
        this.untracked = true;
      }
    }
    const now = performance.now();
    for (const [pid, t] of this.tracked) {
      if (now < t.dueMs) continue;
      // Only the list head: one read per process per pass, which is all an idle one costs.
      const head = t.mem.u64(Number(t.target.vars.mbuckets) + t.bias);
      if (!head) continue;
      t.quietPasses = head === t.wholeFrom ? t.quietPasses + 1 : 0;
      // Half a pass early, so a timer that fires a little early still finds it due; and
      // never later than its next look for growth (a leak at old sites makes no buckets).
      const backoff = this.options.intervalMs * (Math.min(2 ** t.quietPasses, MAX_SKIPPED_PASSES) - 0.5);
      t.dueMs = Math.min(now + backoff, t.history?.nextCheckMs() ?? Infinity);
      if (head !== t.wholeFrom) {
        // Up to where the mirror is whole, or the whole list until it is: a pass cut short
        // by a failed read must not leave a hole behind the next one.
        const { buckets, complete } = readLiveBuckets(t.mem, head, new Set([t.wholeFrom]), t.target.memRecordWords);
        const added: MemProfileBucket[] = [];
        for (const b of buckets) {
          if (t.buckets.has(b.address)) continue;
          t.buckets.set(b.address, b);
          t.found.push(b);
          added.push(b);
        }
        if (added.length) this.options.onFound?.(pid, { target: t.target, bias: t.bias, buckets: added, total: t.buckets.size });
        if (!complete) continue;
        t.wholeFrom = head;
        this.options.onWhole?.(pid, head);
      }
      this.readCounters(pid, t);
    }
    let total = 0;
    let perFiring = 0;
    for (const [pid, t] of this.tracked) {
      total += t.buckets.size;
      // A dying process's threads are not counted: its walk has begun.
      if (t.dueMs === Infinity) continue;
      // Threads are read only for lists big enough to need more than one firing's worth.
      if (t.buckets.size > PER_FIRING_CHECK) perFiring = Math.max(perFiring, t.buckets.size / Math.max(1, threadCount(pid) ?? 1));
    }
    this.options.onCount?.(total, Math.ceil(perFiring));
  }
}
