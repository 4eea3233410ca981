import { beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { existsSync } from "node:fs";
import { KillEvent } from "../../src/output/events.ts";
import { buildGoProgram } from "../helpers/go.ts";
import { pprofTop, runOomprof, tempDir } from "../helpers/oomprof.ts";

// Real bpftrace attach, Go builds and OOM kills take seconds.
setDefaultTimeout(180_000);

/** Goroutines the leaker parks, besides main: the count at death must see them. */
const PARKED = 200;

/**
 * The leaker as position-independent and as stripped (-ldflags='-s -w': no
 * .symtab, so the runtime variables are found from the runtime's code) builds:
 * the OOM kill must still be captured completely, name the leak, and count the
 * goroutines (runtime.allglen, allp and sched found from code too).
 */
const CASES: Array<{ name: string; flags: string[] }> = [
  { name: "PIE", flags: ["-buildmode=pie"] },
  { name: "stripped", flags: ["-ldflags=-s -w"] },
  { name: "stripped PIE", flags: ["-buildmode=pie", "-ldflags=-s -w"] },
];

for (const c of CASES) {
  describe(`oomprof run: ${c.name} leaker OOM-killed in a 96M memory cgroup`, () => {
    let result: Awaited<ReturnType<typeof runOomprof>>;
    let kill: KillEvent;

    beforeAll(async () => {
      const leaker = await buildGoProgram("leaker", { flags: c.flags });
      result = await runOomprof(["run", "--limit", "96M", "--out", tempDir(), "--events", "-", "--", leaker], {
        env: { GOROUTINES: String(PARKED) },
      });
      const k = result.events.find((e) => e.event === "oom_kill");
      if (!k) throw new Error(`no oom_kill event; status ${result.status}; stderr:\n${result.stderr}`);
      kill = KillEvent.parse(k);
    });

    test("oomprof exits 137 and the kill event is complete", () => {
      expect(result.status).toBe(137);
      expect(kill.complete).toBe(true);
      expect(kill.comm).toBe("leaker");
      expect(kill.buckets).toBeGreaterThan(0);
      expect(kill.memprofile_rate).toBe(512 * 1024);
      expect(kill.profile).not.toBeNull();
      expect(existsSync(kill.profile!)).toBe(true);
    });

    test("the goroutine count at death is the parked goroutines plus main, as runtime.NumGoroutine counts", () => {
      expect(kill.goroutines).not.toBeNull();
      expect(kill.goroutines!).toBeGreaterThanOrEqual(PARKED + 1);
      expect(kill.goroutines!).toBeLessThanOrEqual(PARKED + 5);
      expect(kill.goroutines_upper_bound).toBe(false);
    });

    test("main.leakStep holds at least half of inuse_space", () => {
      const top = pprofTop(kill.profile!, "inuse_space");
      const leak = top.flat.get("main.leakStep") ?? 0;
      expect(top.total).toBeGreaterThan(0);
      expect(leak / top.total).toBeGreaterThanOrEqual(0.5);
    });
  });
}
