import { existsSync } from "node:fs";
import { markVictimHasCounters, readTracepointFormat } from "../host/tracepoint-format.ts";
import { z } from "zod";
import { config } from "../config.ts";
import { UserError } from "../errors.ts";
import { hostVictimContext, type VictimContextLayout } from "../host/victim-context.ts";

/** What this host's bpftrace is and which attach points it offers. */
export interface BpftraceHost {
  path: string;
  version: BpftraceVersion;
  /** kprobe:oom_kill_process is listed (kernels built with CONFIG_KPROBES). */
  hasOomKillProcessKprobe: boolean;
  /** sched_process_exit fires while the exiting thread still has its mm (Linux 6.16+). */
  exitKeepsMm: boolean;
  /** oom:mark_victim has comm and the RSS counters; else it has only pid (kernels before the 2024 change). */
  markVictimCounters: boolean;
  /** Where the OOM probe reads the victim's memory cgroup and namespaced pid; undefined without BTF. */
  victimContext?: VictimContextLayout;
}

export interface BpftraceVersion {
  major: number;
  minor: number;
  patch: number;
  text: string;
}

export const MIN_BPFTRACE = { major: 0, minor: 17 };

const VersionOutput = z.string().regex(/^bpftrace v?\d+\.\d+\.\d+/m, "unrecognised `bpftrace --version` output");

export function parseBpftraceVersion(output: string): BpftraceVersion {
  const text = VersionOutput.parse(output.trim());
  const m = /v?(\d+)\.(\d+)\.(\d+)/.exec(text)!;
  return { major: Number(m[1]), minor: Number(m[2]), patch: Number(m[3]), text: `${m[1]}.${m[2]}.${m[3]}` };
}

export function versionAtLeast(v: BpftraceVersion, major: number, minor: number): boolean {
  return v.major > major || (v.major === major && v.minor >= minor);
}

export function findBpftrace(): string {
  const fromEnv = config().bpftrace;
  const path = fromEnv ? (existsSync(fromEnv) ? fromEnv : undefined) : Bun.which("bpftrace");
  if (!path) {
    throw new UserError("bpftrace not found on PATH: install it (Debian/Ubuntu: apt-get install bpftrace; Fedora: dnf install bpftrace) or set OOMPROF_BPFTRACE", 1);
  }
  return path;
}

/** bpftrace attaches tracepoints through tracefs: mount it if the host has not. */
export function ensureTracefs(): void {
  if (existsSync("/sys/kernel/tracing/events") || existsSync("/sys/kernel/debug/tracing/events")) return;
  const r = Bun.spawnSync(["mount", "-t", "tracefs", "nodev", "/sys/kernel/tracing"], { stderr: "pipe" });
  if (r.exitCode !== 0 || !existsSync("/sys/kernel/tracing/events")) {
    throw new UserError("tracefs is not mounted and could not be mounted: run `mount -t tracefs nodev /sys/kernel/tracing` as root");
  }
}

export async function detectBpftrace(): Promise<BpftraceHost> {
  const path = findBpftrace();
  ensureTracefs();
  const run = (args: string[]) => {
    const r = Bun.spawnSync([path, ...args], { stdout: "pipe", stderr: "pipe" });
    return { ok: r.exitCode === 0, out: r.stdout.toString() };
  };
  const v = run(["--version"]);
  let version: BpftraceVersion;
  try {
    version = parseBpftraceVersion(v.out);
  } catch {
    throw new UserError(`${path}: cannot tell its version from \`bpftrace --version\``);
  }
  if (!versionAtLeast(version, MIN_BPFTRACE.major, MIN_BPFTRACE.minor)) {
    throw new UserError(`bpftrace ${version.text} is too old: oomprof needs ${MIN_BPFTRACE.major}.${MIN_BPFTRACE.minor} or newer`);
  }
  const listed = run(["-l", "kprobe:oom_kill_process"]);
  return {
    path,
    version,
    hasOomKillProcessKprobe: listed.ok && listed.out.includes("kprobe:oom_kill_process"),
    exitKeepsMm: exitTracepointKeepsMm(),
    markVictimCounters: markVictimCounters(),
    victimContext: hostVictimContext(),
  };
}

/** The sched_process_exit tracepoint gained `group_dead` when it moved before exit_mm(). */
function exitTracepointKeepsMm(): boolean {
  return readTracepointFormat("sched/sched_process_exit")?.includes("group_dead") ?? false;
}

/** oom:mark_victim carries comm and the RSS counters (kernels since the 2024 change), unless OOMPROF_MARK_VICTIM=pid-only says to act as if not. */
function markVictimCounters(): boolean {
  if (config().markVictim === "pid-only") return false;
  const format = readTracepointFormat("oom/mark_victim");
  return format === undefined || markVictimHasCounters(format);
}
