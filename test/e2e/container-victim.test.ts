import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, readFileSync, rmSync } from "node:fs";
import { buildGoProgram } from "../helpers/go.ts";
import { LineReader } from "../helpers/lines.ts";
import { oomprofArgv, tempDir } from "../helpers/oomprof.ts";
import { requirePodman, runVictim, skipContainerTests, victimImage, type Victim } from "../helpers/podman.ts";

/**
 * `watch` on the host profiles a Go program in a podman container (its own PID and mount
 * namespaces, a v1 memory cgroup of podman's) that the OOM killer takes within about a
 * second of its start, and says which container it was.
 */

/** The leaker without pauses, 4 MiB a step, fills 256 MiB in a few hundred ms. */
const FAST = { STEP_SLEEP_US: "0", LEAK_KIB: "4096" };

const skip = skipContainerTests();
let watch: ReturnType<typeof Bun.spawn> | undefined;
let events: LineReader;
let stderr: LineReader;
let image: string;
const victims: Victim[] = [];
const dir = tempDir();

beforeAll(async () => {
  if (skip) return;
  requirePodman();
  image = victimImage(await buildGoProgram("leaker"));
  watch = Bun.spawn([...oomprofArgv(), "watch", "--out", dir, "--events", "-"], { stdout: "pipe", stderr: "pipe" });
  events = new LineReader(watch.stdout as ReadableStream<Uint8Array>);
  stderr = new LineReader(watch.stderr as ReadableStream<Uint8Array>);
  await events
    .waitFor((l) => l.includes('"event":"ready"'), 60_000)
    .catch((e: Error) => {
      throw new Error(`${e.message}\nwatch's stderr:\n${stderr.all().join("\n")}`);
    });
}, 120_000);

afterAll(async () => {
  for (const v of victims) v.remove();
  if (watch) {
    watch.kill("SIGTERM");
    await watch.exited;
  }
  rmSync(dir, { recursive: true, force: true });
});

describe.skipIf(skip)("oomprof watch on the host: a Go program OOM-killed in a podman container", () => {
  test("profiled, complete, with its container, cgroup, host pid and pid 1 in its namespace", async () => {
    const v = runVictim({ image, memory: "256m", env: FAST });
    victims.push(v);
    const { status, livedMs } = await v.wait();
    expect(status).toBe(137);
    // Killed within about a second of its start: podman's start-to-finish times (its exit
    // as conmon saw it) measured 0.3-0.8 s on an idle 2-CPU VM, up to 1.4 s under a load of 12.
    console.log(`container ${v.id.slice(0, 12)}: pid ${v.pid}, lived ${livedMs} ms`);
    expect(livedMs).toBeLessThan(2_000);

    const line = await events.waitFor((l) => l.includes('"event":"oom_kill"') && l.includes(`"pid":${v.pid},`), 30_000);
    // Read as printed, not through the schema, so every field is seen as it is.
    const e = JSON.parse(line) as Record<string, unknown>;
    expect({ pid: e.pid, comm: e.comm, reason: e.reason, complete: e.complete }).toEqual({ pid: v.pid, comm: "leaker", reason: null, complete: true });
    expect(typeof e.profile).toBe("string");
    expect(existsSync(e.profile as string)).toBe(true);
    expect([...readFileSync(e.profile as string).subarray(0, 2)]).toEqual([0x1f, 0x8b]);
    expect(e.buckets as number).toBeGreaterThan(0);
    expect(e.cgroup).toBe(v.cgroup);
    // Its memory cgroup's limit, read in the probe (the cgroup is gone soon after).
    expect(e.limit_bytes).toBe(256 << 20);
    expect(e.ns_pid).toBe(1);
    expect(e.container).toEqual({ runtime: "podman", id: v.id, pod_uid: null, qos_class: null, pod_name: null, pod_namespace: null });
    // The summary on stderr names the container by its short id.
    await stderr.waitFor((l) => l.includes(v.id.slice(0, 12)), 10_000);
  }, 120_000);

  test("Go's own fatal out of memory in a container: its binary's uprobe attached through the descriptor oomprof holds, its cgroup read in the throwing thread", async () => {
    // podman cannot set RLIMIT_AS: it is lowered from here, to 400 MB of address space
    // more than the program has; at 50 MB/s it lives long enough for watch to add the new
    // binary's runtime-OOM uprobe (a new bpftrace) before mmap fails.
    const v = runVictim({ image, memory: "4g", env: { STEP_SLEEP_US: "20000", LEAK_KIB: "1024" } });
    victims.push(v);
    const vmKb = Number(/^VmSize:\s+(\d+) kB/m.exec(readFileSync(`/proc/${v.pid}/status`, "utf8"))?.[1]);
    const as = (vmKb + 400_000) * 1024;
    expect(Bun.spawnSync(["prlimit", "--pid", String(v.pid), `--as=${as}:${as}`]).exitCode).toBe(0);
    expect((await v.wait(120_000)).status).toBe(2);
    const line = await events.waitFor((l) => l.includes('"event":"runtime_oom"') && l.includes(`"pid":${v.pid},`), 30_000);
    const e = JSON.parse(line) as Record<string, unknown>;
    expect({ complete: e.complete, reason: e.reason, ns_pid: e.ns_pid }).toEqual({ complete: true, reason: null, ns_pid: 1 });
    expect(String(e.message)).toContain("out of memory");
    // Read by the probe in the throwing thread: by the time oomprof could read /proc, the
    // process is a zombie and its cgroup says nothing.
    expect(e.cgroup).toBe(v.cgroup);
    expect(e.container).toMatchObject({ runtime: "podman", id: v.id });
  }, 180_000);
});
