import type { WalkRecord } from "../stream/records.ts";
import type { ProcessCapture } from "./walk-capture.ts";

/**
 * When a killed process's capture is ready to report: one rule for `run` and `watch`.
 *
 * A walk's lines stream for up to seconds (100,000 buckets), so a capture that is not
 * whole is reported once nothing new has arrived for DRAIN_IDLE_MS, and never later than
 * DRAIN_MAX_MS. After the exit marker, bpftrace < 0.19 (one buffer per CPU) may still hold
 * lines from other CPUs: the stream must then be quiet for EXIT_QUIET_MS.
 */
export const DRAIN_IDLE_MS = 1500;
export const EXIT_QUIET_MS = 300;
export const DRAIN_MAX_MS = 60_000;
/**
 * The OOM killer sends SIGKILL before mark_victim's record is written, on the killer's
 * CPU: the victim's own walk may be whole first (seen on a 6.1 guest, where K came,
 * then the whole walk, then nothing for a while). A whole walk that names no kill
 * waits this long after its last record before it is reported as a plain SIGKILL.
 */
export const LATE_VICTIM_MS = 500;

/** How long each command waits for what it cannot see yet. */
export interface ReadinessPolicy {
  /**
   * A victim that is not a Go program oomprof walks is reported after this. `watch` hears
   * of a kill (V) before the walk's header (H) it may be followed by; `run` drains after
   * the child's exit, when any header has long been written.
   */
  nonGoSettleMs: number;
  /** How long a picked victim may go on running before it is reported as not killed. */
  notKilledGraceMs: number;
}

export const RUN_READINESS: ReadinessPolicy = { nonGoSettleMs: 0, notKilledGraceMs: 0 };
export const WATCH_READINESS: ReadinessPolicy = { nonGoSettleMs: 300, notKilledGraceMs: 5000 };

/** What is known of one victim when its readiness is judged. */
export interface VictimState {
  /** What the probes said of it so far; undefined before its first record. */
  capture: ProcessCapture | undefined;
  /** When it was first heard of (performance.now()). */
  since: number;
  /** Its binary is one oomprof walks, so a walk will come. */
  walkExpected: boolean;
  /** Its binary has a goroutine probe, whose line may follow the walk's end. */
  countsGoroutines: boolean;
  /** It still runs (not gone, not a zombie). */
  running: boolean;
  /** Its binary, which oomprof did not walk, is still being read to say why. */
  identifying?: boolean;
}

/**
 * Everything the probes will say about a killed process has arrived: the bucket list is
 * whole (counters from the head to the end, every stack from the probes or the live
 * mirror), and so is its goroutine count where its binary has one. The walk's end marker
 * is not waited for: once the counters are all in, what is left of the walk is stack
 * lines the mirror already has.
 */
export function captureWhole(c: ProcessCapture, countsGoroutines: boolean): boolean {
  if (!c.complete) return false;
  return !countsGoroutines || c.goroutines !== undefined;
}

/** The records say how it died: the OOM killer's pick (V), or Go's own fatal error (O). */
function namesItsDeath(c: ProcessCapture): boolean {
  return c.victim !== undefined || c.runtimeOom !== undefined;
}

/**
 * Records after which a capture may have just become whole: the end of the counter
 * chain (the mirror may hold every stack), the walk's end, the goroutine count, how it
 * died, its exit. Checking readiness when one arrives, not only on a timer, reports a
 * kill without waiting for the next tick.
 */
export function mayCompleteCapture(r: WalkRecord): boolean {
  switch (r.tag) {
    case "E":
    case "G":
    case "V":
    case "O":
    case "X":
      return true;
    case "C":
      return r.allnext === 0;
    default:
      return false;
  }
}

/**
 * `check`, run once the batch of records being handled is done; asking again before it
 * has run changes nothing. How run and watch look at captures that may have just become
 * whole (mayCompleteCapture) without assembling one per record.
 */
export function onceRecordsHandled(check: () => void): () => void {
  let queued = false;
  return () => {
    if (queued) return;
    queued = true;
    setImmediate(() => {
      queued = false;
      check();
    });
  };
}

/** Whole, and known to be an OOM death: ready whatever else is still to come (its exit, say). */
export function wholeOomDeath(c: ProcessCapture, countsGoroutines: boolean): boolean {
  return namesItsDeath(c) && captureWhole(c, countsGoroutines);
}

/** The rule: report now, or wait for more records. `now` and `lastRecordAt` are performance.now() times. */
export function readyToReport(v: VictimState, clock: { now: number; lastRecordAt: number }, policy: ReadinessPolicy): boolean {
  const { now, lastRecordAt } = clock;
  const age = now - v.since;
  if (age > DRAIN_MAX_MS) return true;
  const idle = now - Math.max(v.since, lastRecordAt) > DRAIN_IDLE_MS;
  const c = v.capture;
  // Nothing heard yet (run's SIGKILLed child, whose records may still be in flight).
  if (!c) return idle;
  // The OOM killer's kprobe (K) comes before mark_victim's record (V): the kill is on its way.
  if (!c.victim && !c.header && c.oomKillProcess) return idle;
  // Records that name no kill (an exit marker, say): nothing will be reported.
  if (!c.victim && !c.header) return true;
  if (captureWhole(c, v.countsGoroutines)) return wholeOomDeath(c, v.countsGoroutines) || now - c.lastSeenMs > LATE_VICTIM_MS;
  if (c.exited && now - lastRecordAt > EXIT_QUIET_MS) return true;
  // A victim that still runs may only be slow to die.
  if (v.running && age <= policy.notKilledGraceMs) return false;
  const walkable = c.header !== undefined || v.walkExpected;
  if (!walkable && v.identifying) return false;
  return walkable ? idle : age > policy.nonGoSettleMs;
}
