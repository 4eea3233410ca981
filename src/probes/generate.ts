import preamble from "../../probes/common/preamble.bt" with { type: "text" };
import exitMarker from "../../probes/common/exit.bt" with { type: "text" };
import oomThrow from "../../probes/runtime/oom-throw.bt" with { type: "text" };
import attachThrow from "../../probes/walk/attach/runtime-throw.bt" with { type: "text" };
import canary from "../../probes/common/canary.bt" with { type: "text" };
import goroutineCount from "../../probes/walk/goroutines.bt" with { type: "text" };
import execHold from "../../probes/common/exec-hold.bt" with { type: "text" };
import execNotify from "../../probes/common/exec-notify.bt" with { type: "text" };
import followExec from "../../probes/common/follow-exec.bt" with { type: "text" };
import markVictim from "../../probes/oom/mark-victim.bt" with { type: "text" };
import oomKillProcessKprobe from "../../probes/oom/kprobe-oom-kill-process.bt" with { type: "text" };
import { VERSION } from "../version.ts";
import type { GoTarget } from "../target/go-target.ts";
import { MAX_PROCS_SUMMED } from "../target/runtime-layout.ts";
import { versionAtLeast, type BpftraceHost } from "./bpftrace-host.ts";
import { chooseWalk, walkAttachPoints, type WalkLimits } from "./walk-templates.ts";

/** One value a template placeholder may take: numbers and fixed identifiers only. */
type Fill = number | bigint | string;

/**
 * Fills `{{NAME}}` placeholders. Values must be numbers, bigints, or strings made only
 * of characters that cannot change the meaning of the script, so no user-controlled
 * text (a path, a comm, an argument) can ever reach bpftrace's parser.
 */
export function fillTemplate(template: string, values: Record<string, Fill>): string {
  const out = template.replace(/\{\{([A-Z_]+)\}\}/g, (_, name: string) => {
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
  /** Go binaries to walk when they are killed; their index (plus firstTargetId) is the target id in records. */
  targets: GoTarget[];
  firstTargetId?: number;
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
  // 0.21 limits for-loops to one probe; there each target gets a single walk probe.
  const walk = chooseWalk(opts.host.version, opts.limits, opts.targets.length);
  const parts = [fillTemplate(preamble, { OOMPROF_VERSION: VERSION, BPFTRACE_VERSION: opts.host.version.text, WALK_TEMPLATE: walk.name })];
  if (opts.victims ?? true) {
    parts.push(markVictim);
    if (opts.host.hasOomKillProcessKprobe) parts.push(oomKillProcessKprobe);
  }
  const unknownInode = (inodes: number[]) => (inodes.length ? inodes.map((ino) => `curtask->mm->exe_file->f_inode->i_ino != ${ino}`).join(" && ") : "1");
  if (opts.followExecs) {
    parts.push(fillTemplate(followExec, { ROOT_PID: opts.followExecs.rootPid, UNKNOWN_INODE_PREDICATE: unknownInode(opts.followExecs.knownInodes) }));
  }
  if (opts.notifyExecs === "hold") parts.push(fillTemplate(execHold, { UNKNOWN_INODE_PREDICATE: unknownInode(opts.targets.map((t) => t.inode)) }));
  else if (opts.notifyExecs) parts.push(execNotify);
  const attachPoints = walkAttachPoints(opts.host, walk.name);
  opts.targets.forEach((target, i) => {
    const id = (opts.firstTargetId ?? 0) + i;
    const values = { ...walk.values, ...targetValues(target, id) };
    const points: Array<{ name: string; template: string; values?: Record<string, number> }> = [...attachPoints];
    const link = opts.uprobeLinks?.get(id);
    // Go's own out-of-memory throw: needs the register ABI on amd64, and a walk that may
    // live in more than one probe (0.21 allows for-loops in one probe only).
    const throwProbe = link && target.throwSymbol && target.arch === "amd64" && (walk.name === "while" || versionAtLeast(opts.host.version, 0, 22));
    if (throwProbe) {
      const uprobeValues = { TARGET_LINK: link, THROW_SYMBOL: target.throwSymbol! };
      parts.push(fillTemplate(oomThrow, { ...values, ...uprobeValues }));
      // The throwing thread starts the walk and the exiting threads carry it on, so this
      // copy can be smaller, which keeps arming fast where loops verify slowly (0.17).
      const lighter: Record<string, number> = walk.name === "while" ? { COUNTER_ITERATIONS: Math.ceil((walk.values.COUNTER_ITERATIONS ?? 0) / 4), STACK_ITERATIONS: Math.ceil((walk.values.STACK_ITERATIONS ?? 0) / 4) } : {};
      points.push({ name: "on the Go runtime fatal out-of-memory throw", template: fillTemplate(attachThrow, uprobeValues), values: lighter });
    }
    for (const attach of points) {
      const template = walk.template.replace("{{ATTACH}}", attach.template.trimEnd());
      parts.push(fillTemplate(template, { ...values, ...attach.values, ATTACH_NAME: attach.name }));
      // The goroutine count needs this release's struct layout; without it there is none.
      if (target.goroutines) parts.push(fillTemplate(goroutineCount.replace("{{ATTACH}}", attach.template.trimEnd()), { ...values, ATTACH_NAME: attach.name }));
    }
  });
  // The exit marker reads the walk's maps, which exist only when there is a walk.
  const counted = opts.targets.some((t) => t.goroutines);
  if (opts.targets.length) parts.push(exitMarker.replace("{{GOROUTINES_CLEANUP}}\n", counted ? "  delete(@goroutines_done[args->pid]);\n" : ""));
  if (opts.canary) parts.push(fillTemplate(canary, { OOMPROF_PID: opts.canary.pid, NONCE: opts.canary.nonce }));
  return { text: parts.join(""), unsafe: opts.followExecs !== undefined || opts.notifyExecs === "hold", walk: walk.name };
}

function targetValues(t: GoTarget, id: number): Record<string, Fill> {
  const cycle = t.vars.cycle;
  // The heap-profile cycle decides which future[] slot runtime/pprof would fold in.
  const cycleExpr = !cycle
    ? "-1"
    : cycle.shifted
      ? `(*(uint32 *)uptr(0x${cycle.addr.toString(16)} + $bias)) >> 1`
      : `*(uint32 *)uptr(0x${cycle.addr.toString(16)} + $bias)`;
  return {
    TARGET_ID: id,
    INODE: t.inode,
    TEXT_VADDR: t.text.vaddr,
    MBUCKETS: t.vars.mbuckets,
    MEMPROFILERATE: t.vars.memProfileRate,
    CYCLE_EXPR: cycleExpr,
    ...(t.goroutines && {
      ALLGLEN: t.goroutines.allglen,
      ALLP: t.goroutines.allp,
      SCHED: t.goroutines.sched,
      SCHED_GFREE_N: t.goroutines.schedGFreeN,
      SCHED_NGSYS: t.goroutines.schedNgsys,
      P_GFREE_N: t.goroutines.pGFreeN,
      MAX_PROCS: MAX_PROCS_SUMMED,
    }),
  };
}
