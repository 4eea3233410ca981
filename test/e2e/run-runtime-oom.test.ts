import { beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { existsSync } from "node:fs";
import { buildGoProgram } from "../helpers/go.ts";
import { pprofTop, runOomprof, tempDir } from "../helpers/oomprof.ts";

setDefaultTimeout(180_000);

describe("Go's own fatal out of memory (no OOM killer)", () => {
  let leaker: string;
  beforeAll(async () => {
    leaker = await buildGoProgram("leaker");
  });

  test("under ulimit -v, through a shell that execs the program: profiled, and exit status 2 passes through", async () => {
    const out = tempDir();
    // Go reserves 0.8-1.2 GB of address space at start (1.19-1.24); 2 GB leaves room to grow, then mmap fails.
    const r = await runOomprof(["run", "--out", out, "--events", "-", "--", "sh", "-c", `ulimit -v 2000000; exec ${leaker}`], {
      env: { STEP_SLEEP_US: "0" },
    });
    expect(r.status).toBe(2);
    expect(r.stderr).toContain("fatal error: out of memory");
    const ev = r.events.find((e) => e.event === "runtime_oom");
    if (ev?.event !== "runtime_oom") throw new Error(`no runtime_oom event:\n${r.stderr.slice(-2000)}`);
    expect(ev.message).toContain("out of memory");
    expect(ev.complete).toBe(true);
    expect(existsSync(ev.profile!)).toBe(true);
    const top = pprofTop(ev.profile!, "inuse_space");
    expect((top.flat.get("main.leakStep") ?? 0) / top.total).toBeGreaterThanOrEqual(0.4);
    expect(r.events.at(-1)).toMatchObject({ event: "exit", status: 2 });
  });

  test("a normal exit is not a kill: no walk, no event, the exit code passes through", async () => {
    // The limit only bounds the test if the exit were ever missed.
    const r = await runOomprof(["run", "--limit", "256M", "--out", tempDir(), "--events", "-", "--", leaker], { env: { EXIT_AFTER_STEPS: "100" } });
    expect(r.status).toBe(3);
    expect(r.events.map((e) => e.event)).toEqual(["armed", "start", "exit"]);
  });
});
