import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { copyFileSync, existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { OomprofEvent } from "../../src/output/events.ts";
import { SHELL_HOG } from "../helpers/cgroup.ts";
import { oomKilledUnderWatch } from "../helpers/watch.ts";
import { buildGoProgram } from "../helpers/go.ts";
import { LineReader } from "../helpers/lines.ts";
import { oomprofArgv, pprofTop, runOomprof, tempDir } from "../helpers/oomprof.ts";

setDefaultTimeout(180_000);

function rssKb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? Number(m[1]) : 0;
}

describe("oomprof watch", () => {
  let watch: ReturnType<typeof Bun.spawn>;
  let lines: LineReader;
  let out: string;
  let leaker: string;

  beforeAll(async () => {
    out = tempDir();
    // A fresh copy: a binary the watcher has never seen, started after it is ready.
    leaker = join(tempDir(), "leaker");
    copyFileSync(await buildGoProgram("leaker"), leaker);
    Bun.spawnSync(["chmod", "+x", leaker]);
    watch = Bun.spawn([...oomprofArgv(), "watch", "--out", out, "--events", "-"], { stdout: "pipe", stderr: "pipe" });
    lines = new LineReader(watch.stdout as ReadableStream<Uint8Array>);
    await lines.waitFor((l) => l.includes('"event":"ready"'), 60_000);
  });

  afterAll(() => {
    try {
      watch.kill("SIGKILL");
    } catch {
      /* already stopped */
    }
  });

  test("profiles a Go program it did not start, exec'd after it was ready", async () => {
    // Slow enough to outlive the first second, in which the walk for a new binary attaches.
    const kill = await oomKilledUnderWatch(lines, [leaker], 96 << 20, { STEP_SLEEP_US: "8000" });
    expect(kill.exe).toBe(leaker);
    expect(kill.complete).toBe(true);
    expect(existsSync(kill.profile!)).toBe(true);
    const top = pprofTop(kill.profile!, "inuse_space");
    expect((top.flat.get("main.leakStep") ?? 0) / top.total).toBeGreaterThanOrEqual(0.5);
  });

  test("reports a victim that is not Go, with no profile and the reason", async () => {
    const kill = await oomKilledUnderWatch(lines, SHELL_HOG, 64 << 20);
    expect(kill.profile).toBeNull();
    expect(kill.reason).toContain("not a Go program");
    expect(kill.anon_rss_kb).toBeGreaterThan(0);
  });

  test("memory stays bounded across 1,000 short-lived processes", async () => {
    const churn = () => Bun.spawnSync(["/bin/sh", "-c", "i=0; while [ $i -lt 100 ]; do /bin/true; i=$((i+1)); done"]);
    // Warm up first: the runtime's own one-time growth is not a leak.
    churn();
    await Bun.sleep(1000);
    const before = rssKb(watch.pid);
    for (let batch = 0; batch < 10; batch++) {
      // 100 short-lived processes per shell, each exec'ing a program.
      Bun.spawnSync(["/bin/sh", "-c", "i=0; while [ $i -lt 100 ]; do /bin/true; i=$((i+1)); done"]);
    }
    await Bun.sleep(1500);
    const after = rssKb(watch.pid);
    expect(after - before).toBeLessThan(30 * 1024);
  });

  test("SIGTERM ends it cleanly with status 0", async () => {
    watch.kill("SIGTERM");
    expect(await watch.exited).toBe(0);
    for (const l of lines.all()) OomprofEvent.parse(JSON.parse(l));
  });
});

describe("oomprof watch --hold-new-binaries", () => {
  test("a new Go binary that dies within its first second is still profiled", async () => {
    const leaker = join(tempDir(), "leaker");
    copyFileSync(await buildGoProgram("leaker"), leaker);
    Bun.spawnSync(["chmod", "+x", leaker]);
    const watch = Bun.spawn([...oomprofArgv(), "watch", "--hold-new-binaries", "--out", tempDir(), "--events", "-"], { stdout: "pipe", stderr: "pipe" });
    const lines = new LineReader(watch.stdout as ReadableStream<Uint8Array>);
    try {
      await lines.waitFor((l) => l.includes('"event":"ready"'), 60_000);
      const kill = await oomKilledUnderWatch(lines, [leaker], 64 << 20, { STEP_SLEEP_US: "0" });
      expect(kill.exe).toBe(leaker);
      expect(kill.complete).toBe(true);
      expect(kill.profile).not.toBeNull();
    } finally {
      watch.kill("SIGTERM");
      await watch.exited;
    }
  });
});

describe("oomprof snapshot", () => {
  test("profiles a live Go process, which is still alive afterwards", async () => {
    const leaker = await buildGoProgram("leaker");
    // Every allocation sampled: at the default rate, the few leak steps of 1.5 s (fewer on a
    // loaded machine) can all go unsampled, and main.leakStep is then rightly absent (the
    // full suite saw it once).
    const p = Bun.spawn([leaker], { env: { ...process.env, STEP_SLEEP_US: "20000", GOROUTINES: "100", GODEBUG: "memprofilerate=1" }, stdout: "ignore" });
    try {
      await Bun.sleep(1500);
      const out = tempDir();
      const r = await runOomprof(["snapshot", String(p.pid), "--out", out, "--events", "-"]);
      expect(r.status).toBe(0);
      const ev = r.events[0];
      if (ev?.event !== "snapshot") throw new Error(r.stderr);
      expect(ev.complete).toBe(true);
      expect(ev.buckets).toBeGreaterThan(0);
      expect(existsSync(ev.profile!)).toBe(true);
      expect(pprofTop(ev.profile!, "inuse_space").flat.has("main.leakStep")).toBe(true);
      // The parked goroutines and main, read live the way the probe reads them at death.
      expect(ev.goroutines).toBeGreaterThanOrEqual(101);
      expect(ev.goroutines).toBeLessThanOrEqual(105);
      expect(p.exitCode).toBeNull();
      expect(() => process.kill(p.pid, 0)).not.toThrow();
    } finally {
      p.kill();
    }
  });

  test.each([
    ["an unknown pid", () => "999999", "no such process"],
    ["a pid that is not Go", () => String(process.pid === 1 ? 1 : Bun.spawn(["sleep", "5"]).pid), "not a Go program"],
    ["a pid that is not a number", () => "abc", "PID must be a number"],
  ])("%s: one line on stderr, non-zero status", async (_, pid, message) => {
    const r = await runOomprof(["snapshot", pid(), "--out", tempDir()]);
    expect(r.status).not.toBe(0);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
    expect(r.stderr).toContain(message);
  });
});
