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
  test("a zombie is exiting, and the root cgroup it was moved to is not taken for its own", async () => {
    // The shell's child is killed while its parent (the shell, exec'd into sleep) never waits: a zombie.
    const pidFile = join(dir, "pid");
    const holder = Bun.spawn(["sh", "-c", `sleep 100 & echo $! > ${pidFile}; exec sleep 100`], { stdout: "ignore" });
    try {
      for (let i = 0; i < 200 && !(existsSync(pidFile) && readFileSync(pidFile, "utf8").trim()); i++) await Bun.sleep(10);
      const pid = Number(readFileSync(pidFile, "utf8"));
      expect(notExiting(pid)).toBe(true);
      const livePath = processCgroup(pid);
      expect(livePath).toStartWith("/");
      process.kill(pid, "SIGKILL");
      for (let i = 0; i < 200 && processState(pid) !== "Z"; i++) await Bun.sleep(10);
      expect(processState(pid)).toBe("Z");
      expect(notExiting(pid)).toBe(false);
      // cgroup v1 moves it to the root on its way out; where a zombie keeps its path, that path is still true.
      const moved = /:\/\n?$/m.test(
        readFileSync(`/proc/${pid}/cgroup`, "utf8")
          .split("\n")
          .find((l) => /memory|^0::/.test(l)) ?? "",
      );
      expect(processCgroup(pid)).toBe(moved ? undefined : livePath);
    } finally {
      holder.kill("SIGKILL");
    }
    expect(notExiting(process.pid)).toBe(true);
    expect(processCgroup(process.pid)).toStartWith("/");
  });
});
