import { describe, expect, setDefaultTimeout, test } from "bun:test";
import { chmodSync, copyFileSync, readdirSync, readFileSync, statSync, unlinkSync } from "node:fs";
import { join } from "node:path";
import { testCgroup } from "../helpers/cgroup.ts";
import { oomKilledUnderWatch, oomKillEvent } from "../helpers/watch.ts";
import { buildGoProgram } from "../helpers/go.ts";
import { LineReader } from "../helpers/lines.ts";
import { oomprofArgv, tempDir } from "../helpers/oomprof.ts";

setDefaultTimeout(180_000);

/**
 * Processes of this watch (it and its bpftraces) holding a descriptor to the file with this
 * inode (a deleted one included). Another oomprof on the host is not this test's business.
 */
function holdersOf(inode: number, watchPid: number): number[] {
  const out: number[] = [];
  const ours = (pid: string) => Number(pid) === watchPid || readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ")[1] === String(watchPid);
  for (const pid of readdirSync("/proc").filter((n) => /^\d+$/.test(n))) {
    try {
      if (!ours(pid)) continue;
    } catch {
      continue;
    }
    try {
      for (const fd of readdirSync(`/proc/${pid}/fd`)) {
        try {
          if (statSync(`/proc/${pid}/fd/${fd}`).ino === inode) out.push(Number(pid));
        } catch {
          /* closed meanwhile */
        }
      }
    } catch {
      /* gone, or not ours to read */
    }
  }
  return out;
}

async function freshCopy(of: string): Promise<string> {
  const path = join(tempDir(), "leaker");
  copyFileSync(of, path);
  chmodSync(path, 0o755);
  return path;
}

describe("oomprof watch where binaries come and go", () => {
  test("a deleted one is let go (no descriptor pins its blocks), and one that runs again is walked again", async () => {
    const built = await buildGoProgram("leaker");
    const deleted = await freshCopy(built);
    const returning = await freshCopy(built);
    const deletedInode = statSync(deleted).ino;
    const watch = Bun.spawn([...oomprofArgv(), "watch", "--verbose", "--out", tempDir(), "--events", "-"], {
      stdout: "pipe",
      stderr: "pipe",
      env: { ...process.env, OOMPROF_PRUNE_AFTER_MS: "1500", OOMPROF_PRUNE_CHECK_MS: "300" },
    });
    const events = new LineReader(watch.stdout as ReadableStream<Uint8Array>);
    const log = new LineReader(watch.stderr as ReadableStream<Uint8Array>);
    try {
      await events.waitFor((l) => l.includes('"event":"ready"'), 60_000);
      // Both run for about two seconds, long enough to be read and walked, then exit.
      const env = { ...process.env, STEP_SLEEP_US: "10000", EXIT_AFTER_STEPS: "200" };
      const runs = [deleted, returning].map((p) => Bun.spawn([p], { env, stdout: "ignore", stderr: "ignore" }));
      for (const p of [deleted, returning]) await log.waitFor((l) => l.includes(`walk live for ${p}`), 60_000);
      for (const r of runs) expect(await r.exited).toBe(3);
      unlinkSync(deleted);

      // One prune or two: the processes may exit on either side of a prune check.
      for (const p of [deleted, returning]) await log.waitFor((l) => l.includes("no longer walking") && l.includes(p), 60_000);
      // Taken out of the running bpftrace's table at once (bpf(2)), not only by the relaunch.
      expect(log.all().filter((l) => l.includes("cannot take rows out"))).toEqual([]);
      // Let go once the bpftrace that still had its row is replaced (after a grace period).
      const deadline = Date.now() + 30_000;
      while (holdersOf(deletedInode, watch.pid).length && Date.now() < deadline) await Bun.sleep(250);
      expect(holdersOf(deletedInode, watch.pid)).toEqual([]);

      // Runs again: read and walked again, and its OOM kill is profiled.
      const kill = await oomKilledUnderWatch(events, [returning], 96 << 20, { STEP_SLEEP_US: "8000" });
      expect(kill.exe).toBe(returning);
      expect(kill.complete).toBe(true);
      expect(kill.profile).not.toBeNull();
    } finally {
      watch.kill("SIGTERM");
      await watch.exited;
    }
  });

  test("an inode that names a new file (here rewritten in place) is read again: a Go binary behind a once non-Go inode is walked", async () => {
    const built = await buildGoProgram("leaker");
    const path = join(tempDir(), "tool");
    copyFileSync("/bin/true", path);
    chmodSync(path, 0o755);
    const inode = statSync(path).ino;
    const watch = Bun.spawn([...oomprofArgv(), "watch", "--verbose", "--out", tempDir(), "--events", "-"], { stdout: "pipe", stderr: "pipe" });
    const events = new LineReader(watch.stdout as ReadableStream<Uint8Array>);
    const log = new LineReader(watch.stderr as ReadableStream<Uint8Array>);
    try {
      await events.waitFor((l) => l.includes('"event":"ready"'), 60_000);
      // Seen once as what it is now: not Go.
      expect(await Bun.spawn([path]).exited).toBe(0);
      await Bun.sleep(1000);
      // The same inode now holds a Go program (cp keeps the inode when the target exists).
      copyFileSync(built, path);
      expect(statSync(path).ino).toBe(inode);
      const cg = testCgroup(96 << 20);
      const p = Bun.spawn(cg.argv([path]), { stdout: "ignore", stderr: "ignore", env: { ...process.env, STEP_SLEEP_US: "8000" } });
      await log.waitFor((l) => l.includes(`walk live for ${path}`), 60_000);
      expect(await p.exited).toBe(137);
      const kill = await oomKillEvent(events, p.pid);
      cg.remove();
      expect(kill.complete).toBe(true);
      expect(kill.profile).not.toBeNull();
    } finally {
      watch.kill("SIGTERM");
      await watch.exited;
    }
  });
});
