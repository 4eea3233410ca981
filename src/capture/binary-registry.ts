import { readlinkSync, statSync } from "node:fs";
import { config } from "../config.ts";
import { BadBinaryError } from "../errors.ts";
import { discoverGoTarget, type GoTarget } from "../gobinary/go-target.ts";

/** What oomprof knows about a program seen exec'd, for the kill report. */
export interface ExecInfo {
  path: string;
  target?: GoTarget;
  why?: string;
}

let collecting: ReturnType<typeof setTimeout> | undefined;
/**
 * The binary was mapped (or, without mmap, read whole): let a long-running watch give
 * the mapping (unmapped when its buffer is collected, see mapFile) or the copy back soon
 * rather than whenever the collector next runs. Not at once: a full collection took
 * 15-80 ms with read binaries, and the caller is about to make the binary's walk live.
 */
function collectSoon(): void {
  collecting ??= setTimeout(() => {
    collecting = undefined;
    Bun.gc(true);
  }, 50);
}

/** Non-Go executables remembered so each is read once; bounded so churn cannot grow it. */
const MAX_NON_GO_REMEMBERED = 4096;

/**
 * The Go binaries one oomprof command walks, by target id (the id the probes print), and
 * the executables it has read and found not to be Go. Ids are never reused: a pruned
 * binary leaves a hole, so ids in records from an older bpftrace stay valid.
 */
export class BinaryRegistry {
  private byId: Array<GoTarget | undefined> = [];
  /**
   * Go binaries read but not walked (watch: profiling off), by inode, with their
   * descriptors closed: what a kill report says of one whose process is already gone.
   */
  private unwalked = new Map<number, { target: GoTarget; stamp: string }>();
  /** Reads under way, by inode and stamp. */
  private reading = new Map<string, Promise<ExecInfo>>();
  /** When each target's walk went live (monotonic ms), for reasons that say how late. */
  private liveAt = new Map<GoTarget, number>();
  /** When each target last had a live process (watch prunes those without). */
  private lastLive = new Map<GoTarget, number>();
  /** Non-Go executables by inode, with the size and mtime that tell a reused inode apart. */
  private nonGo = new Map<number, { why: string; stamp: string }>();

  /** @param walkable whether a Go binary gets a walk (watch cannot walk one without profiling). */
  constructor(private walkable: (t: GoTarget) => boolean) {}

  /** The binaries walked now. */
  get targets(): GoTarget[] {
    return this.byId.filter((t): t is GoTarget => t !== undefined);
  }

  /** The target table by id, holes included, as the script generator numbers it. */
  get table(): ReadonlyArray<GoTarget | undefined> {
    return this.byId;
  }

  byIdOf(id: number): GoTarget | undefined {
    return this.byId[id];
  }

  /** Notes that these targets are walked from now on. */
  markLive(targets: GoTarget[], atMs: number | undefined): void {
    if (atMs !== undefined) for (const t of targets) if (!this.liveAt.has(t)) this.liveAt.set(t, atMs);
  }

  /** When a target's walk went live (monotonic ms), if it has. */
  liveAtMs(t: GoTarget): number | undefined {
    return this.liveAt.get(t);
  }

  /** A target's id (its index in the table); -1 if it is not in it. */
  idOf(t: GoTarget): number {
    return this.byId.indexOf(t);
  }

  byInode(inode: number): GoTarget | undefined {
    return this.byId.find((t) => t?.inode === inode);
  }

  /** An executable read before and found not to be a Go program oomprof walks. */
  knownNonGo(inode: number): boolean {
    return this.nonGo.has(inode) || this.unwalked.has(inode);
  }

  /** oomprof is reading the executable with this inode now: what describe() says is coming. */
  isReading(inode: number): boolean {
    for (const key of this.reading.keys()) if (key.startsWith(`${inode}:`)) return true;
    return false;
  }

  /** What reading the executable with this inode said, if oomprof has read it. */
  describe(inode: number): (Omit<ExecInfo, "path"> & { path?: string }) | undefined {
    const target = this.byInode(inode) ?? this.unwalked.get(inode)?.target;
    if (target) return { path: target.path, target };
    const nonGo = this.nonGo.get(inode);
    return nonGo && { why: nonGo.why };
  }

  /** Adds the walkable binaries not known yet; returns them (an empty list: nothing to relaunch for). */
  add(found: GoTarget[]): GoTarget[] {
    const fresh: GoTarget[] = [];
    for (const t of found) {
      if (!this.walkable(t)) continue;
      const known = this.byInode(t.inode) ?? fresh.find((f) => f.inode === t.inode);
      if (known) {
        // Read twice (two bpftraces overlapping in a relaunch both report an exec): the
        // second copy's descriptor would pin the file, a deleted one's blocks included.
        if (known !== t) t.release();
        continue;
      }
      fresh.push(t);
    }
    this.byId.push(...fresh);
    return fresh;
  }

  /**
   * Drops binaries that have had no process for pruneAfterMs, so a host that builds and
   * runs Go binaries all day (CI) does not grow the table. Returns the dropped ones; the
   * caller releases them once no bpftrace has their rows.
   */
  prune(liveInodes: Set<number>, pruneAfterMs: number, now = performance.now()): GoTarget[] {
    const gone: GoTarget[] = [];
    this.byId.forEach((t, id) => {
      if (!t) return;
      if (liveInodes.has(t.inode) || !this.lastLive.has(t)) this.lastLive.set(t, now);
      else if (now - this.lastLive.get(t)! > pruneAfterMs) {
        gone.push(t);
        this.byId[id] = undefined;
        this.lastLive.delete(t);
        this.liveAt.delete(t);
      }
    });
    return gone;
  }

  /** Reads a process's executable; a Go target, or why not. */
  async inspect(pid: number, inode: number): Promise<ExecInfo> {
    let path = `/proc/${pid}/exe`;
    try {
      path = readlinkSync(path).replace(/ \(deleted\)$/, "");
    } catch {
      /* already gone */
    }
    const known = this.byInode(inode);
    if (known) return { path, target: known };
    let st;
    try {
      st = statSync(`/proc/${pid}/exe`);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === "EACCES" || code === "EPERM") return { path, why: "its /proc/PID/exe cannot be read: permission denied (oomprof needs CAP_SYS_PTRACE)" };
      return { path, why: "exited before it could be read" };
    }
    if (st.ino !== inode) return { path, why: EXECD_AGAIN };
    // A target's inode cannot be reused while oomprof holds its descriptor, but a non-Go
    // executable's can once it is deleted: size and mtime tell a new file apart (CI hosts
    // build and delete binaries all day, and a new Go binary may get an old number).
    const stamp = `${st.size}:${st.mtimeMs}`;
    const remembered = this.nonGo.get(inode);
    if (remembered?.stamp === stamp) return { path, why: remembered.why };
    const unwalked = this.unwalked.get(inode);
    if (unwalked?.stamp === stamp) return { path, target: unwalked.target };
    // One read per file at a time: callers asking meanwhile share it.
    const key = `${inode}:${stamp}`;
    let reading = this.reading.get(key);
    if (!reading) {
      reading = this.read(pid, inode, path, stamp).finally(() => this.reading.delete(key));
      this.reading.set(key, reading);
    }
    const info = await reading;
    return { ...info, path };
  }

  private async read(pid: number, inode: number, path: string, stamp: string): Promise<ExecInfo> {
    try {
      // Read through /proc so a binary replaced or deleted on disk is still the one that runs.
      const target = await discoverGoTarget(`/proc/${pid}/exe`);
      const delay = config().newBinaryDelayMs;
      if (delay) await Bun.sleep(delay);
      // It may have exec'd between the check and the open (a shell that execs the Go
      // program it started: the test suite once got a target named /usr/bin/dash).
      if (target.inode !== inode) {
        target.release();
        return { path, why: EXECD_AGAIN };
      }
      target.path = path;
      if (!this.walkable(target)) {
        // Never walked, so never symbolized: its descriptor is not kept.
        target.release();
        if (this.unwalked.size >= MAX_NON_GO_REMEMBERED) this.unwalked.clear();
        this.unwalked.set(inode, { target, stamp });
      }
      return { path, target };
    } catch (e) {
      // What failed to read may be what it exec'd next, or nothing (it exited): neither
      // is remembered against this inode.
      const now = exeInode(pid);
      if (now !== inode) return { path, why: now === undefined ? "exited before it could be read" : EXECD_AGAIN };
      const why = e instanceof BadBinaryError ? e.message.replace(`/proc/${pid}/exe: `, "") : (e as Error).message;
      if (this.nonGo.size >= MAX_NON_GO_REMEMBERED) this.nonGo.clear();
      this.nonGo.set(inode, { why, stamp });
      return { path, why };
    } finally {
      collectSoon();
    }
  }
}

const EXECD_AGAIN = "exec'd again before it could be read";

/** The inode of the executable pid runs, or undefined when it is gone. */
function exeInode(pid: number): number | undefined {
  try {
    return statSync(`/proc/${pid}/exe`).ino;
  } catch {
    return undefined;
  }
}
