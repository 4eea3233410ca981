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
 * Everything the probes will say about a killed process has arrived: its walk is whole,
 * and so is its goroutine count where its binary has one.
 */
export function captureWhole(c: ProcessCapture, countsGoroutines: boolean): boolean {
  if (!c.walkEnded || !c.complete) return false;
  return !countsGoroutines || c.goroutines !== undefined;
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
  // Records that name no kill (an exit marker, say): nothing will be reported.
  if (!c.victim && !c.header) return true;
  if (captureWhole(c, v.countsGoroutines)) return true;
  if (c.exited && now - lastRecordAt > EXIT_QUIET_MS) return true;
  // A victim that still runs may only be slow to die.
  if (v.running && age <= policy.notKilledGraceMs) return false;
  const walkable = c.header !== undefined || v.walkExpected;
  if (!walkable && v.identifying) return false;
  return walkable ? idle : age > policy.nonGoSettleMs;
}
