import { markVictimHasCounters, TRACEFS_ROOTS } from "./tracepoint-format.ts";
import { accessSync, constants, readFileSync, statSync } from "node:fs";
import { release } from "node:os";
import { config } from "../config.ts";
import { MIN_BPFTRACE, parseBpftraceVersion, versionAtLeast, type BpftraceVersion } from "../probes/bpftrace-host.ts";
import { chooseWalk, walkAttachPoints } from "../probes/walk-templates.ts";

/**
 * What `oomprof doctor` checks: everything oomprof needs from this host, each with
 * what was found and, where something is missing, how to fix it. The host is read
 * through `HostView` so the checks can be exercised against a made-up host.
 */

export type CheckStatus = "ok" | "warn" | "fail";

export interface CheckResult {
  name: string;
  status: CheckStatus;
  /** What was found, in a few words. */
  found: string;
  /** How to fix it (fail and warn only). */
  fix?: string;
}

export type PathState = "present" | "missing" | "denied";

export interface HostView {
  euid: number;
  userName(uid: number): string | undefined;
  /** OOMPROF_BPFTRACE, when set. */
  bpftraceOverride: string | undefined;
  read(path: string): string | undefined;
  /** Whether a path exists, or cannot be looked at for lack of permission. */
  stat(path: string): PathState;
  executable(path: string): boolean;
  which(cmd: string): string | undefined;
  run(argv: string[]): { ok: boolean; stdout: string; stderr: string };
  kernelRelease: string;
}

export function realHost(): HostView {
  return {
    euid: process.geteuid?.() ?? -1,
    userName(uid) {
      try {
        for (const line of readFileSync("/etc/passwd", "utf8").split("\n")) {
          const f = line.split(":");
          if (f.length > 2 && Number(f[2]) === uid) return f[0];
        }
      } catch {
        /* no passwd: the uid alone will do */
      }
      return undefined;
    },
    bpftraceOverride: config().bpftrace,
    read(path) {
      try {
        return readFileSync(path, "utf8");
      } catch {
        return undefined;
      }
    },
    stat(path) {
      try {
        statSync(path);
        return "present";
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        return code === "EACCES" || code === "EPERM" ? "denied" : "missing";
      }
    },
    executable(path) {
      try {
        accessSync(path, constants.X_OK);
        return statSync(path).isFile();
      } catch {
        return false;
      }
    },
    which: (cmd) => Bun.which(cmd) ?? undefined,
    run(argv) {
      try {
        const r = Bun.spawnSync(argv, { stdout: "pipe", stderr: "pipe", stdin: "ignore", timeout: 20_000 });
        return { ok: r.exitCode === 0, stdout: r.stdout.toString(), stderr: r.stderr.toString() };
      } catch (e) {
        return { ok: false, stdout: "", stderr: e instanceof Error ? e.message : String(e) };
      }
    },
    kernelRelease: release(),
  };
}

// Capability numbers (linux/capability.h).
const CAPS = { CAP_SYS_PTRACE: 19, CAP_SYS_ADMIN: 21, CAP_PERFMON: 38, CAP_BPF: 39 } as const;
type CapName = keyof typeof CAPS;

/** The capabilities oomprof's work needs; before Linux 5.8 CAP_SYS_ADMIN covered BPF and perf. */
function neededCaps(h: HostView, eff: bigint | undefined): CapName[] {
  const last = Number(h.read("/proc/sys/kernel/cap_last_cap")?.trim() ?? "40");
  // The kernel accepts CAP_SYS_ADMIN wherever it asks for CAP_BPF or CAP_PERFMON (and they
  // do not exist before Linux 5.8): with it, they are not needed (deploy/ grants only it).
  const hasSysAdmin = eff !== undefined && ((eff >> BigInt(CAPS.CAP_SYS_ADMIN)) & 1n) === 1n;
  const names: CapName[] = [...(hasSysAdmin ? [] : (["CAP_BPF", "CAP_PERFMON"] as const)), "CAP_SYS_ADMIN", "CAP_SYS_PTRACE"];
  return names.filter((c) => CAPS[c] <= last);
}

function effectiveCaps(h: HostView): bigint | undefined {
  const m = /^CapEff:\s*([0-9a-f]+)/m.exec(h.read("/proc/self/status") ?? "");
  return m ? BigInt(`0x${m[1]}`) : undefined;
}

export function checkPrivileges(h: HostView): CheckResult {
  const name = "privileges";
  const eff = effectiveCaps(h);
  const needed = neededCaps(h, eff);
  const missing = eff === undefined ? needed : needed.filter((c) => ((eff >> BigInt(CAPS[c])) & 1n) === 0n);
  const who = h.euid === 0 ? "root (uid 0)" : `uid ${h.euid}${h.userName(h.euid) ? ` (${h.userName(h.euid)})` : ""}`;
  if (h.euid === 0 && missing.length === 0) return { name, status: "ok", found: `${who} with ${needed.join(", ")}` };
  if (h.euid === 0) {
    return {
      name,
      status: "fail",
      found: `${who}, but without ${missing.join(", ")} (a container with reduced capabilities?)`,
      fix: `give the process those capabilities (e.g. docker run --privileged, or --cap-add ${missing.map((c) => c.replace(/^CAP_/, "")).join(" --cap-add ")})`,
    };
  }
  if (missing.length === 0) {
    return {
      name,
      status: "warn",
      found: `${who} with ${needed.join(", ")}: enough for the probes, but run, watch and snapshot insist on root`,
      fix: "run oomprof as root (sudo oomprof ...)",
    };
  }
  return {
    name,
    status: "fail",
    found: `${who}, not root, without ${missing.join(", ")}`,
    fix: "run oomprof as root (sudo oomprof ...): it loads eBPF programs, reads other processes' memory and creates memory cgroups",
  };
}

export interface BpftraceFinding {
  path?: string;
  version?: BpftraceVersion;
}

export function checkBpftrace(h: HostView): { result: CheckResult; found: BpftraceFinding } {
  const name = "bpftrace";
  const fromEnv = h.bpftraceOverride;
  const install =
    "install bpftrace 0.17 or newer (Debian/Ubuntu: apt-get install bpftrace; Fedora: dnf install bpftrace), or set OOMPROF_BPFTRACE=/path/to/bpftrace";
  const path = fromEnv ?? h.which("bpftrace");
  if (!path) return { result: { name, status: "fail", found: "not found on PATH", fix: install }, found: {} };
  if (!h.executable(path)) {
    return { result: { name, status: "fail", found: `${fromEnv ? "OOMPROF_BPFTRACE=" : ""}${path} is not an executable file`, fix: install }, found: {} };
  }
  const r = h.run([path, "--version"]);
  let version: BpftraceVersion;
  try {
    version = parseBpftraceVersion(r.stdout);
  } catch {
    const said = (r.stdout.trim() || r.stderr.trim()).split("\n")[0] ?? "";
    return {
      result: { name, status: "fail", found: `${path}: cannot tell its version from \`--version\`${said ? ` ("${said.slice(0, 80)}")` : ""}`, fix: install },
      found: { path },
    };
  }
  if (!versionAtLeast(version, MIN_BPFTRACE.major, MIN_BPFTRACE.minor)) {
    return {
      result: {
        name,
        status: "fail",
        found: `bpftrace ${version.text} at ${path} is too old (needs ${MIN_BPFTRACE.major}.${MIN_BPFTRACE.minor}+)`,
        fix: install,
      },
      found: { path, version },
    };
  }
  return { result: { name, status: "ok", found: `bpftrace ${version.text} at ${path}${fromEnv ? " (from OOMPROF_BPFTRACE)" : ""}` }, found: { path, version } };
}

/** Where tracefs' events are, if anywhere. */
function tracefsRoot(h: HostView): { root?: string; denied?: string } {
  let denied: string | undefined;
  for (const root of TRACEFS_ROOTS) {
    const s = h.stat(`${root}/events`);
    if (s === "present") return { root };
    if (s === "denied") denied ??= root;
  }
  return { denied };
}

/** sched_process_exit gained `group_dead` when it moved before exit_mm() (Linux 6.16). */
function exitKeepsMm(h: HostView, root: string | undefined): boolean {
  return root !== undefined && (h.read(`${root}/events/sched/sched_process_exit/format`) ?? "").includes("group_dead");
}

export function checkWalk(h: HostView, bt: BpftraceFinding): CheckResult {
  const name = "walk";
  if (!bt.version) return { name, status: "fail", found: "cannot be chosen without a working bpftrace", fix: "fix bpftrace first (above)" };
  const host = {
    path: bt.path ?? "bpftrace",
    version: bt.version,
    hasOomKillProcessKprobe: false,
    exitKeepsMm: exitKeepsMm(h, tracefsRoot(h).root),
    markVictimCounters: true,
  };
  // As generateScript does for one target.
  const walk = chooseWalk(bt.version);
  const points = walkAttachPoints(host, walk.name);
  return { name, status: "ok", found: `${walk.name}, ${points.map((p) => p.name).join(" and ")}` };
}

export function checkTracefs(h: HostView): CheckResult {
  const name = "tracefs";
  const { root, denied } = tracefsRoot(h);
  if (root) return { name, status: "ok", found: `events at ${root}/events` };
  if (denied) return { name, status: "fail", found: `${denied}: permission denied`, fix: "run oomprof as root (sudo oomprof ...)" };
  return { name, status: "fail", found: "not mounted (no /sys/kernel/tracing/events)", fix: "mount -t tracefs nodev /sys/kernel/tracing" };
}

const TRACEPOINTS = ["oom:mark_victim", "signal:signal_deliver", "sched:sched_process_exec", "sched:sched_process_exit", "sched:sched_process_free"];

export function checkTracepoints(h: HostView): CheckResult {
  const name = "tracepoints";
  const { root, denied } = tracefsRoot(h);
  if (!root) {
    return denied
      ? { name, status: "fail", found: `cannot look (${denied}: permission denied)`, fix: "run oomprof as root (sudo oomprof ...)" }
      : { name, status: "fail", found: "cannot look: tracefs is not mounted", fix: "mount -t tracefs nodev /sys/kernel/tracing" };
  }
  const missing = TRACEPOINTS.filter((tp) => h.stat(`${root}/events/${tp.replace(":", "/")}`) !== "present");
  if (missing.length) {
    return {
      name,
      status: "fail",
      found: `missing ${missing.join(", ")}`,
      fix: "use a kernel built with CONFIG_TRACEPOINTS and these events (every mainstream distribution kernel has them)",
    };
  }
  const format = h.read(`${root}/events/oom/mark_victim/format`);
  if (format !== undefined && !markVictimHasCounters(format)) {
    // Captures do not need the counters: the walk runs in the victim's own threads.
    return {
      name,
      status: "warn",
      found: `${TRACEPOINTS.join(", ")}; oom:mark_victim has only pid (a kernel before the 2024 change), so events carry no RSS at death`,
      fix: "nothing needed for profiles; a kernel with the extended oom:mark_victim (6.8+, or 6.1.y/6.6.y stable updates) adds the RSS counters",
    };
  }
  return { name, status: "ok", found: TRACEPOINTS.join(", ") };
}

export function checkUprobes(h: HostView): CheckResult {
  const name = "uprobes";
  const dev = "/sys/bus/event_source/devices/uprobe";
  if (h.stat(dev) === "present") return { name, status: "ok", found: dev };
  // The current probes read user memory with uptr() but attach no uprobe.
  return {
    name,
    status: "warn",
    found: `no ${dev} (kernel without CONFIG_UPROBE_EVENTS)`,
    fix: "use a kernel with CONFIG_UPROBE_EVENTS=y; oomprof's current probes attach none, so captures still work",
  };
}

export function checkKprobes(h: HostView, bt: BpftraceFinding): CheckResult {
  const name = "kprobes";
  const dev = "/sys/bus/event_source/devices/kprobe";
  let listed = false;
  if (bt.path && bt.version) {
    const r = h.run([bt.path, "-l", "kprobe:oom_kill_process"]);
    listed = r.ok && r.stdout.includes("kprobe:oom_kill_process");
  }
  if (listed) return { name, status: "ok", found: "kprobe:oom_kill_process is available" };
  if (h.stat(dev) === "present") return { name, status: "ok", found: `${dev} present` };
  return {
    name,
    status: "warn",
    found: "no kprobes (kprobe:oom_kill_process not listed, no kprobe device)",
    fix: "optional: with kprobes (CONFIG_KPROBES) oom_kill events also say whether the OOM was memcg or global",
  };
}

export function checkBtf(h: HostView): CheckResult {
  const name = "btf";
  const path = "/sys/kernel/btf/vmlinux";
  const s = h.stat(path);
  if (s === "present") return { name, status: "ok", found: path };
  if (s === "denied") return { name, status: "fail", found: `${path}: permission denied`, fix: "run oomprof as root (sudo oomprof ...)" };
  return {
    name,
    status: "fail",
    found: `no ${path}`,
    fix: "use a kernel built with CONFIG_DEBUG_INFO_BTF=y (the probes read curtask->mm through BTF; most distribution kernels since 2020 have it)",
  };
}

export function checkMemoryCgroup(h: HostView): CheckResult {
  const name = "memory cgroup";
  for (const root of ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"]) {
    const controllers = h.read(`${root}/cgroup.controllers`);
    if (controllers?.split(/\s+/).includes("memory")) return { name, status: "ok", found: `cgroup v2 memory controller at ${root}` };
  }
  if (h.stat("/sys/fs/cgroup/memory/memory.limit_in_bytes") === "present")
    return { name, status: "ok", found: "cgroup v1 memory controller at /sys/fs/cgroup/memory" };
  return {
    name,
    status: "warn",
    found: "no memory cgroup controller (v2 cgroup.controllers without memory, no v1 /sys/fs/cgroup/memory)",
    fix: "only `run --limit` needs it: enable the memory controller (boot with cgroup_enable=memory, or mount the v1 memory hierarchy)",
  };
}

/** Linux 5.11 charges BPF maps to the memory cgroup instead of RLIMIT_MEMLOCK. */
function kernelAtLeast(releaseText: string, major: number, minor: number): boolean {
  const m = /^(\d+)\.(\d+)/.exec(releaseText);
  if (!m) return false;
  const [a, b] = [Number(m[1]), Number(m[2])];
  return a > major || (a === major && b >= minor);
}

export function checkMemlock(h: HostView): CheckResult {
  const name = "memlock";
  const m = /^Max locked memory\s+(\S+)\s+(\S+)/m.exec(h.read("/proc/self/limits") ?? "");
  if (!m)
    return {
      name,
      status: "warn",
      found: "cannot read RLIMIT_MEMLOCK from /proc/self/limits",
      fix: "if bpftrace fails to create maps, raise it: ulimit -l unlimited",
    };
  const soft = m[1]!;
  const shown = soft === "unlimited" ? "unlimited" : `${Math.round(Number(soft) / 1024)} KiB`;
  if (soft === "unlimited") return { name, status: "ok", found: "RLIMIT_MEMLOCK unlimited" };
  if (kernelAtLeast(h.kernelRelease, 5, 11)) {
    return { name, status: "ok", found: `RLIMIT_MEMLOCK ${shown}; Linux ${h.kernelRelease.split("-")[0]} charges BPF memory to cgroups, so it does not apply` };
  }
  if (Number(soft) >= 64 * 1024 * 1024) return { name, status: "ok", found: `RLIMIT_MEMLOCK ${shown}` };
  return {
    name,
    status: "warn",
    found: `RLIMIT_MEMLOCK ${shown} on Linux ${h.kernelRelease.split("-")[0]} (before 5.11 BPF maps count against it)`,
    fix: "raise it if bpftrace cannot create its maps: ulimit -l unlimited (systemd: LimitMEMLOCK=infinity)",
  };
}

/** Every check, in the order doctor prints them. */
export function runChecks(h: HostView = realHost()): CheckResult[] {
  const bt = checkBpftrace(h);
  return [
    checkPrivileges(h),
    bt.result,
    checkWalk(h, bt.found),
    checkTracefs(h),
    checkTracepoints(h),
    checkUprobes(h),
    checkKprobes(h, bt.found),
    checkBtf(h),
    checkMemoryCgroup(h),
    checkMemlock(h),
  ];
}

export function hostReady(results: CheckResult[]): boolean {
  return results.every((r) => r.status !== "fail");
}
