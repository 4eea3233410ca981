import { rmSync, statSync, symlinkSync } from "node:fs";
import { join } from "node:path";
import type { GoTarget } from "../gobinary/go-target.ts";

/**
 * Uprobes name the binary by path, and a path is text a user controls; so each target
 * gets a symlink with a plain name (t<id>) in oomprof's private directory, to the file
 * itself: its path, or the descriptor oomprof holds. A target whose file cannot be
 * reached gets none (a uprobe that cannot attach would stop bpftrace). Returns the link
 * per target id.
 */
export function linkTargets(dir: string, table: ReadonlyArray<GoTarget | undefined>): Map<number, string> {
  const links = new Map<number, string>();
  table.forEach((t, id) => {
    if (!t) return;
    const link = join(dir, `t${id}`);
    try {
      // A container's binary (or one replaced on disk) is not at its path here: the
      // descriptor oomprof holds opens it from anywhere.
      const file = opensAs(t.path, t) ? t.path : t.heldPath();
      if (file === undefined || !opensAs(file, t)) return;
      rmSync(link, { force: true });
      symlinkSync(file, link);
      if (/^[A-Za-z0-9_/.-]+$/.test(link)) links.set(id, link);
    } catch {
      /* gone or replaced: no uprobes for it */
    }
  });
  return links;
}

/** The path opens this very file (a container's path may name another file here). */
function opensAs(path: string, t: GoTarget): boolean {
  try {
    const st = statSync(path);
    return st.ino === t.inode && st.dev === t.dev;
  } catch {
    return false;
  }
}
