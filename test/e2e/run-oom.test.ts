import { beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { existsSync, statSync } from "node:fs";
import { join } from "node:path";
import { memoryCgroupDir } from "../../src/cgroup/memory-cgroup.ts";
import { KillEvent } from "../../src/output/events.ts";
import { buildGoProgram } from "../helpers/go.ts";
import { pprofTop, runOomprof, tempDir } from "../helpers/oomprof.ts";

const LIMIT = 128 << 20;
/** Goroutines the leaker parks, besides main: the count at death must see them. */
const PARKED = 500;

// Real bpftrace attach, Go builds and OOM kills take seconds.
setDefaultTimeout(180_000);

describe("oomprof run: a leaking Go program OOM-killed in a 128M memory cgroup", () => {
  let leaker: string;
  let out: string;
  let ownProfile: string;
  let result: Awaited<ReturnType<typeof runOomprof>>;
  let kill: KillEvent;

  beforeAll(async () => {
    leaker = await buildGoProgram("leaker");
    out = tempDir();
    ownProfile = join(out, "own-heap.pprof");
    result = await runOomprof(["run", "--limit", "128M", "--out", out, "--events", "-", "--", leaker], {
      env: { HEAPPROF_OUT: ownProfile, GOROUTINES: String(PARKED) },
    });
    const k = result.events.find((e) => e.event === "oom_kill");
    if (!k) throw new Error(`no oom_kill event; status ${result.status}; stderr:\n${result.stderr}`);
    kill = KillEvent.parse(k);
  });

  test("oomprof exits 137 like the SIGKILLed child, and the event stream is pure JSON", () => {
    expect(result.status).toBe(137);
    expect(result.events.map((e) => e.event)).toEqual(["armed", "start", "oom_kill", "exit"]);
    // The child's own stdout went to stderr, so stdout stayed parseable.
    expect(result.stderr).toContain("leaker: started");
  });

  test("the event is complete and names the victim, the cgroup and the limit", () => {
    expect(kill.complete).toBe(true);
    expect(kill.comm).toBe("leaker");
    expect(kill.go_version).toMatch(/^go1\./);
    expect(kill.limit_bytes).toBe(LIMIT);
    // Read by the victim's own thread at the kill, named as /proc/PID/cgroup names it; the start event agrees.
    expect(kill.cgroup).toMatch(/^\/oomprof-\d+-[a-z0-9]+$/);
    expect(result.events.find((e) => e.event === "start")).toMatchObject({ cgroup: kill.cgroup });
    // Not in a container: no container, and its pid is the host's.
    expect(kill.container).toBeNull();
    expect(kill.ns_pid).toBe(kill.pid);
    expect(kill.buckets).toBeGreaterThan(0);
    expect(kill.lost_events).toBe(0);
    expect(kill.anon_rss_kb).toBeGreaterThan(64 * 1024);
    expect(kill.trigger).not.toBeNull();
    expect(kill.profile).not.toBeNull();
    expect(existsSync(kill.profile!)).toBe(true);
    expect(statSync(kill.profile!).mode & 0o777).toBe(0o600);
  });

  test("the leak leads the default view with at least half of it", () => {
    const top = pprofTop(kill.profile!, "inuse_space");
    const leak = top.flat.get("main.leakStep") ?? 0;
    expect(leak / top.total).toBeGreaterThanOrEqual(0.5);
  });

  test("live-at-last-GC agrees with the program's own runtime/pprof profile within 10 points", () => {
    const ours = pprofTop(kill.profile!, "gc_live_space");
    const own = pprofTop(ownProfile, "inuse_space");
    const ourShare = (ours.flat.get("main.leakStep") ?? 0) / ours.total;
    const ownShare = (own.flat.get("main.leakStep") ?? 0) / own.total;
    expect(Math.abs(ourShare - ownShare)).toBeLessThanOrEqual(0.1);
  });

  test("the default total is at least the program's last self-reported total and at most 1.5x the limit", () => {
    const ours = pprofTop(kill.profile!, "inuse_space");
    const own = pprofTop(ownProfile, "inuse_space");
    expect(ours.total).toBeGreaterThanOrEqual(own.total);
    expect(ours.total).toBeLessThanOrEqual(1.5 * LIMIT);
  });

  test("the stderr summary names the leak with its size and share", () => {
    expect(result.stderr).toMatch(/OOM kill of leaker \(pid \d+\)/);
    expect(result.stderr).toMatch(/\d+\.\d% +[\d.]+ MiB +main\.leakStep/);
    expect(result.stderr).toContain("go tool pprof -http=:");
  });

  test("the event's top: one entry per site, with its file and line; the summary agrees", () => {
    const leak = kill.top[0]!;
    expect(leak.function).toBe("main.leakStep");
    expect(leak.file).toMatch(/leaker\/main\.go$/);
    expect(leak.line).toBeGreaterThan(0);
    // Two sites in one function stay apart by line.
    const keys = kill.top.map((t) => `${t.function} ${t.file}:${t.line}`);
    expect(new Set(keys).size).toBe(keys.length);
    expect(result.stderr).toContain(`main.leakStep  leaker/main.go:${leak.line}`);
  });

  test("the goroutine count at death is the parked goroutines plus main, as runtime.NumGoroutine counts", () => {
    expect(kill.goroutines).not.toBeNull();
    expect(kill.goroutines!).toBeGreaterThanOrEqual(PARKED + 1);
    expect(kill.goroutines!).toBeLessThanOrEqual(PARKED + 5);
    expect(kill.goroutines_upper_bound).toBe(false);
    expect(result.stderr).toContain(`${kill.goroutines!.toLocaleString("en-US")} goroutines`);
  });

  test("the cgroup is removed afterwards", () => {
    expect(existsSync(memoryCgroupDir(kill.cgroup!))).toBe(false);
  });
});
