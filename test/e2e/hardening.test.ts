import { memoryCgroupDir } from "../../src/cgroup/memory-cgroup.ts";
import { describe, expect, setDefaultTimeout, test } from "bun:test";
import { chmodSync, existsSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { buildGoProgram } from "../helpers/go.ts";
import { LineReader } from "../helpers/lines.ts";
import { oomprofArgv, runOomprof, tempDir } from "../helpers/oomprof.ts";

setDefaultTimeout(180_000);

const oneLine = (stderr: string) =>
  stderr
    .trim()
    .split("\n")
    .filter((l) => !l.startsWith("oomprof: armed"));

/** Failed, with one line on stderr that says this. */
function expectOneLineError(r: { status: number | null; stderr: string }, says: string | RegExp): void {
  expect(r.status).not.toBe(0);
  expect(oneLine(r.stderr)).toHaveLength(1);
  if (typeof says === "string") expect(r.stderr).toContain(says);
  else expect(r.stderr).toMatch(says);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return !readFileSync(`/proc/${pid}/stat`, "utf8").includes(") Z ");
  } catch {
    return false;
  }
}

function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, "utf8");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      if (ppid === pid) out.push(Number(name));
    } catch {
      /* gone */
    }
  }
  return out;
}

describe("bad input and a bad host: one line on stderr, non-zero status", () => {
  test("no bpftrace: says how to install it", async () => {
    const r = await runOomprof(["run", "--out", tempDir(), "--", "true"], { env: { OOMPROF_BPFTRACE: "/nonexistent/bpftrace" } });
    expectOneLineError(r, "apt-get install bpftrace");
  });

  test("a bpftrace that is too old", async () => {
    const dir = tempDir();
    const fake = join(dir, "bpftrace");
    writeFileSync(fake, "#!/bin/sh\necho 'bpftrace v0.16.0'\n");
    chmodSync(fake, 0o755);
    const r = await runOomprof(["run", "--out", tempDir(), "--", "true"], { env: { OOMPROF_BPFTRACE: fake } });
    expectOneLineError(r, "too old");
  });

  test("not root", async () => {
    const argv = oomprofArgv();
    const r = Bun.spawnSync(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--", ...argv, "run", "--out", "/tmp", "--", "true"], {
      stderr: "pipe",
      env: { ...process.env, HOME: "/tmp" },
    });
    expectOneLineError({ status: r.exitCode, stderr: r.stderr.toString() }, /needs root|sudo/);
  });

  test("an unwritable --out", async () => {
    const r = await runOomprof(["run", "--out", "/proc/oomprof-cannot-write-here", "--", "true"]);
    expectOneLineError(r, "--out");
  });

  test("a symlink planted where the events file goes is not followed", async () => {
    const dir = tempDir();
    const victim = join(dir, "precious");
    writeFileSync(victim, "keep me\n");
    const planted = join(dir, "events.ndjson");
    symlinkSync(victim, planted);
    const r = await runOomprof(["run", "--out", dir, "--events", planted, "--", "true"]);
    expect(r.status).not.toBe(0);
    expect(oneLine(r.stderr)).toHaveLength(1);
    expect(readFileSync(victim, "utf8")).toBe("keep me\n");
  });

  test("a program that is not executable: 126, like a shell", async () => {
    const dir = tempDir();
    const f = join(dir, "notexec");
    writeFileSync(f, "x");
    const r = await runOomprof(["run", "--out", dir, "--", f]);
    expect(r.status).toBe(126);
    expect(oneLine(r.stderr)).toHaveLength(1);
  });
});

describe("a corrupt ELF given to run", () => {
  test("one the kernel cannot load: one line, 126, and nothing is started", async () => {
    const leaker = await buildGoProgram("leaker");
    const dir = tempDir();
    const truncated = join(dir, "truncated");
    writeFileSync(truncated, readFileSync(leaker).subarray(0, 300_000));
    chmodSync(truncated, 0o755);
    const garbage = join(dir, "garbage");
    writeFileSync(garbage, Buffer.concat([Buffer.from([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1, 0]), Buffer.alloc(200, 0x41)]));
    chmodSync(garbage, 0o755);
    for (const f of [truncated, garbage]) {
      const r = await runOomprof(["run", "--out", dir, "--events", join(dir, "events.ndjson"), "--", f]);
      expect(r.status).toBe(126);
      expect(oneLine(r.stderr)).toHaveLength(1);
      expect(r.stderr).toContain("corrupt ELF");
      // Refused before arming: no events were written.
      expect(existsSync(join(dir, "events.ndjson"))).toBe(false);
    }
  });

  test("one oomprof cannot read but the kernel can (no section headers, as packers leave it) still runs", async () => {
    const leaker = await buildGoProgram("leaker");
    const dir = tempDir();
    const bytes = new Uint8Array(readFileSync(leaker));
    const view = new DataView(bytes.buffer);
    view.setBigUint64(0x28, 0n, true); // e_shoff
    view.setUint32(0x3c, 0, true); // e_shnum, e_shstrndx
    const noSections = join(dir, "nosections");
    writeFileSync(noSections, bytes);
    chmodSync(noSections, 0o755);
    const r = await runOomprof(["run", "--out", dir, "--", noSections], { env: { EXIT_AFTER_STEPS: "1" } });
    expect(r.status).toBe(3);
    expect(r.stderr).toContain("no heap profile");
  });
});

describe("tracefs not mounted", () => {
  // A private mount namespace: the host's tracefs stays mounted for everything else.
  const inNamespace = (script: string, args: string[]) =>
    Bun.spawnSync(["unshare", "--mount", "--propagation", "private", "/bin/sh", "-c", script, "sh", ...oomprofArgv(), ...args], {
      stdout: "pipe",
      stderr: "pipe",
      env: process.env,
    });
  const unmount = "umount /sys/kernel/debug/tracing 2>/dev/null; umount /sys/kernel/tracing 2>/dev/null; grep -q tracefs /proc/mounts && exit 99;";

  test("oomprof mounts it and goes on", async () => {
    const r = inNamespace(`${unmount} "$@"; s=$?; grep -q '^nodev /sys/kernel/tracing tracefs' /proc/mounts || exit 98; exit $s`, [
      "run",
      "--out",
      tempDir(),
      "--",
      "true",
    ]);
    expect(r.stderr.toString()).not.toContain("tracefs");
    expect(r.exitCode).toBe(0);
  });

  test("where it cannot be mounted: one line that says how", async () => {
    // An empty read-only /sys/kernel leaves no mount point for tracefs.
    const r = inNamespace(`${unmount} mount -t tmpfs -o ro,size=1k none /sys/kernel || exit 97; "$@"`, ["run", "--out", tempDir(), "--", "true"]);
    expectOneLineError({ status: r.exitCode, stderr: r.stderr.toString() }, "mount -t tracefs nodev /sys/kernel/tracing");
  });
});

describe("faults", () => {
  test("oomprof SIGKILLed: neither the child nor bpftrace outlives it, and the next run removes its cgroup", async () => {
    const p = Bun.spawn([...oomprofArgv(), "run", "--limit", "64M", "--out", tempDir(), "--events", "-", "--", "sleep", "60"], {
      stdout: "pipe",
      stderr: "ignore",
    });
    const lines = new LineReader(p.stdout as ReadableStream<Uint8Array>);
    const start = JSON.parse(await lines.waitFor((l) => l.includes('"event":"start"'), 60_000));
    const kids = childrenOf(p.pid);
    expect(kids.length).toBeGreaterThanOrEqual(2); // the child and bpftrace
    p.kill("SIGKILL");
    await p.exited;
    await Bun.sleep(1000);
    for (const k of kids) expect(alive(k)).toBe(false);
    expect(alive(start.pid)).toBe(false);
    const r = await runOomprof(["run", "--limit", "64M", "--out", tempDir(), "--", "true"]);
    expect(r.status).toBe(0);
    expect(existsSync(memoryCgroupDir(start.cgroup))).toBe(false);
  });

  test("bpftrace dies mid-run: run keeps the child, says capture is off, and passes its status through", async () => {
    const events = join(tempDir(), "events.ndjson");
    const p = Bun.spawn([...oomprofArgv(), "run", "--out", tempDir(), "--events", events, "--", "sh", "-c", "sleep 3; exit 5"], {
      stdout: "ignore",
      stderr: "pipe",
    });
    const stderr = new Response(p.stderr).text();
    const deadline = Date.now() + 60_000;
    while (!(existsSync(events) && readFileSync(events, "utf8").includes('"event":"start"')) && Date.now() < deadline) await Bun.sleep(50);
    const bpftrace = childrenOf(p.pid).filter((k) => readFileSync(`/proc/${k}/comm`, "utf8").trim() === "bpftrace");
    expect(bpftrace).toHaveLength(1);
    process.kill(bpftrace[0]!, "SIGKILL");
    expect(await p.exited).toBe(5);
    expect(await stderr).toContain("heap capture is off");
  });

  test("two Go processes killed at the same moment are both captured", async () => {
    const leaker = await buildGoProgram("leaker");
    const watch = Bun.spawn([...oomprofArgv(), "watch", "--out", tempDir(), "--events", "-"], { stdout: "pipe", stderr: "ignore" });
    const lines = new LineReader(watch.stdout as ReadableStream<Uint8Array>);
    try {
      await lines.waitFor((l) => l.includes('"event":"ready"'), 60_000);
      const env = { ...process.env, STEP_SLEEP_US: "50000" };
      const a = Bun.spawn([leaker], { env, stdout: "ignore" });
      const b = Bun.spawn([leaker], { env, stdout: "ignore" });
      await Bun.sleep(2500);
      a.kill("SIGKILL");
      b.kill("SIGKILL");
      for (const pid of [a.pid, b.pid]) {
        const ev = JSON.parse(await lines.waitFor((l) => l.includes('"event":"kill"') && l.includes(`"pid":${pid},`), 30_000));
        expect(ev.complete).toBe(true);
        expect(existsSync(ev.profile)).toBe(true);
      }
    } finally {
      watch.kill("SIGTERM");
      await watch.exited;
    }
  });
});

describe("a full disk", () => {
  test("no truncated profile is left behind, and the event says why there is none", async () => {
    const dir = tempDir();
    expect(Bun.spawnSync(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", dir]).exitCode).toBe(0);
    try {
      Bun.spawnSync(["dd", "if=/dev/zero", `of=${join(dir, "fill")}`, "bs=4k"], { stderr: "ignore" });
      const leaker = await buildGoProgram("leaker");
      const r = await runOomprof(["run", "--limit", "96M", "--out", dir, "--events", "-", "--", leaker]);
      expect(r.status).toBe(137);
      const kill = r.events.find((e) => e.event === "oom_kill");
      if (kill?.event !== "oom_kill") throw new Error(r.stderr);
      expect(kill.profile).toBeNull();
      expect(kill.reason).toContain("ENOSPC");
      expect(readdirSync(dir)).toEqual(["fill"]);
    } finally {
      Bun.spawnSync(["umount", dir]);
    }
  });
});
