import { describe, expect, setDefaultTimeout, test } from "bun:test";
import { existsSync } from "node:fs";
import { buildGoProgram } from "../helpers/go.ts";
import { pprofTop, runOomprof, tempDir } from "../helpers/oomprof.ts";

setDefaultTimeout(180_000);

describe("a binary built without memory profiling (no runtime/pprof linked in)", () => {
  test("run turns profiling on before the runtime starts, and the OOM kill yields a profile", async () => {
    const noprof = await buildGoProgram("noprof");
    const r = await runOomprof(["run", "--limit", "96M", "--out", tempDir(), "--events", "-", "--", noprof]);
    expect(r.status).toBe(137);
    expect(r.stderr).toContain("memory profiling is off in this binary");
    const kill = r.events.find((e) => e.event === "oom_kill");
    if (kill?.event !== "oom_kill") throw new Error(r.stderr);
    expect(kill.memprofile_rate).toBe(512 * 1024);
    expect(kill.complete).toBe(true);
    expect(existsSync(kill.profile!)).toBe(true);
    const top = pprofTop(kill.profile!, "inuse_space");
    expect((top.flat.get("main.leakStep") ?? 0) / top.total).toBeGreaterThanOrEqual(0.8);
  });

  test("snapshot detects it and names the fix", async () => {
    const noprof = await buildGoProgram("noprof");
    const p = Bun.spawn([noprof], { stdout: "ignore" });
    try {
      await Bun.sleep(300);
      const r = await runOomprof(["snapshot", String(p.pid), "--out", tempDir(), "--events", "-"]);
      expect(r.status).not.toBe(0);
      expect(r.stderr).toContain('import _ "net/http/pprof"');
      const ev = r.events[0];
      if (ev?.event !== "snapshot") throw new Error(r.stderr);
      expect(ev.profile).toBeNull();
      expect(ev.memprofile_rate).toBe(0);
    } finally {
      p.kill();
    }
  });
});
