import { expect, setDefaultTimeout, test } from "bun:test";
import { KillEvent } from "../../src/output/events.ts";
import { buildGoProgram } from "../helpers/go.ts";
import { runOomprof, tempDir } from "../helpers/oomprof.ts";

setDefaultTimeout(180_000);

/**
 * Kernels before the 2024 change give oom:mark_victim only the victim's pid. This kernel
 * has the counters, so OOMPROF_MARK_VICTIM=pid-only makes oomprof generate the probe it
 * would generate there, and a real kill must still be captured whole.
 */
test("a pid-only oom:mark_victim probe still captures a real OOM kill, with the RSS reported as unknown", async () => {
  const leaker = await buildGoProgram("leaker");
  const out = tempDir();
  const r = await runOomprof(["run", "--limit", "96M", "--out", out, "--events", "-", "--", leaker], { env: { OOMPROF_MARK_VICTIM: "pid-only" } });
  expect(r.status).toBe(137);
  const kill = KillEvent.parse(r.events.find((e) => e.event === "oom_kill"));
  expect({ profile: kill.profile !== null, complete: kill.complete, reason: kill.reason }).toEqual({ profile: true, complete: true, reason: null });
  // comm comes from the executable's name; the counters are null, never 0.
  expect(kill.comm).toBe("leaker");
  expect([kill.anon_rss_kb, kill.file_rss_kb, kill.shmem_rss_kb, kill.total_vm_kb, kill.oom_score_adj]).toEqual([null, null, null, null, null]);
  expect(kill.cgroup).toMatch(/^\/oomprof-/);
  expect(kill.trigger).not.toBeNull();
  expect(r.stderr).not.toContain("RSS at death");
});
