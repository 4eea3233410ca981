import { readdirSync, statSync } from "node:fs";

/** Every process on the host with the inode of its executable (kernel threads have none). */
export function scanProcesses(): Array<{ pid: number; inode: number }> {
  const out: Array<{ pid: number; inode: number }> = [];
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      out.push({ pid: Number(name), inode: statSync(`/proc/${name}/exe`).ino });
    } catch {
      /* exited, or a kernel thread */
    }
  }
  return out;
}
