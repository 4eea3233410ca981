import { rmSync, statSync, symlinkSync } from "node:fs";
import { join } from "node:path";
import type { GoTarget } from "../gobinary/go-target.ts";

/**
 * Uprobes name the binary by path, and a path is text a user controls; so each target
 * gets a symlink with a plain name (t<id>) in oomprof's private directory. Only binaries
 * still on disk as the same file get one (a uprobe that cannot attach would stop
 * bpftrace). Returns the link per target id.
 */
export function linkTargets(dir: string, table: ReadonlyArray<GoTarget | undefined>): Map<number, string> {
  const links = new Map<number, string>();
  table.forEach((t, id) => {
    if (!t) return;
    const link = join(dir, `t${id}`);
    try {
      if (statSync(t.path).ino !== t.inode) return;
      rmSync(link, { force: true });
      symlinkSync(t.path, link);
      if (/^[A-Za-z0-9_/.-]+$/.test(link)) links.set(id, link);
    } catch {
      /* gone or replaced: no uprobes for it */
    }
  });
  return links;
}
