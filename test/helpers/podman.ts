import { chmodSync, copyFileSync, existsSync, mkdirSync, readFileSync, rmSync } from "node:fs";
import { basename, join, resolve } from "node:path";
import { tempDir } from "./oomprof.ts";

/**
 * Real containers for the end-to-end tests, with podman. On this kind of machine podman
 * needs runc (crun refuses the hybrid cgroup layout) and the cgroupfs manager; a container
 * may only lower rlimits (the VM has no CAP_SYS_RESOURCE) and uses the host's network.
 * No image registry is reachable: victims are imported from a directory holding one
 * static Go binary, and the agent image is built by scripts/container-images.
 *
 * The container tests fail, not skip, where podman cannot run: CI runs as root on a
 * machine where it must. OOMPROF_SKIP_CONTAINERS=1 lets them skip (with the reason).
 */

const ROOT = resolve(import.meta.dir, "../..");

/** podman with the global flags this machine needs. */
export const PODMAN = ["podman", "--runtime", "/usr/sbin/runc", "--cgroup-manager=cgroupfs"];
/** `podman run` flags every container here needs. */
export const RUN_FLAGS = ["--network=host", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"];
/** The agent image scripts/container-images builds. */
export const AGENT_IMAGE = process.env.OOMPROF_IMAGE ?? "localhost/oomprof:test";

export interface PodmanResult {
  status: number;
  stdout: string;
  stderr: string;
}

/** Runs `podman <args>` with the flags above, to completion. */
export function podman(args: string[], opts: { timeoutMs?: number } = {}): PodmanResult {
  const p = Bun.spawnSync([...PODMAN, ...args], { stdout: "pipe", stderr: "pipe", stdin: "ignore", timeout: opts.timeoutMs ?? 60_000 });
  return { status: p.exitCode ?? -1, stdout: p.stdout.toString(), stderr: p.stderr.toString() };
}

/** Like podman(), but a failure throws with podman's stderr; returns stdout, trimmed. */
export function podmanOk(args: string[], opts: { timeoutMs?: number } = {}): string {
  const r = podman(args, opts);
  if (r.status !== 0) throw new Error(`podman ${args.join(" ")} failed (status ${r.status}): ${r.stderr.trim()}`);
  return r.stdout.trim();
}

let unusable: string | null | undefined;

/** Why podman cannot run containers here, or null when it can (checked once). */
export function podmanUnusable(): string | null {
  if (unusable !== undefined) return unusable;
  if (process.getuid?.() !== 0) unusable = "the container tests need root (podman with the cgroupfs manager, memory limits)";
  else if (!Bun.which("podman")) unusable = "podman is not installed (scripts/setup installs it)";
  else if (!existsSync("/usr/sbin/runc")) unusable = "runc is not installed at /usr/sbin/runc (scripts/setup installs it)";
  else {
    const r = podman(["info", "--format", "{{.Host.CgroupsVersion}}"]);
    unusable = r.status === 0 ? null : `podman info failed: ${r.stderr.trim()}`;
  }
  return unusable;
}

/**
 * Whether the container tests skip: only when podman is unusable and
 * OOMPROF_SKIP_CONTAINERS=1 asks for it. Otherwise they run, and requirePodman() fails them.
 */
export function skipContainerTests(): boolean {
  const why = podmanUnusable();
  if (why === null || process.env.OOMPROF_SKIP_CONTAINERS !== "1") return false;
  console.warn(`skipping the container tests (OOMPROF_SKIP_CONTAINERS=1): ${why}`);
  return true;
}

/** Throws, with the reason, when podman cannot run containers here. */
export function requirePodman(): void {
  const why = podmanUnusable();
  if (why !== null) throw new Error(`${why} (set OOMPROF_SKIP_CONTAINERS=1 to skip the container tests)`);
}

/**
 * An image holding one static Go binary at /<its name>, as its entrypoint (so it runs as
 * the container's PID 1, under its own name). Imported once per binary content.
 */
export function victimImage(binaryPath: string): string {
  const name = basename(binaryPath);
  const hash = new Bun.CryptoHasher("sha256").update(readFileSync(binaryPath)).digest("hex").slice(0, 16);
  const image = `localhost/oomprof-victim-${name.toLowerCase().replace(/[^a-z0-9_.-]/g, "-")}:${hash}`;
  if (podman(["image", "exists", image]).status === 0) return image;
  const dir = tempDir("oomprof-victim-");
  try {
    mkdirSync(join(dir, "root"));
    copyFileSync(binaryPath, join(dir, "root", name));
    chmodSync(join(dir, "root", name), 0o755);
    const tar = join(dir, "root.tar");
    const t = Bun.spawnSync(["tar", "--numeric-owner", "--owner=0", "--group=0", "-C", join(dir, "root"), "-cf", tar, "."], { stderr: "pipe" });
    if (t.exitCode !== 0) throw new Error(`tar failed: ${t.stderr.toString()}`);
    podmanOk(["import", "--change", `ENTRYPOINT ["/${name}"]`, tar, image]);
    return image;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export interface Victim {
  /** The 64-hex container id. */
  id: string;
  /** The container's first process (the entrypoint) in the host's PID namespace. */
  pid: number;
  /**
   * The container's cgroup: with the cgroupfs manager podman puts it in
   * /libpod_parent/libpod-<id>, in the v1 memory hierarchy here.
   */
  cgroup: string;
  /** Waits for the container to end: its status (137 for a SIGKILL) and how long its process lived. */
  wait(timeoutMs?: number): Promise<{ status: number; livedMs: number }>;
  /** Removes the container (podman rm -f). */
  remove(): void;
}

/**
 * Starts a container of image, detached, with a memory limit (podman's syntax: "256m")
 * and environment. The container is kept after it ends (no --rm) so its id, pid file and
 * times can still be read after an OOM kill within milliseconds: the host pid comes from
 * the pid file runc writes before the entrypoint runs, which stays until `podman rm`
 * (`podman inspect`'s State.Pid is 0 once the container has ended).
 */
export function runVictim(opts: { image: string; memory: string; env?: Record<string, string>; name?: string }): Victim {
  const env = Object.entries(opts.env ?? {}).flatMap(([k, v]) => ["--env", `${k}=${v}`]);
  const name = opts.name ? ["--name", opts.name] : [];
  const id = podmanOk(["run", "-d", ...RUN_FLAGS, ...name, "--memory", opts.memory, "--memory-swap", opts.memory, ...env, opts.image]);
  if (!/^[0-9a-f]{64}$/.test(id)) throw new Error(`podman run printed ${JSON.stringify(id)}, not a container id`);
  const remove = () => void podman(["rm", "-f", "-t", "0", id]);
  let pid: number;
  try {
    const pidFile = podmanOk(["inspect", "--format", "{{.PidFile}}", id]);
    pid = Number(readFileSync(pidFile, "utf8").trim());
    if (!Number.isInteger(pid) || pid <= 0) throw new Error(`pid file ${pidFile} holds no pid`);
  } catch (e) {
    remove();
    throw e;
  }
  return {
    id,
    pid,
    cgroup: `/libpod_parent/libpod-${id}`,
    async wait(timeoutMs = 60_000) {
      const p = Bun.spawn([...PODMAN, "wait", id], { stdout: "pipe", stderr: "pipe" });
      const timer = setTimeout(() => p.kill("SIGKILL"), timeoutMs);
      const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
      clearTimeout(timer);
      if (code !== 0) throw new Error(`podman wait ${id} failed (status ${code}): ${err.trim()}`);
      const [started, finished] = podmanOk(["inspect", "--format", "{{.State.StartedAt.UnixNano}} {{.State.FinishedAt.UnixNano}}", id]).split(" ").map(BigInt);
      return { status: Number(out.trim()), livedMs: Number((finished! - started!) / 1_000_000n) };
    },
    remove,
  };
}

/**
 * Builds the agent image with scripts/container-images (idempotent: podman's layer cache
 * makes a rebuild without changes take seconds); its stderr goes to ours. Returns the
 * image and how long the build took.
 */
export function buildAgentImage(): { image: string; seconds: number } {
  const t0 = performance.now();
  const p = Bun.spawnSync(["bash", join(ROOT, "scripts", "container-images")], {
    env: { ...process.env, OOMPROF_IMAGE: AGENT_IMAGE },
    stdout: "inherit",
    stderr: "inherit",
  });
  if (p.exitCode !== 0) throw new Error(`scripts/container-images failed (status ${p.exitCode})`);
  return { image: AGENT_IMAGE, seconds: Math.round((performance.now() - t0) / 100) / 10 };
}

/** The capabilities deploy/kubernetes/daemonset.yaml adds (after dropping ALL), read from the file. */
export function daemonSetCapabilities(): string[] {
  const yaml = readFileSync(join(ROOT, "deploy", "kubernetes", "daemonset.yaml"), "utf8");
  const block = /^(\s*)add:\n((?:\1\s*(?:#.*|-\s*[A-Z_]+)\n)+)/m.exec(yaml);
  if (!block) throw new Error("daemonset.yaml: no capabilities add: list found");
  return [...block[2]!.matchAll(/^\s*-\s*([A-Z_]+)\s*$/gm)].map((m) => m[1]!);
}

/**
 * `podman run` arguments that run the agent image as deploy/kubernetes/daemonset.yaml
 * runs it: host PID namespace, all capabilities dropped and caps added back, not
 * privileged, read-only root with a private /tmp, AppArmor unconfined, the runtime's
 * default seccomp profile, and the DaemonSet's mounts (tracefs and debugfs following the
 * host's mounts, BTF and cgroups read-only, the host's directories for profiles and
 * events). The image's default command runs (`watch --out /var/lib/oomprof --events
 * /var/log/oomprof/events.ndjson`) unless cmd is given.
 */
export function agentRunArgs(opts: {
  image: string;
  caps: string[];
  profilesDir: string;
  eventsDir: string;
  name?: string;
  extra?: string[];
  cmd?: string[];
}): string[] {
  return [
    "run",
    "-d",
    ...RUN_FLAGS,
    ...(opts.name ? ["--name", opts.name] : []),
    "--pid=host",
    "--cap-drop=all",
    ...opts.caps.map((c) => `--cap-add=${c}`),
    "--security-opt",
    "apparmor=unconfined",
    "--read-only",
    "--read-only-tmpfs=false",
    "--mount",
    "type=tmpfs,destination=/tmp,tmpfs-size=16m",
    "--volume",
    "/sys/kernel/tracing:/sys/kernel/tracing:rslave",
    "--volume",
    "/sys/kernel/debug:/sys/kernel/debug:rslave",
    "--volume",
    "/sys/kernel/btf:/sys/kernel/btf:ro",
    "--volume",
    "/sys/fs/cgroup:/sys/fs/cgroup:ro",
    "--volume",
    `${opts.profilesDir}:/var/lib/oomprof`,
    "--volume",
    `${opts.eventsDir}:/var/log/oomprof`,
    ...(opts.extra ?? []),
    opts.image,
    ...(opts.cmd ?? []),
  ];
}
