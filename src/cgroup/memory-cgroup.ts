import { notExiting } from "../process/liveness.ts";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { UserError } from "../errors.ts";

/**
 * A fresh memory cgroup for `run --limit`. Uses cgroup v2 (memory.max) where the
 * memory controller is enabled on the unified hierarchy, else cgroup v1
 * (memory.limit_in_bytes).
 */
export interface MemoryCgroup {
  version: 1 | 2;
  /** Its directory. */
  path: string;
  /** Its path within the hierarchy, as /proc/PID/cgroup and oomprof's events show it ("/oomprof-..."). */
  name: string;
  limitBytes: number;
  /** The file a pid is written to, to move that process into the cgroup. */
  procsFile: string;
  remove(): void;
}

const V2_ROOTS = ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"];
const V1_ROOT = "/sys/fs/cgroup/memory";

function v2RootWithMemory(): string | undefined {
  for (const root of V2_ROOTS) {
    try {
      const controllers = readFileSync(join(root, "cgroup.controllers"), "utf8").split(/\s+/);
      if (controllers.includes("memory")) return root;
    } catch {
      /* not a v2 root */
    }
  }
  return undefined;
}

/**
 * An oomprof that was SIGKILLed could not remove its cgroup: remove empty ones whose
 * oomprof is gone (rmdir refuses a cgroup that still has tasks).
 */
function removeStaleCgroups(root: string): void {
  try {
    for (const name of readdirSync(root)) {
      const m = /^oomprof-(\d+)-[a-z0-9]+$/.exec(name);
      if (!m || existsSync(`/proc/${m[1]}`)) continue;
      try {
        rmdirSync(join(root, name));
      } catch {
        /* still has tasks, or not ours to remove */
      }
    }
  } catch {
    /* unreadable root: nothing to tidy */
  }
}

export function createMemoryCgroup(limitBytes: number): MemoryCgroup {
  const name = `oomprof-${process.pid}-${Date.now().toString(36)}`;
  const v2 = v2RootWithMemory();
  removeStaleCgroups(v2 ?? V1_ROOT);
  try {
    if (v2) {
      // The memory controller must be delegated to children of the root for memory.max to exist.
      try {
        writeFileSync(join(v2, "cgroup.subtree_control"), "+memory");
      } catch {
        /* already enabled, or not ours to change: memory.max tells */
      }
      const path = join(v2, name);
      mkdirSync(path);
      writeFileSync(join(path, "memory.max"), String(limitBytes));
      // No swap: the limit must produce an OOM kill, not swapping.
      if (existsSync(join(path, "memory.swap.max"))) writeFileSync(join(path, "memory.swap.max"), "0");
      return handle(2, path, limitBytes, v2);
    }
    if (existsSync(join(V1_ROOT, "memory.limit_in_bytes"))) {
      const path = join(V1_ROOT, name);
      mkdirSync(path);
      writeFileSync(join(path, "memory.limit_in_bytes"), String(limitBytes));
      if (existsSync(join(path, "memory.memsw.limit_in_bytes"))) {
        try {
          writeFileSync(join(path, "memory.memsw.limit_in_bytes"), String(limitBytes));
        } catch {
          /* swap accounting off */
        }
      }
      return handle(1, path, limitBytes, V1_ROOT);
    }
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const hint = code === "EACCES" || code === "EPERM" || code === "EROFS" ? " (run as root)" : "";
    throw new UserError(`cannot create a memory cgroup for --limit: ${code ?? (e as Error).message}${hint}`);
  }
  throw new UserError("--limit needs a memory cgroup controller (cgroup v2 memory.max or v1 memory.limit_in_bytes), and this host has neither");
}

function handle(version: 1 | 2, path: string, limitBytes: number, root: string): MemoryCgroup {
  return {
    version,
    path,
    name: path.slice(root.length),
    limitBytes,
    procsFile: join(path, "cgroup.procs"),
    remove() {
      // A cgroup can only be removed once its last task is gone; zombies linger briefly.
      for (let i = 0; i < 50; i++) {
        try {
          rmdirSync(path);
          return;
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code === "ENOENT") return;
          Bun.sleepSync(20);
        }
      }
    },
  };
}

/** The directory of a cgroup named as /proc/PID/cgroup names it, on whichever hierarchy has the memory controller. */
export function memoryCgroupDir(name: string): string {
  return join(v2RootWithMemory() ?? V1_ROOT, name);
}

/** The cgroup a process is in, as /proc/PID/cgroup lists it (the memory hierarchy's line, else v2's). */
export function processCgroup(pid: number): string | undefined {
  try {
    const lines = readFileSync(`/proc/${pid}/cgroup`, "utf8").trim().split("\n");
    const mem = lines.find((l) => /^\d+:[^:]*\bmemory\b[^:]*:/.test(l));
    const unified = lines.find((l) => l.startsWith("0::"));
    const line = mem ?? unified;
    const path = line?.slice(line.indexOf(":", line.indexOf(":") + 1) + 1);
    // A dying task is moved to the root cgroup inside do_exit() (cgroup v1), before it is
    // a zombie: "/" from it says nothing, any other path was read before the move. Asked
    // after the read (PF_EXITING never clears). Reports within milliseconds of a kill
    // land there: mark-victim-pid-only once saw "/" for run's victim in /oomprof-N.
    return path === "/" && !notExiting(pid) ? undefined : path;
  } catch {
    return undefined;
  }
}
