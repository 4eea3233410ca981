import { beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { existsSync, readdirSync, statSync } from "node:fs";
import { basename } from "node:path";
import { KillEvent } from "../../src/output/events.ts";
import { buildGoProgram, goTool } from "../helpers/go.ts";
import { LineReader } from "../helpers/lines.ts";
import { oomprofArgv, runOomprof, tempDir } from "../helpers/oomprof.ts";
import { oomKilledUnderWatch } from "../helpers/watch.ts";

setDefaultTimeout(120_000);

/** The functions of `go tool pprof -top` in order, for one sample type. */
function pprofTopOrder(args: string[]): string[] {
  const p = Bun.spawnSync([goTool(), "tool", "pprof", "-top", "-sample_index=inuse_space", ...args], { stderr: "pipe" });
  if (p.exitCode !== 0) throw new Error(`go tool pprof failed: ${p.stderr.toString()}`);
  const rows = p.stdout.toString().split("\n");
  const header = rows.findIndex((l) => /^\s*flat\s+flat%/.test(l));
  return rows
    .slice(header + 1)
    .map((l) => l.trim().split(/\s+/)[5])
    .filter((f): f is string => f !== undefined);
}

async function runBurst(baseAge: string, env: Record<string, string>) {
  const burst = await buildGoProgram("burst");
  const out = tempDir();
  const result = await runOomprof(["run", "--limit", "128M", "--base-age", baseAge, "--out", out, "--events", "-", "--", burst], {
    env,
    timeoutMs: 60_000,
  });
  const k = result.events.find((e) => e.event === "oom_kill");
  if (!k) throw new Error(`no oom_kill event; status ${result.status}; stderr:\n${result.stderr}`);
  return { out, result, kill: KillEvent.parse(k) };
}

describe("oomprof run --base-age 3s: a steady leak, then a burst until the OOM kill", () => {
  let run: Awaited<ReturnType<typeof runBurst>>;

  beforeAll(async () => {
    // Steady for 9 s at 8 MiB/s (72 MiB), then 64 MiB/s: dead less than a second into the
    // burst, with the steady leak still the larger at death.
    run = await runBurst("3s", { STEADY_MS: "9000", STEADY_KIB_PER_S: "8192" });
  });

  test("the event names a base profile beside the kill's, read about 3 s before death", () => {
    const { kill } = run;
    expect(run.result.stderr).toContain("burst: bursting");
    expect(kill.complete).toBe(true);
    expect(kill.profile).not.toBeNull();
    expect(kill.base_profile).toBe(kill.profile!.replace(/\.pb\.gz$/, ".base.pb.gz"));
    expect(existsSync(kill.base_profile!)).toBe(true);
    expect(statSync(kill.base_profile!).mode & 0o777).toBe(0o600);
    // Readings are 2 s apart: the closest to 3 s is within a reading's spacing of it.
    expect(kill.base_age_ms).toBeGreaterThanOrEqual(1000);
    expect(kill.base_age_ms).toBeLessThanOrEqual(5000);
  });

  test("the summary's fastest grower is the burst, though the steady leak holds more at death", () => {
    expect(run.kill.top.map((t) => t.function).slice(0, 2)).toEqual(["main.steadyLeak", "main.burstLeak"]);
    const stderr = run.result.stderr;
    const at = stderr.indexOf("Grew fastest in the ");
    expect(at).toBeGreaterThan(0);
    const block = stderr.slice(at).split("\n");
    expect(block[0]).toMatch(/^Grew fastest in the \d+\.\d s before death/);
    expect(block[0]).toContain(`${(run.kill.base_age_ms! / 1000).toFixed(1)} s`);
    expect(block[1]).toMatch(/^ +\+[\d.]+ MiB +[\d.]+ MiB\/s  main\.burstLeak  burst\/main\.go:\d+$/);
    expect(stderr).toContain(`go tool pprof -http=: -diff_base ${run.kill.base_profile} ${run.kill.profile}`);
  });

  test("go tool pprof -diff_base puts the burst on top; the base itself holds only the steady leak", () => {
    expect(pprofTopOrder(["-diff_base", run.kill.base_profile!, run.kill.profile!])[0]).toBe("main.burstLeak");
    expect(pprofTopOrder([run.kill.base_profile!])[0]).toBe("main.steadyLeak");
  });
});

describe("oomprof run --base-age 0: no base", () => {
  test("no base profile, no growth block", async () => {
    const { out, result, kill } = await runBurst("0", { STEADY_MS: "1000" });
    expect(kill.profile).not.toBeNull();
    expect(kill.base_profile).toBeNull();
    expect(kill.base_age_ms).toBeNull();
    expect(readdirSync(out).filter((f) => f.endsWith(".pb.gz"))).toEqual([basename(kill.profile!)]);
    expect(result.stderr).not.toMatch(/Grew fastest|base profile|-diff_base/);
  });
});

describe("oomprof watch --base-age 3s: the same program, started after watch", () => {
  test("a base profile whose diff puts the burst on top", async () => {
    const burst = await buildGoProgram("burst");
    const out = tempDir();
    const watch = Bun.spawn([...oomprofArgv(), "watch", "--base-age", "3s", "--out", out, "--events", "-"], { stdout: "pipe", stderr: "ignore" });
    try {
      const events = new LineReader(watch.stdout as ReadableStream<Uint8Array>);
      await events.waitFor((l) => l.includes('"event":"ready"'), 60_000);
      const kill = await oomKilledUnderWatch(events, [burst], 128 << 20, { STEADY_MS: "6000", STEADY_KIB_PER_S: "8192" });
      expect(kill.base_profile).toBe(kill.profile!.replace(/\.pb\.gz$/, ".base.pb.gz"));
      expect(kill.base_age_ms).toBeGreaterThanOrEqual(1000);
      expect(kill.base_age_ms).toBeLessThanOrEqual(5000);
      expect(pprofTopOrder(["-diff_base", kill.base_profile!, kill.profile!])[0]).toBe("main.burstLeak");
    } finally {
      watch.kill("SIGTERM");
      await watch.exited;
    }
  });
});
