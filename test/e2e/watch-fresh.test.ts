import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { copyFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { DISABLED_HINT } from "../../src/gobinary/go-target.ts";
import type { KillEvent } from "../../src/output/events.ts";
import { testCgroup } from "../helpers/cgroup.ts";
import { buildGoProgram } from "../helpers/go.ts";
import type { LineReader } from "../helpers/lines.ts";
import { tempDir } from "../helpers/oomprof.ts";
import { oomKillEvent, startWatch, type RunningWatch } from "../helpers/watch.ts";

/**
 * No blind spot: under plain `watch` (nothing held at exec), a Go binary watch has never
 * seen is walked from its first instants, because its row is added to the running
 * bpftrace's target table instead of starting a new bpftrace. Fresh binaries and a crash
 * loop, each OOM-killed within about half a second of exec.
 */

const LIMIT = 64 << 20;
/** The leaker without pauses, leaking 1 MiB a step, fills 64 MiB in a few hundred ms. */
const FAST = { STEP_SLEEP_US: "0", LEAK_KIB: "1024" };

let watch: RunningWatch;
let events: LineReader;
let stderr: LineReader;
const dir = tempDir();

beforeAll(async () => {
  await buildGoProgram("leaker");
  watch = await startWatch(dir, ["--verbose"]);
  ({ events, stderr } = watch);
}, 120_000);

afterAll(async () => {
  await watch.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** Runs a binary in a small memory cgroup until it is OOM-killed; its pid and how long it lived. */
async function killQuickly(binary: string, env: Record<string, string> = FAST, limit = LIMIT): Promise<{ pid: number; livedMs: number }> {
  const cg = testCgroup(limit);
  try {
    const t0 = performance.now();
    const p = Bun.spawn(cg.argv([binary]), { stdout: "ignore", stderr: "ignore", env: { ...process.env, ...env } });
    expect(await p.exited).toBe(137);
    return { pid: p.pid, livedMs: performance.now() - t0 };
  } finally {
    cg.remove();
  }
}

function expectProfiled(e: KillEvent, exe: string): void {
  expect({ pid: e.pid, exe: e.exe, reason: e.reason }).toEqual({ pid: e.pid, exe, reason: null });
  expect(e.complete).toBe(true);
  expect(e.profile).not.toBeNull();
  expect(e.buckets).toBeGreaterThan(0);
}

describe("oomprof watch: no blind spot for new binaries", () => {
  test("five fresh binaries, each OOM-killed within about half a second of exec: all profiled, complete", async () => {
    const lived: number[] = [];
    for (let i = 0; i < 5; i++) {
      const fresh = join(dir, `fresh${i}`);
      copyFileSync(await buildGoProgram("leaker"), fresh);
      Bun.spawnSync(["chmod", "+x", fresh]);
      const { pid, livedMs } = await killQuickly(fresh);
      lived.push(Math.round(livedMs));
      expectProfiled(await oomKillEvent(events, pid), fresh);
    }
    // How soon they died (from spawn, cgroup set-up included): a figure, not a claim.
    console.log(`fresh binaries lived ${lived.join(", ")} ms`);
  }, 180_000);

  test("a binary crash-looping ten times, each killed within about half a second: all profiled, complete", async () => {
    const looping = join(dir, "crashloop");
    copyFileSync(await buildGoProgram("leaker"), looping);
    Bun.spawnSync(["chmod", "+x", looping]);
    for (let i = 0; i < 10; i++) {
      const { pid } = await killQuickly(looping);
      expectProfiled(await oomKillEvent(events, pid), looping);
    }
  }, 240_000);

  test("a fresh binary that asks for four times its limit at once (dead within a few hundred ms of spawn): profiled", async () => {
    const sudden = join(dir, "sudden");
    copyFileSync(await buildGoProgram("leaker"), sudden);
    Bun.spawnSync(["chmod", "+x", sudden]);
    const { pid, livedMs } = await killQuickly(sudden, { STEP_SLEEP_US: "0", LEAK_KIB: String(4 * (LIMIT >> 10)) });
    console.log(`sudden: lived ${Math.round(livedMs)} ms from spawn`);
    expectProfiled(await oomKillEvent(events, pid), sudden);
  }, 60_000);

  test("a Go program built without memory profiling says so, not that it is not Go", async () => {
    const noprof = join(dir, "noprof");
    copyFileSync(await buildGoProgram("noprof"), noprof);
    Bun.spawnSync(["chmod", "+x", noprof]);
    const { pid } = await killQuickly(noprof, {});
    const e = await oomKillEvent(events, pid);
    expect(e.profile).toBeNull();
    expect(e.reason).toBe(`${noprof}: ${DISABLED_HINT}`);
  }, 60_000);

  test("a new binary's walk went live by a table row, not by a new bpftrace", () => {
    const live = stderr.all().filter((l) => l.includes("walk live for") && l.includes(dir));
    expect(live.length).toBeGreaterThanOrEqual(6);
    expect(stderr.all().some((l) => l.includes("cannot add rows to bpftrace's target table"))).toBe(false);
  });
});
