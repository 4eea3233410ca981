import { createMemoryCgroup, type MemoryCgroup } from "../../src/cgroup/memory-cgroup.ts";

/** A memory cgroup for a test, with a shell prefix that runs a command inside it. */
export function testCgroup(limitBytes: number): MemoryCgroup & { argv(cmd: string[]): string[] } {
  const cg = createMemoryCgroup(limitBytes);
  return { ...cg, argv: (cmd) => ["/bin/sh", "-c", 'echo $$ > "$0" && exec "$@"', cg.procsFile, ...cmd] };
}

/** A shell that grows its heap until the OOM killer takes it: a victim that is not Go. */
export const SHELL_HOG = ["/bin/sh", "-c", 'a=$(head -c 400000000 /dev/zero | tr "\\0" x); echo survived'];
