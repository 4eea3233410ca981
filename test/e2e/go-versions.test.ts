import { describe, expect, setDefaultTimeout, test } from "bun:test";
import { copyFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { buildGoProgram } from "../helpers/go.ts";
import { runOomprof, tempDir } from "../helpers/oomprof.ts";

setDefaultTimeout(300_000);

// Every toolchain the archives give here (OOMPROF_GO_LIST; scripts/test fills it in):
// the capture works, goroutines are counted, and the profile names its frames with the
// binary gone.
const toolchains = (process.env.OOMPROF_GO_LIST ?? process.env.OOMPROF_GO ?? "go").split(":").filter(Boolean);

describe.each(toolchains)("a leaker built by %s", (go) => {
  test("is captured at its OOM kill, and pprof names file:line and inlined frames with the binary deleted", async () => {
    const dir = tempDir();
    const leaker = join(dir, "leaker");
    copyFileSync(await buildGoProgram("leaker", { go }), leaker);
    const r = await runOomprof(["run", "--limit", "96M", "--out", dir, "--events", "-", "--", leaker], { env: { GOROUTINES: "50" } });
    expect(r.status).toBe(137);
    const kill = r.events.find((e) => e.event === "oom_kill");
    if (kill?.event !== "oom_kill") throw new Error(r.stderr);
    expect(kill.complete).toBe(true);
    // This release's runtime layout counts the 50 parked goroutines and main.
    expect(kill.goroutines).toBeGreaterThanOrEqual(51);
    expect(kill.goroutines).toBeLessThanOrEqual(55);
    rmSync(leaker);
    // The host's go tool reads the profile; the binary is gone.
    const top = (...view: string[]) =>
      Bun.spawnSync([process.env.OOMPROF_GO ?? "go", "tool", "pprof", ...view, "-top", "-lines", "-nodecount=50", kill.profile!], {
        stderr: "pipe",
      }).stdout.toString();
    expect(top()).toMatch(/main\.leakStep .*leaker\/main\.go:\d+/);
    // The churn's garbage may all be swept at the kill (in use 0, so not in -top's default
    // view: seen once with Go 1.27.4); what it allocated is always there.
    expect(top("-sample_index=alloc_space")).toMatch(/main\.scratch .*leaker\/main\.go:\d+ \(inline\)/);
  });
});
