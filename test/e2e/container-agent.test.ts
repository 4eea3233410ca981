import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, readFileSync, rmSync } from "node:fs";
import { basename, join } from "node:path";
import { buildGoProgram } from "../helpers/go.ts";
import { pprofTop, tempDir } from "../helpers/oomprof.ts";
import {
  agentRunArgs,
  buildAgentImage,
  daemonSetCapabilities,
  podman,
  podmanOk,
  requirePodman,
  runVictim,
  skipContainerTests,
  victimImage,
  type Victim,
} from "../helpers/podman.ts";

/**
 * The agent as deploy/kubernetes/daemonset.yaml runs it: the image built from
 * deploy/container/Containerfile, in a container with the host's PID namespace, all
 * capabilities dropped but the DaemonSet's list, not privileged, a read-only root, the
 * DaemonSet's mounts, running the image's default command. It profiles a Go program the
 * OOM killer takes in another container; profile and event land in the host's directories.
 */

const skip = skipContainerTests();
const dir = tempDir("oomprof-agent-");
const profilesDir = join(dir, "lib");
const eventsDir = join(dir, "log");
const eventsFile = join(eventsDir, "events.ndjson");
const name = `oomprof-agent-test-${process.pid}`;
let agent: string | undefined;
let victimImg: string;
const victims: Victim[] = [];

function eventLines(): string[] {
  return existsSync(eventsFile) ? readFileSync(eventsFile, "utf8").split("\n").filter(Boolean) : [];
}

function agentLogs(): string {
  if (!agent) return "";
  const r = podman(["logs", agent]);
  return r.stdout + r.stderr;
}

/** Waits for an event line in the host's events file; a failure shows the agent's log. */
async function waitForEvent(pred: (line: string) => boolean, timeoutMs: number): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const hit = eventLines().find(pred);
    if (hit !== undefined) return hit;
    const state = agent ? podman(["inspect", "--format", "{{.State.Status}}", agent]).stdout.trim() : "";
    if (Date.now() > deadline || (state !== "" && state !== "running")) {
      throw new Error(`no such event (agent ${state || "not started"}); events:\n${eventLines().join("\n")}\nagent's log:\n${agentLogs()}`);
    }
    await Bun.sleep(200);
  }
}

beforeAll(async () => {
  if (skip) return;
  requirePodman();
  // The build is outside the test's own time: scripts/test builds first, so this is a no-op there.
  const { image, seconds } = buildAgentImage();
  console.log(`agent image ${image}: scripts/container-images took ${seconds} s`);
  victimImg = victimImage(await buildGoProgram("leaker"));
  mkdirSync(profilesDir);
  mkdirSync(eventsDir);
  const caps = daemonSetCapabilities();
  agent = podmanOk(agentRunArgs({ image, caps, profilesDir, eventsDir, name }));
  await waitForEvent((l) => l.includes('"event":"ready"'), 60_000);
  // What the agent holds: podman leaves out capabilities this machine cannot grant.
  const pid = Number(podmanOk(["inspect", "--format", "{{.State.Pid}}", agent]));
  const capEff = /^CapEff:\s*(\S+)/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1];
  console.log(`agent ${agent.slice(0, 12)} (pid ${pid}) asked for ${caps.join(",")}; CapEff ${capEff}`);
}, 900_000);

afterAll(() => {
  for (const v of victims) v.remove();
  if (agent) {
    // SIGTERM, as the kubelet stops it: watch ends cleanly with status 0.
    podman(["stop", "-t", "20", agent], { timeoutMs: 30_000 });
    const status = podman(["inspect", "--format", "{{.State.ExitCode}}", agent]).stdout.trim();
    if (status !== "0") console.log(`agent ended with status ${status}; its log:\n${agentLogs()}`);
    podman(["rm", "-f", agent]);
  }
  rmSync(dir, { recursive: true, force: true });
});

describe.skipIf(skip)("the agent image, run as the DaemonSet runs it", () => {
  test("profiles a Go program OOM-killed in another container: event and pprof on the host", async () => {
    const v = runVictim({ image: victimImg, memory: "256m", env: { STEP_SLEEP_US: "0", LEAK_KIB: "4096" } });
    victims.push(v);
    const { status, livedMs } = await v.wait();
    expect(status).toBe(137);
    console.log(`victim ${v.id.slice(0, 12)}: pid ${v.pid}, lived ${livedMs} ms`);

    const line = await waitForEvent((l) => l.includes('"event":"oom_kill"') && l.includes(`"pid":${v.pid},`), 30_000);
    const e = JSON.parse(line) as Record<string, unknown>;
    expect({ pid: e.pid, comm: e.comm, reason: e.reason, complete: e.complete }).toEqual({ pid: v.pid, comm: "leaker", reason: null, complete: true });
    // The profile's path is the agent's; the file is in the host directory mounted there.
    expect(e.profile).toMatch(/^\/var\/lib\/oomprof\/[^/]+\.pb\.gz$/);
    const onHost = join(profilesDir, basename(e.profile as string));
    const bytes = readFileSync(onHost);
    expect(bytes.length).toBeGreaterThan(100);
    expect([...bytes.subarray(0, 2)]).toEqual([0x1f, 0x8b]);
    // Go's own tool reads it, and sees the leak.
    const top = pprofTop(onHost, "inuse_space");
    expect(top.total).toBeGreaterThan(100 << 20);
    expect(top.flat.get("main.leakStep") ?? 0).toBeGreaterThan(top.total / 2);

    expect(e.cgroup).toBe(v.cgroup);
    expect(e.ns_pid).toBe(1);
    expect(e.container).toEqual({ runtime: "podman", id: v.id, pod_uid: null, qos_class: null, pod_name: null, pod_namespace: null });
    // The agent's log (what `kubectl logs` shows) names the container.
    expect(agentLogs()).toContain(v.id.slice(0, 12));
  }, 120_000);
});
