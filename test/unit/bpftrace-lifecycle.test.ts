import { describe, expect, test } from "bun:test";
import {
  BpftraceLifecycle,
  extraCounterProbesFor,
  MAX_EXTRA_COUNTER_PROBES,
  type LaunchSpec,
  type LifecycleOptions,
  type RunningSession,
} from "../../src/capture/bpftrace-lifecycle.ts";
import { parseBpftraceVersion, type BpftraceHost } from "../../src/probes/bpftrace-host.ts";
import { WHILE_DEFAULTS, type WalkLimits } from "../../src/probes/walk-templates.ts";
import { parseRecord, type WalkRecord } from "../../src/stream/records.ts";

/**
 * The relaunch and retire rules of the bpftrace lifecycle, against fake bpftraces whose
 * attach, records and exit the test drives: no moment without an attached bpftrace,
 * relaunches shared, a walk in progress let finish, losses counted to the end.
 */

class FakeSession implements RunningSession {
  static nextPid = 1000;
  readonly pid = FakeSession.nextPid++;
  readonly attached: Promise<number>;
  readonly exited: Promise<unknown>;
  lostEvents = 0;
  stopped = false;
  attach!: (probes: number) => void;
  fail!: (e: Error) => void;
  private exit!: () => void;

  constructor(
    readonly spec: LaunchSpec,
    readonly emit: (r: WalkRecord) => void,
  ) {
    this.attached = new Promise((res, rej) => {
      this.attach = res;
      this.fail = rej;
    });
    this.exited = new Promise<void>((res) => (this.exit = res));
  }

  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    this.exit();
  }

  die(): void {
    this.exit();
  }

  errorSummary(): string {
    return "";
  }
}

function setup(version = "0.17.0", script?: (limits: Partial<WalkLimits>) => void, counters?: Pick<LifecycleOptions, "takeCounters" | "openCounters">) {
  const host: BpftraceHost = {
    path: "bpftrace",
    version: parseBpftraceVersion(`bpftrace v${version}`),
    hasOomKillProcessKprobe: false,
    exitKeepsMm: false,
    markVictimCounters: true,
  };
  const sessions: FakeSession[] = [];
  const warnings: string[] = [];
  const lost: string[] = [];
  const records: WalkRecord[] = [];
  const attachedLog: string[] = [];
  const lifecycle = new BpftraceLifecycle({
    host,
    script: (limits, nonce) => {
      script?.(limits);
      return { text: `// nonce ${nonce}`, unsafe: false, walk: "while", counterMap: counters !== undefined };
    },
    start: (spec, onRecord) => {
      const s = new FakeSession(spec, onRecord);
      sessions.push(s);
      return s;
    },
    onRecord: (r) => records.push(r),
    events: { onWarning: (m) => warnings.push(m), onSessionLost: (why) => lost.push(why) },
    initialBuckets: 20_000,
    retireGraceMs: 400,
    retireSettleMs: 20,
    onAttached: (s, nonce) => attachedLog.push(`${nonce}: attached; ${sessions.filter((o) => o !== s && !o.stopped).length} other running`),
    takeCounters: counters?.takeCounters,
    openCounters: counters?.openCounters,
  });
  return { lifecycle, sessions, warnings, lost, records, attachedLog };
}

const tick = () => Bun.sleep(0);

/** A lifecycle whose first bpftrace is attached. */
async function attached(version?: string) {
  const ctx = setup(version);
  const first = ctx.lifecycle.launch();
  ctx.sessions[0]!.attach(5);
  await first;
  return ctx;
}

/** Relaunches, and attaches the successor. */
async function replace(ctx: ReturnType<typeof setup>): Promise<void> {
  const relaunched = ctx.lifecycle.relaunch();
  await tick();
  ctx.sessions.at(-1)!.attach(5);
  await relaunched;
}

describe("bpftrace lifecycle", () => {
  test("a relaunch stops the old bpftrace only once the new one is attached", async () => {
    const { lifecycle, sessions } = setup();
    const first = lifecycle.launch();
    sessions[0]!.attach(5);
    expect(await first).toBe(5);
    const relaunched = lifecycle.relaunch();
    await tick();
    expect(sessions).toHaveLength(2);
    expect(sessions[1]!.spec.canaryNonce).toBe(2);
    await Bun.sleep(50);
    expect(sessions[0]!.stopped).toBe(false);
    sessions[1]!.attach(5);
    await relaunched;
    await Bun.sleep(60);
    expect(sessions[0]!.stopped).toBe(true);
    expect(sessions[1]!.stopped).toBe(false);
    expect(lifecycle.running).toBe(1);
  });

  test("relaunches asked for while one attaches share one bpftrace", async () => {
    const { lifecycle, sessions } = await attached();
    const a = lifecycle.relaunch();
    await tick();
    expect(sessions).toHaveLength(2);
    // Asked for while the second attaches: queued behind it, shared by all three.
    const b = lifecycle.relaunch();
    const c = lifecycle.relaunch();
    expect(b).toBe(c);
    sessions[1]!.attach(5);
    await a;
    await tick();
    expect(sessions).toHaveLength(3);
    sessions[2]!.attach(5);
    await Promise.all([b, c]);
    expect(sessions).toHaveLength(3);
  });

  test("a replaced bpftrace with a walk under way runs until the walk ends", async () => {
    const ctx = await attached();
    const { sessions, records } = ctx;
    // The old bpftrace has started walking pid 42.
    sessions[0]!.emit(parseRecord("H 42 0 0 7f0000001000 524288 3"));
    await replace(ctx);
    await Bun.sleep(150);
    expect(sessions[0]!.stopped).toBe(false);
    sessions[0]!.emit(parseRecord("E 42"));
    await Bun.sleep(120);
    expect(sessions[0]!.stopped).toBe(true);
    expect(records.map((r) => r.tag)).toEqual(["H", "E"]);
  });

  test("a walk that never ends keeps the old bpftrace no longer than the grace period", async () => {
    const ctx = await attached();
    const { sessions } = ctx;
    sessions[0]!.emit(parseRecord("H 43 0 0 7f0000001000 524288 3"));
    await replace(ctx);
    await Bun.sleep(200);
    expect(sessions[0]!.stopped).toBe(false);
    await Bun.sleep(400);
    expect(sessions[0]!.stopped).toBe(true);
  });

  test("lost events of a retired bpftrace still count", async () => {
    const ctx = await attached();
    const { lifecycle, sessions } = ctx;
    sessions[0]!.lostEvents = 7;
    await replace(ctx);
    sessions[1]!.lostEvents = 2;
    await Bun.sleep(80);
    expect(sessions[0]!.stopped).toBe(true);
    expect(lifecycle.lostEvents).toBe(9);
  });

  test("a verifier rejection halves the loop bounds and tries again, with a warning", async () => {
    const limits: Array<Partial<WalkLimits>> = [];
    const { lifecycle, sessions, warnings } = setup("0.17.0", (l) => limits.push({ ...l }));
    const launched = lifecycle.launch();
    sessions[0]!.fail(new Error("Error loading program: BPF program is too large. processed 1000001 insns"));
    await tick();
    await tick();
    expect(sessions).toHaveLength(2);
    sessions[1]!.attach(5);
    expect(await launched).toBe(5);
    // The counter map (0.27+) is sized for the buckets the buffer is.
    expect(limits[1]).toEqual({ counterMapEntries: 20_000, counterIterations: 2000, stackIterations: 200 });
    expect(warnings[0]).toContain("retrying with 2000 buckets per firing");
  });

  test("other launch failures are not retried", async () => {
    const { lifecycle, sessions } = setup();
    const launched = lifecycle.launch();
    sessions[0]!.fail(new Error("bpftrace: permission denied"));
    await expect(launched).rejects.toThrow("permission denied");
    expect(sessions).toHaveLength(1);
  });

  test("the current bpftrace dying is reported; a retired one's is not", async () => {
    const ctx = await attached();
    const { sessions, lost } = ctx;
    await replace(ctx);
    await Bun.sleep(60);
    expect(lost).toEqual([]);
    sessions[1]!.die();
    await tick();
    expect(lost).toEqual(["bpftrace exited"]);
  });

  test("more buckets than the buffer holds start a bigger bpftrace", async () => {
    const { lifecycle, sessions } = await attached("0.23.2");
    const pages = sessions[0]!.spec.bufferPages;
    lifecycle.ensureCapacity(1000);
    await tick();
    expect(sessions).toHaveLength(1);
    lifecycle.ensureCapacity(2_000_000);
    await tick();
    expect(sessions).toHaveLength(2);
    expect(sessions[1]!.spec.bufferPages).toBeGreaterThan(pages);
    sessions[1]!.attach(5);
    await lifecycle.settled();
    expect(lifecycle.bufferPages).toBe(sessions[1]!.spec.bufferPages);
  });

  test("a process with more buckets than one probe walks per firing gets counter probes of its own, in a relaunch", async () => {
    const asked: Array<Partial<WalkLimits>> = [];
    const ctx = setup("0.17.0", (limits) => asked.push({ ...limits }));
    const first = ctx.lifecycle.launch();
    ctx.sessions[0]!.attach(5);
    await first;
    // 3,000 a firing fits one probe's 4,000 (with a quarter as margin, 3,200 would too).
    ctx.lifecycle.ensureCapacity(12_000, 3_000);
    await tick();
    expect(ctx.sessions).toHaveLength(1);
    // 40,000 buckets over 4 threads: 10,000 a firing, 12,500 with the margin: 4 probes.
    ctx.lifecycle.ensureCapacity(40_000, 10_000);
    await tick();
    expect(ctx.sessions).toHaveLength(2);
    expect(asked.at(-1)?.extraCounterProbes).toBe(3);
    ctx.sessions[1]!.attach(5);
    await ctx.lifecycle.settled();
    // Already there: no further relaunch; and never more than the cap.
    ctx.lifecycle.ensureCapacity(40_000, 10_000);
    await tick();
    expect(ctx.sessions).toHaveLength(2);
    expect(extraCounterProbesFor(1_000_000, { ...WHILE_DEFAULTS })).toBe(MAX_EXTRA_COUNTER_PROBES);
    expect(extraCounterProbesFor(0, { ...WHILE_DEFAULTS })).toBe(0);
  });

  test("stop stops every bpftrace, one still attaching too", async () => {
    const { lifecycle, sessions } = await attached();
    void lifecycle.relaunch().catch(() => undefined);
    await tick();
    await lifecycle.stop();
    expect(sessions.every((s) => s.stopped)).toBe(true);
  });

  test("a new bpftrace is told it attached before the old one is retired, with its script's nonce", async () => {
    const ctx = await attached();
    await replace(ctx);
    // The second is filled with rows added since its script was made while the first still runs.
    expect(ctx.attachedLog).toEqual(["1: attached; 0 other running", "2: attached; 1 other running"]);
  });

  test("relaunchSoon: asks within the delay share one relaunch", async () => {
    const { lifecycle, sessions } = await attached();
    lifecycle.relaunchSoon(30);
    lifecycle.relaunchSoon(30);
    expect(sessions).toHaveLength(1);
    await Bun.sleep(60);
    expect(sessions).toHaveLength(2);
    sessions[1]!.attach(5);
    await lifecycle.settled();
    lifecycle.relaunchSoon(30);
    await Bun.sleep(60);
    expect(sessions).toHaveLength(3);
  });

  test("a binary deleted while bpftrace starts: it starts again (its next script leaves the uprobe out)", async () => {
    const { lifecycle, sessions } = setup();
    const launched = lifecycle.launch();
    sessions[0]!.fail(
      new Error("bpftrace exited before attaching its probes: x.bt:1-9: ERROR: uprobe target file '/tmp/l/t0' does not exist or is not executable"),
    );
    await tick();
    await tick();
    expect(sessions).toHaveLength(2);
    sessions[1]!.attach(5);
    expect(await launched).toBe(5);
  });

  test("a counter map's entries are taken at the B line and reach onRecord before it", async () => {
    const counter = (pid: number, bucket: number, allnext: number): WalkRecord => ({
      tag: "C",
      pid,
      bucket,
      allnext,
      nstk: 1,
      size: 16,
      counts: [1, 0, 0, 0, 0, 0, 0, 0],
    });
    const taken: Array<[pid: number, written: number | undefined]> = [];
    const opened: number[] = [];
    let fail = false;
    const { lifecycle, sessions, records, warnings } = setup("0.27.1", undefined, {
      takeCounters: (s, written) => {
        taken.push([s.pid, written]);
        if (fail) throw new Error("errno 1");
        return [counter(7, 0x20, 0x10), counter(7, 0x10, 0)];
      },
      openCounters: (s) => opened.push(s.pid),
    });
    const first = lifecycle.launch();
    expect(opened).toEqual([]);
    sessions[0]!.attach(5);
    await first;
    const s = sessions[0]!;
    // The map is found once attached, not at the first death.
    expect(opened).toEqual([s.pid]);
    s.emit({ tag: "H", pid: 7, targetId: 0, bias: 0, head: 0x20, memProfileRate: 1, cycle: 3 });
    s.emit({ tag: "B", pid: 7, written: 2 });
    expect(records.map((r) => r.tag)).toEqual(["H", "C", "C", "B"]);
    expect(taken).toEqual([[s.pid, 2]]);
    // An exit ends a walk that broke off before its B line: what it put in the map is taken then.
    s.emit({ tag: "H", pid: 8, targetId: 0, bias: 0, head: 0x20, memProfileRate: 1, cycle: 3 });
    s.emit({ tag: "X", pid: 8 });
    expect(taken).toEqual([
      [s.pid, 2],
      [s.pid, undefined],
    ]);
    // A process with no walk going on costs no map read at its exit.
    s.emit({ tag: "X", pid: 9 });
    expect(taken).toHaveLength(2);
    // A map that cannot be read: said, and the B line still goes on.
    fail = true;
    s.emit({ tag: "B", pid: 10, written: 5 });
    expect(records.at(-1)).toEqual({ tag: "B", pid: 10, written: 5 });
    expect(warnings.at(-1)).toContain("the capture will be partial");
  });
});
