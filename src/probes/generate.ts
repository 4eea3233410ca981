import preamble from "../../probes/common/preamble.bt" with { type: "text" };
import exitMarker from "../../probes/common/exit.bt" with { type: "text" };
import oomThrow from "../../probes/runtime/oom-throw.bt" with { type: "text" };
import canary from "../../probes/common/canary.bt" with { type: "text" };
import goroutineCount from "../../probes/walk/goroutines.bt" with { type: "text" };
import targetRow from "../../probes/walk/target-row.bt" with { type: "text" };
import targetTable from "../../probes/walk/targets.bt" with { type: "text" };
import walkStart from "../../probes/walk/start.bt" with { type: "text" };
import execHold from "../../probes/common/exec-hold.bt" with { type: "text" };
import execNotify from "../../probes/common/exec-notify.bt" with { type: "text" };
import followExec from "../../probes/common/follow-exec.bt" with { type: "text" };
import markVictim from "../../probes/oom/mark-victim.bt" with { type: "text" };
import oomKillProcessKprobe from "../../probes/oom/kprobe-oom-kill-process.bt" with { type: "text" };
import { VERSION } from "../version.ts";
import type { GoTarget } from "../gobinary/go-target.ts";
import { MAX_PROCS_SUMMED } from "../gobinary/runtime-layout.ts";
import { versionAtLeast, type BpftraceHost } from "./bpftrace-host.ts";
import { chooseWalk, walkAttachPoints, type WalkLimits, type WalkVariant } from "./walk-templates.ts";

/** One value a template placeholder may take: numbers and fixed identifiers only. */
type Fill = number | bigint | string;

/**
 * Fills `{{NAME}}` placeholders. Values must be numbers, bigints, or strings made only
 * of characters that cannot change the meaning of the script, so no user-controlled
 * text (a path, a comm, an argument) can ever reach bpftrace's parser.
 */
export function fillTemplate(template: string, values: Record<string, Fill>): string {
  const out = template.replace(/\{\{([A-Z][A-Z0-9_]*)\}\}/g, (_, name: string) => {
    const v = values[name];
    if (v === undefined) throw new Error(`probe template placeholder {{${name}}} has no value`);
    if (typeof v === "bigint") return `0x${v.toString(16)}`;
    if (typeof v === "number") {
      if (!Number.isSafeInteger(v)) throw new Error(`probe template value for ${name} is not an integer`);
      return String(v);
    }
    // Operators are allowed (the generator builds expressions from numbers); quotes,
    // braces, semicolons and newlines are not.
    if (!/^[A-Za-z0-9_.() *>$+\-!=&|</]*$/.test(v) || v.includes("//")) throw new Error(`probe template value for ${name} has unsafe characters`);
    return v;
  });
  return out;
}

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
  const parts = [fillTemplate(preamble, { OOMPROF_VERSION: VERSION, BPFTRACE_VERSION: opts.host.version.text, WALK_TEMPLATE: walk.name })];
  if (opts.victims ?? true) {
    parts.push(markVictim);
    if (opts.host.hasOomKillProcessKprobe) parts.push(oomKillProcessKprobe);
  }
  const unknownInode = (inodes: number[]) => (inodes.length ? inodes.map((ino) => `curtask->mm->exe_file->f_inode->i_ino != ${ino}`).join(" && ") : "1");
  if (opts.followExecs) {
    parts.push(fillTemplate(followExec, { ROOT_PID: opts.followExecs.rootPid, UNKNOWN_INODE_PREDICATE: unknownInode(opts.followExecs.knownInodes) }));
  }
  const targets = [...opts.targets.entries()].filter((e): e is [number, GoTarget] => e[1] !== undefined);
  if (opts.notifyExecs === "hold") parts.push(fillTemplate(execHold, { UNKNOWN_INODE_PREDICATE: unknownInode(targets.map(([, t]) => t.inode)) }));
  else if (opts.notifyExecs) parts.push(execNotify);
  if (targets.length) parts.push(...walkParts(opts, targets, walk));
  if (opts.canary) parts.push(fillTemplate(canary, { OOMPROF_PID: opts.canary.pid, NONCE: opts.canary.nonce }));
  return { text: parts.join(""), unsafe: opts.followExecs !== undefined || opts.notifyExecs === "hold", walk: walk.name };
}

/**
 * The walk: one table of target binaries, one walk probe per attach point whatever the
 * number of binaries, the goroutine count beside each, Go's runtime OOM throw per binary
 * (a uprobe names its binary), and the exit marker that forgets a walked process.
 */
function walkParts(opts: ScriptOptions, targets: Array<[id: number, target: GoTarget]>, walk: WalkVariant): string[] {
  const rows = targets.map(([id, t]) => fillTemplate(targetRow, targetValues(t, id))).join("");
  const parts = [targetTable.replace("{{TARGET_ROWS}}\n", rows)];
  const counted = targets.some(([, t]) => t.goroutines);
  for (const attach of walkAttachPoints(opts.host, walk.name)) {
    const header = attach.template.trimEnd();
    const template = walk.template.replace("{{ATTACH}}", header).replace("{{WALK_START}}\n", walkStart);
    parts.push(fillTemplate(template, { ...walk.values, ATTACH_NAME: attach.name }));
    // Needs a release whose struct layout is known; the table says which binaries have one.
    if (counted) parts.push(fillTemplate(goroutineCount.replace("{{ATTACH}}", header), { ATTACH_NAME: attach.name, MAX_PROCS: MAX_PROCS_SUMMED }));
  }
  for (const [id, target] of targets) {
    const link = opts.uprobeLinks?.get(id);
    // Go's own out-of-memory throw: the message is read under the register ABI (amd64).
    if (link && target.throwSymbol && target.arch === "amd64") parts.push(fillTemplate(oomThrow, { TARGET_ID: id, TARGET_LINK: link, THROW_SYMBOL: target.throwSymbol }));
  }
  parts.push(exitMarker.replace("{{GOROUTINES_CLEANUP}}\n", counted ? "  delete(@goroutines_done[args->pid]);\n" : ""));
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
