import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { processCgroup } from "../../src/cgroup/memory-cgroup.ts";
import { notExiting, processState } from "../../src/process/liveness.ts";

const dir = mkdtempSync(join(tmpdir(), "oomprof-liveness-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A dead process's /proc files describe where the kernel has moved it on its way out, not where it ran. */
describe("a process on its way out", () => {
  test("a zombie is exiting, and its cgroup is not read; a live process's is", async () => {
    // The shell's child is killed while its parent (the shell, exec'd into sleep) never waits: a zombie.
    const pidFile = join(dir, "pid");
    const holder = Bun.spawn(["sh", "-c", `sleep 100 & echo $! > ${pidFile}; exec sleep 100`], { stdout: "ignore" });
    try {
      for (let i = 0; i < 200 && !(existsSync(pidFile) && readFileSync(pidFile, "utf8").trim()); i++) await Bun.sleep(10);
      const pid = Number(readFileSync(pidFile, "utf8"));
      expect(notExiting(pid)).toBe(true);
      expect(processCgroup(pid)).toStartWith("/");
      process.kill(pid, "SIGKILL");
      for (let i = 0; i < 200 && processState(pid) !== "Z"; i++) await Bun.sleep(10);
      expect(processState(pid)).toBe("Z");
      expect(notExiting(pid)).toBe(false);
      expect(processCgroup(pid)).toBeUndefined();
    } finally {
      holder.kill("SIGKILL");
    }
    expect(notExiting(process.pid)).toBe(true);
    expect(processCgroup(process.pid)).toStartWith("/");
  });
});
