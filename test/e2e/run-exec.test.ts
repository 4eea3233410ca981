import { beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { existsSync } from "node:fs";
import { buildGoProgram } from "../helpers/go.ts";
import { pprofTop, runOomprof, tempDir } from "../helpers/oomprof.ts";

setDefaultTimeout(180_000);

// The Go program is not the command oomprof was given: it is found when it is exec'd.
describe("oomprof run follows a shell to the Go program it runs", () => {
  let leaker: string;
  beforeAll(async () => {
    leaker = await buildGoProgram("leaker");
  });

  test.each([
    ["exec'd in place (sh -c 'exec ./app')", (p: string) => `exec ${p}`, 137],
    ["run as a child of the shell (sh -c './app; ...')", (p: string) => `${p}; exit 7`, 7],
  ])("%s", async (_, script, expectedStatus) => {
    const out = tempDir();
    const r = await runOomprof(["run", "--limit", "96M", "--out", out, "--events", "-", "--", "sh", "-c", script(leaker)]);
    expect(r.status).toBe(expectedStatus);
    const kill = r.events.find((e) => e.event === "oom_kill");
    if (kill?.event !== "oom_kill") throw new Error(`no oom_kill event:\n${r.stderr}`);
    expect(kill.exe).toBe(leaker);
    expect(kill.complete).toBe(true);
    expect(existsSync(kill.profile!)).toBe(true);
    const top = pprofTop(kill.profile!, "inuse_space");
    expect((top.flat.get("main.leakStep") ?? 0) / top.total).toBeGreaterThanOrEqual(0.5);
    // Events are in order: the kill is reported before oomprof's own exit.
    expect(r.events.map((e) => e.event)).toEqual(["armed", "start", "oom_kill", "exit"]);
  });
});
