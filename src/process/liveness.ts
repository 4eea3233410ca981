import { readdirSync, readFileSync } from "node:fs";
import { z } from "zod";

/** PF_EXITING in /proc/PID/stat's flags: the task has started do_exit(). */
const PF_EXITING = 0x4;
const SIGKILL_BIT = 1n << 8n;

const Stat = z.object({ state: z.string().length(1), ppid: z.number().int().nonnegative(), flags: z.number().int().nonnegative() });

export interface Liveness {
  /** The one-letter state from /proc/PID/stat (R, S, D, T...). */
  state: string;
  /** A SIGKILL is queued for it (it has not acted on it: blocked in the kernel, say). */
  killPending: boolean;
}

/** pid's state letter, or undefined when it is gone or a zombie (its resources already released). */
export function liveState(pid: number): string | undefined {
  return readStat(pid)?.state;
}

/**
 * Whether pid still runs: it exists, is not a zombie, and has not begun to exit.
 * Undefined once it is dying or gone. A process the OOM killer picked but that is
 * still running is one it did not (yet) manage to kill.
 */
export function stillRunning(pid: number): Liveness | undefined {
  const stat = readStat(pid);
  if (!stat || (stat.flags & PF_EXITING) !== 0) return undefined;
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
    const stat = Stat.parse({ state: f[0], ppid: Number(f[1]), flags: Number(f[6]) });
    return stat.state === "Z" || stat.state === "X" ? undefined : stat;
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
    if (stat) children.set(stat.ppid, [...(children.get(stat.ppid) ?? []), Number(name)]);
  }
  const continued: number[] = [];
  for (const queue = [rootPid]; queue.length; ) {
    const pid = queue.shift()!;
    queue.push(...(children.get(pid) ?? []));
    if (readStat(pid)?.state !== "T") continue;
    try {
      process.kill(pid, "SIGCONT");
      continued.push(pid);
    } catch {
      /* gone meanwhile */
    }
  }
  return continued;
}
