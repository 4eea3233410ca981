import { readdirSync, readFileSync } from "node:fs";
import { z } from "zod";

/** PF_EXITING in /proc/PID/stat's flags: the task has started do_exit(). */
const PF_EXITING = 0x4;
const SIGKILL_BIT = 1n << 8n;

const Stat = z.object({
  state: z.string().length(1),
  ppid: z.number().int().nonnegative(),
  flags: z.number().int().nonnegative(),
  threads: z.number().int().nonnegative(),
});

export interface Liveness {
  /** The one-letter state from /proc/PID/stat (R, S, D, T...). */
  state: string;
  /** A SIGKILL is queued for it (it has not acted on it: blocked in the kernel, say). */
  killPending: boolean;
}

/** pid's state letter (zombies included: Z), or undefined when it is gone. */
export function processState(pid: number): string | undefined {
  return readStat(pid)?.state;
}

/** pid's state letter, or undefined when it is gone or a zombie (its resources already released). */
export function liveState(pid: number): string | undefined {
  const state = processState(pid);
  return state === "Z" || state === "X" ? undefined : state;
}

/**
 * pid lives and has not begun to exit: what it says of itself is still true. An exiting
 * task leaves its cgroups (cgroup v1: for the root) inside do_exit(), before it is a
 * zombie. PF_EXITING never clears, so asked after a read, true means the read was good.
 */
export function notExiting(pid: number): boolean {
  return beforeExit(readStat(pid));
}

/** A stat of a process that is neither gone, a zombie, nor past the start of do_exit(). */
function beforeExit(stat: z.infer<typeof Stat> | undefined): stat is z.infer<typeof Stat> {
  return stat !== undefined && stat.state !== "Z" && stat.state !== "X" && (stat.flags & PF_EXITING) === 0;
}

/** How many threads pid has (each takes its own SIGKILL: one walk firing apiece), or undefined when it is gone. */
export function threadCount(pid: number): number | undefined {
  return readStat(pid)?.threads;
}

/** Exists, zombies included (one syscall, no /proc read). */
export function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Continues a stopped process: done, gone, or refused (another user's, without CAP_KILL). */
export function resume(pid: number): "resumed" | "gone" | "denied" {
  try {
    process.kill(pid, "SIGCONT");
    return "resumed";
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM" ? "denied" : "gone";
  }
}

/**
 * Whether pid still runs: it exists, is not a zombie, and has not begun to exit.
 * Undefined once it is dying or gone. A process the OOM killer picked but that is
 * still running is one it did not (yet) manage to kill.
 */
export function stillRunning(pid: number): Liveness | undefined {
  const stat = readStat(pid);
  if (!beforeExit(stat)) return undefined;
  try {
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    const pending = (name: string) => {
      const m = new RegExp(`^${name}:\\s*([0-9a-f]+)$`, "m").exec(status);
      return m ? BigInt(`0x${m[1]}`) : 0n;
    };
    return { state: stat.state, killPending: ((pending("SigPnd") | pending("ShdPnd")) & SIGKILL_BIT) !== 0n };
  } catch {
    return undefined;
  }
}

function readStat(pid: number): z.infer<typeof Stat> | undefined {
  try {
    const raw = readFileSync(`/proc/${pid}/stat`, "utf8");
    // Fields after the comm, which may itself contain spaces and parentheses.
    const f = raw.slice(raw.lastIndexOf(")") + 2).split(" ");
    return Stat.parse({ state: f[0], ppid: Number(f[1]), flags: Number(f[6]), threads: Number(f[17]) });
  } catch {
    return undefined;
  }
}

/**
 * Continues every stopped process in rootPid's tree (rootPid included). Programs are
 * stopped at exec until oomprof has read them; if bpftrace dies with such a stop
 * unreported, nothing else would ever continue them.
 */
export function continueStoppedTree(rootPid: number): number[] {
  const children = new Map<number, number[]>();
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    const stat = readStat(Number(name));
    if (stat && stat.state !== "Z" && stat.state !== "X") children.set(stat.ppid, [...(children.get(stat.ppid) ?? []), Number(name)]);
  }
  const continued: number[] = [];
  for (const queue = [rootPid]; queue.length;) {
    const pid = queue.shift()!;
    queue.push(...(children.get(pid) ?? []));
    if (processState(pid) === "T" && resume(pid) === "resumed") continued.push(pid);
  }
  return continued;
}
