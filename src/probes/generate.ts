import { VERSION } from "../version.ts";
import { BUCKET } from "../gobinary/bucket-layout.ts";
import type { GoTarget } from "../gobinary/go-target.ts";
import { MAX_PROCS_SUMMED } from "../gobinary/runtime-layout.ts";
import type { BpftraceHost } from "./bpftrace-host.ts";
import { allOf, comment, EMPTY_FRAGMENT, fieldPath, fill, goSymbol, joinFragments, notEqual, PROBES, uprobePath, type Fill, type TrustedFragment } from "./template.ts";
import { chooseWalk, walkAttachPoints, type WalkLimits, type WalkVariant } from "./walk-templates.ts";

export interface ScriptOptions {
  host: BpftraceHost;
  /**
   * Go binaries to walk when they are killed; a binary's index is its target id in the
   * records. Holes are binaries no longer watched (ids stay stable across relaunches).
   */
  targets: ReadonlyArray<GoTarget | undefined>;
  /** Include the OOM-killer probes (one session per oomprof has them; extra walk-only sessions do not). */
  victims?: boolean;
  /** Stop programs exec'd under this pid that are not in knownInodes, for `run`. */
  followExecs?: { rootPid: number; knownInodes: number[] };
  /** Report the first exec of every executable, for `watch`; "hold" also stops it until resumed. */
  notifyExecs?: boolean | "hold";
  limits?: Partial<WalkLimits>;
  /**
   * Per target id: a path to the binary made only of safe characters (a symlink in
   * oomprof's private directory), for uprobes. Targets without one get no uprobes.
   */
  uprobeLinks?: Map<number, string>;
  /** Add the attach canary for this oomprof pid and session nonce. */
  canary?: { pid: number; nonce: number };
}

export interface GeneratedScript {
  text: string;
  /** The script uses signal(), which bpftrace allows only with --unsafe. */
  unsafe: boolean;
  /** Which walk template was used. */
  walk: string;
}

export function generateScript(opts: ScriptOptions): GeneratedScript {
  const walk = chooseWalk(opts.host.version, opts.limits);
  const parts = [fill(PROBES.preamble, { OOMPROF_VERSION: comment(VERSION), BPFTRACE_VERSION: comment(opts.host.version.text), WALK_TEMPLATE: comment(walk.name) })];
  if (opts.victims ?? true) {
    parts.push(fill(PROBES.markVictim));
    if (opts.host.hasOomKillProcessKprobe) parts.push(fill(PROBES.oomKillProcessKprobe));
  }
  if (opts.followExecs) {
    parts.push(fill(PROBES.followExec, { ROOT_PID: opts.followExecs.rootPid, UNKNOWN_INODE_PREDICATE: unknownInode(opts.followExecs.knownInodes) }));
  }
  const targets = [...opts.targets.entries()].filter((e): e is [number, GoTarget] => e[1] !== undefined);
  if (opts.notifyExecs === "hold") parts.push(fill(PROBES.execHold, { UNKNOWN_INODE_PREDICATE: unknownInode(targets.map(([, t]) => t.inode)) }));
  else if (opts.notifyExecs) parts.push(fill(PROBES.execNotify));
  if (targets.length) parts.push(...walkParts(opts, targets, walk));
  if (opts.canary) parts.push(fill(PROBES.canary, { OOMPROF_PID: opts.canary.pid, NONCE: opts.canary.nonce }));
  const text = joinFragments(parts).text;
  // Every fill refuses a placeholder it has no value for; this is the last word on it.
  const left = text.indexOf("{{");
  if (left >= 0) throw new Error(`the generated script has an unfilled placeholder: ${JSON.stringify(text.slice(left, left + 40))}`);
  return { text, unsafe: opts.followExecs !== undefined || opts.notifyExecs === "hold", walk: walk.name };
}

/** The executable of the task the probe runs in, by inode. */
const EXE_INODE = fieldPath("curtask", "mm", "exe_file", "f_inode", "i_ino");

/** True when the current task's executable is none of `inodes`. */
function unknownInode(inodes: number[]) {
  return allOf(inodes.map((ino) => notEqual(EXE_INODE, ino)));
}

/** The bucket offsets the walks read with (src/gobinary/bucket-layout.ts). */
const BUCKET_VALUES = {
  BUCKET_ALLNEXT: BUCKET.allnext,
  BUCKET_SIZE: BUCKET.size,
  BUCKET_NSTK: BUCKET.nstk,
  BUCKET_STK: BUCKET.headerBytes,
} satisfies Record<string, Fill>;

/**
 * The walk: one table of target binaries, one walk probe per attach point whatever the
 * number of binaries, the goroutine count beside each, Go's runtime OOM throw per binary
 * (a uprobe names its binary), and the exit marker that forgets a walked process.
 */
function walkParts(opts: ScriptOptions, targets: Array<[id: number, target: GoTarget]>, walk: WalkVariant): TrustedFragment[] {
  const rows = targets.map(([id, t]) => fill(PROBES.targetRow, targetValues(t, id)));
  const parts = [fill(PROBES.targets, {}, { TARGET_ROWS: joinFragments(rows, PROBES.targetRow.origin) })];
  const counted = targets.some(([, t]) => t.goroutines);
  for (const attach of walkAttachPoints(opts.host, walk.name)) {
    const attachName = comment(attach.name);
    parts.push(fill(walk.template, { ...walk.values, ...BUCKET_VALUES, ATTACH_NAME: attachName }, { ATTACH: attach.template, WALK_START: PROBES.walkStart }));
    // Needs a release whose struct layout is known; the table says which binaries have one.
    if (counted) parts.push(fill(PROBES.goroutines, { ATTACH_NAME: attachName, MAX_PROCS: MAX_PROCS_SUMMED }, { ATTACH: attach.template }));
  }
  for (const [id, target] of targets) {
    const link = opts.uprobeLinks?.get(id);
    // Go's own out-of-memory throw: the message is read under the register ABI (amd64).
    if (link && target.throwSymbol && target.arch === "amd64") {
      parts.push(fill(PROBES.oomThrow, { TARGET_ID: id, TARGET_LINK: uprobePath(link), THROW_SYMBOL: goSymbol(target.throwSymbol) }));
    }
  }
  parts.push(fill(PROBES.exitMarker, {}, { GOROUTINES_CLEANUP: counted ? PROBES.goroutinesCleanup : EMPTY_FRAGMENT }));
  return parts;
}

/** One row of the target table: where this binary keeps what the walk reads (0: absent). */
function targetValues(t: GoTarget, id: number): Record<string, Fill> {
  const g = t.goroutines;
  return {
    TARGET_ID: id,
    INODE: t.inode,
    TEXT_VADDR: t.text.vaddr,
    MBUCKETS: t.vars.mbuckets,
    MEMPROFILERATE: t.vars.memProfileRate,
    // The heap-profile cycle decides which future[] slot runtime/pprof would fold in.
    CYCLE_ADDR: t.vars.cycle?.addr ?? 0,
    CYCLE_SHIFT: t.vars.cycle?.shifted ? 1 : 0,
    ALLGLEN: g?.allglen ?? 0,
    ALLP: g?.allp ?? 0,
    SCHED_GFREE_N: g ? g.sched + BigInt(g.schedGFreeN) : 0,
    SCHED_GFREE_N2: g?.schedGFreeN2 !== undefined ? g.sched + BigInt(g.schedGFreeN2) : 0,
    SCHED_NGSYS: g ? g.sched + BigInt(g.schedNgsys) : 0,
    P_GFREE_N: g?.pGFreeN ?? 0,
  };
}
