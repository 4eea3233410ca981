import { describe, expect, test } from "bun:test";
import {
  DRAIN_IDLE_MS,
  DRAIN_MAX_MS,
  EXIT_QUIET_MS,
  LATE_VICTIM_MS,
  readyToReport,
  RUN_READINESS,
  WATCH_READINESS,
  type VictimState,
} from "../../src/capture/readiness.ts";
import { CaptureAssembler, type ProcessCapture } from "../../src/capture/walk-capture.ts";
import { parseRecord } from "../../src/stream/records.ts";

/** The one "is this victim's capture ready to report" rule that run and watch share. */

const PID = 4242;
const V = `V ${PID} ${PID} 713400 65152 1288 0 0 leaker`;
const H = `H ${PID} 0 0 1000 524288 3`;
const C = `C ${PID} 1000 0 1 64 1 0 0 0 0 0 0 0`;
const S = `S ${PID} 1000 0 401000 0 0 0 0 0 0 0`;

function capture(...lines: string[]): ProcessCapture {
  const a = new CaptureAssembler();
  for (const l of lines) a.add(parseRecord(l));
  return a.capture(PID);
}

function victim(c: ProcessCapture | undefined, over: Partial<VictimState> = {}): VictimState {
  return { capture: c, since: 10_000, walkExpected: false, countsGoroutines: false, running: false, ...over };
}

const at = (afterSince: number, lastRecordAt = 10_000) => ({ now: 10_000 + afterSince, lastRecordAt });

describe("readyToReport", () => {
  test("the fixture records parse into a whole walk", () => {
    const c = capture(V, H, C, S, `E ${PID}`);
    expect(c.walkEnded && c.complete).toBe(true);
  });

  test("a whole walk is ready at once, in run and in watch", () => {
    const c = capture(V, H, C, S, `E ${PID}`);
    expect(readyToReport(victim(c, { walkExpected: true, running: true }), at(1), WATCH_READINESS)).toBe(true);
    expect(readyToReport(victim(c, { walkExpected: true }), at(1), RUN_READINESS)).toBe(true);
  });

  test("a whole walk waits for its goroutine count where its binary has one", () => {
    const c = capture(V, H, C, S, `E ${PID}`);
    expect(readyToReport(victim(c, { countsGoroutines: true }), at(1), RUN_READINESS)).toBe(false);
    const counted = capture(V, H, C, S, `E ${PID}`, `G ${PID} 10 1 4 0 2`);
    expect(readyToReport(victim(counted, { countsGoroutines: true }), at(1), RUN_READINESS)).toBe(true);
  });

  test("whole before its end marker: counters from head to end, and the one stack from the mirror", () => {
    const a = new CaptureAssembler();
    for (const l of [V, H, C]) a.add(parseRecord(l));
    const mirrored = new Map([[0x1000, { address: 0x1000, size: 64, stack: [0x401000], counts: [] }]]);
    const c = a.capture(PID, mirrored);
    expect({ walkEnded: c.walkEnded, complete: c.complete }).toEqual({ walkEnded: false, complete: true });
    expect(readyToReport(victim(c, { walkExpected: true }), at(1), RUN_READINESS)).toBe(true);
    expect(readyToReport(victim(c, { walkExpected: true, running: true }), at(1), WATCH_READINESS)).toBe(true);
  });

  test("the OOM killer's kprobe record alone is a kill on its way, not nothing to report", () => {
    // Found on kernels with kprobes (guests): K arrived, the drain ended, and the V and H
    // records just behind it were never reported.
    const k = capture(`K ${PID} ${PID} 1 65536`);
    expect(readyToReport(victim(k), at(1), RUN_READINESS)).toBe(false);
    expect(readyToReport(victim(k), at(DRAIN_IDLE_MS + 1), RUN_READINESS)).toBe(true);
    expect(readyToReport(victim(capture(`X ${PID}`)), at(1), RUN_READINESS)).toBe(true);
  });

  test("a whole walk that names no kill waits for a late mark_victim record before it is a plain SIGKILL", () => {
    // Seen on a 6.1 guest: K, then the victim's whole walk, and mark_victim's record
    // (written after the SIGKILL was sent, on the killer's CPU) only after the report.
    const c = capture(`K ${PID} ${PID} 1 65536`, H, C, S, `E ${PID}`);
    c.lastSeenMs = 10_000;
    expect(readyToReport(victim(c, { walkExpected: true }), at(LATE_VICTIM_MS - 50), WATCH_READINESS)).toBe(false);
    expect(readyToReport(victim(c, { walkExpected: true }), at(LATE_VICTIM_MS + 1), RUN_READINESS)).toBe(true);
    const named = capture(H, C, S, `E ${PID}`, V);
    named.lastSeenMs = 10_000;
    expect(readyToReport(victim(named, { walkExpected: true }), at(1), WATCH_READINESS)).toBe(true);
    const runtimeOom = capture(`O ${PID} 13 out of memory`, H, C, S, `E ${PID}`);
    runtimeOom.lastSeenMs = 10_000;
    expect(readyToReport(victim(runtimeOom, { walkExpected: true }), at(1), RUN_READINESS)).toBe(true);
  });

  test("a walk in progress waits until the stream is idle", () => {
    const c = capture(V, H, C);
    const v = victim(c, { walkExpected: true });
    expect(readyToReport(v, at(DRAIN_IDLE_MS - 100), WATCH_READINESS)).toBe(false);
    expect(readyToReport(v, at(DRAIN_IDLE_MS + 1), WATCH_READINESS)).toBe(true);
    // Records still arriving keep it waiting.
    expect(readyToReport(v, at(DRAIN_IDLE_MS + 1, 10_000 + DRAIN_IDLE_MS), WATCH_READINESS)).toBe(false);
  });

  test("after the exit marker, a short quiet suffices", () => {
    const c = capture(V, H, C, `X ${PID}`);
    expect(readyToReport(victim(c, { walkExpected: true }), at(EXIT_QUIET_MS - 50), WATCH_READINESS)).toBe(false);
    expect(readyToReport(victim(c, { walkExpected: true }), at(EXIT_QUIET_MS + 1), WATCH_READINESS)).toBe(true);
  });

  test("a victim oomprof does not walk: watch waits for a header that may follow, run does not", () => {
    const c = capture(V);
    expect(readyToReport(victim(c), at(WATCH_READINESS.nonGoSettleMs - 1), WATCH_READINESS)).toBe(false);
    expect(readyToReport(victim(c), at(WATCH_READINESS.nonGoSettleMs + 1), WATCH_READINESS)).toBe(true);
    expect(readyToReport(victim(c), at(1), RUN_READINESS)).toBe(true);
  });

  test("watch gives a victim that still runs a grace period before reporting it not killed", () => {
    const c = capture(V);
    const v = victim(c, { running: true });
    expect(readyToReport(v, at(WATCH_READINESS.notKilledGraceMs - 1), WATCH_READINESS)).toBe(false);
    expect(readyToReport(v, at(WATCH_READINESS.notKilledGraceMs + 1), WATCH_READINESS)).toBe(true);
  });

  test("no record yet (run's SIGKILLed child) waits for the stream to go idle", () => {
    expect(readyToReport(victim(undefined, { walkExpected: true }), at(100), RUN_READINESS)).toBe(false);
    expect(readyToReport(victim(undefined, { walkExpected: true }), at(DRAIN_IDLE_MS + 1), RUN_READINESS)).toBe(true);
  });

  test("records that name no kill are ready (there is nothing to report)", () => {
    expect(readyToReport(victim(capture(`X ${PID}`)), at(0), RUN_READINESS)).toBe(true);
  });

  test("nothing waits past DRAIN_MAX_MS, records or not", () => {
    const c = capture(V, H, C);
    expect(readyToReport(victim(c, { walkExpected: true, running: true }), at(DRAIN_MAX_MS + 1, 10_000 + DRAIN_MAX_MS), WATCH_READINESS)).toBe(true);
  });
});

describe("CaptureAssembler.status, what readiness looks at", () => {
  const C1 = `C ${PID} 1000 2000 1 64 1 0 0 0 0 0 0 0`;
  const C2 = `C ${PID} 2000 0 1 64 1 0 0 0 0 0 0 0`;
  const S2 = `S ${PID} 2000 0 402000 0 0 0 0 0 0 0`;

  test("has no buckets while the counters are still arriving, and the whole capture once the chain's end is in", () => {
    const a = new CaptureAssembler();
    for (const l of [V, H, C1, `S ${PID} 1000 0 401000 0 0 0 0 0 0 0`]) a.add(parseRecord(l));
    const streaming = a.status(PID);
    expect({ buckets: streaming.buckets.length, complete: streaming.complete, victim: streaming.victim?.pid, head: streaming.header?.head }).toEqual({
      buckets: 0,
      complete: false,
      victim: PID,
      head: 0x1000,
    });
    expect(a.capture(PID).buckets.length).toBe(1);
    a.add(parseRecord(C2));
    expect(a.status(PID).complete).toBe(false); // bucket 2000's stack is still to come
    a.add(parseRecord(S2));
    const whole = a.status(PID);
    expect({ buckets: whole.buckets.map((b) => b.address), complete: whole.complete }).toEqual({ buckets: [0x1000, 0x2000], complete: true });
  });

  test("a capture is kept until the next record or a change in the mirror", () => {
    const a = new CaptureAssembler();
    for (const l of [V, H, C1, C2]) a.add(parseRecord(l));
    const mirrored = new Map([[0x1000, { address: 0x1000, size: 64, stack: [0x401000], counts: [] }]]);
    const first = a.capture(PID, mirrored);
    expect(a.capture(PID, mirrored)).toBe(first);
    expect(first.complete).toBe(false);
    mirrored.set(0x2000, { address: 0x2000, size: 64, stack: [0x402000], counts: [] });
    const second = a.capture(PID, mirrored);
    expect(second).not.toBe(first);
    expect(second.complete).toBe(true);
    a.add(parseRecord(`E ${PID}`));
    expect(a.capture(PID, mirrored)).not.toBe(second);
    expect(a.capture(PID, mirrored).walkEnded).toBe(true);
  });
});
