import { VERSION } from "../version.ts";
import { BUCKET } from "../gobinary/bucket-layout.ts";
import type { GoTarget } from "../gobinary/go-target.ts";
import { MAX_PROCS_SUMMED } from "../gobinary/runtime-layout.ts";
import type { BpftraceHost } from "./bpftrace-host.ts";
import { targetRows } from "./target-table.ts";
import { comment, EMPTY_FRAGMENT, fill, goSymbol, ident, joinFragments, PROBES, uprobePath, type TrustedFragment } from "./template.ts";
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
  /**
   * The target table gains rows while bpftrace runs (capture/target-rows.ts): the walk and
   * the goroutine count are there even before the first Go binary, and exec predicates
   * read the table instead of a list of inodes fixed at generation.
   */
  growingTable?: boolean;
  /** Stop programs exec'd under this pid that are not walked yet, or whose profiling is off, for `run`. */
  followExecs?: { rootPid: number };
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
  /** The walk puts counters in a map (counter-map.bt) that oomprof takes at each B line. */
  counterMap: boolean;
}

export function generateScript(opts: ScriptOptions): GeneratedScript {
  const walk = chooseWalk(opts.host.version, opts.limits);
  const parts = [fill(PROBES.preamble, { OOMPROF_VERSION: comment(VERSION), BPFTRACE_VERSION: comment(opts.host.version.text), WALK_TEMPLATE: comment(walk.name) })];
  if (opts.victims ?? true) {
    parts.push(opts.host.markVictimCounters ? PROBES.markVictim : PROBES.markVictimPidOnly);
    parts.push(fill(PROBES.victimSigkill, {}, { VICTIM_CONTEXT: victimContextFragment(opts.host) }));
    if (opts.host.hasOomKillProcessKprobe) parts.push(fill(PROBES.oomKillProcessKprobe));
  }
  if (opts.followExecs) {
    parts.push(fill(PROBES.followExec, { ROOT_PID: opts.followExecs.rootPid }));
  }
  const targets = [...opts.targets.entries()].filter((e): e is [number, GoTarget] => e[1] !== undefined);
  if (opts.notifyExecs === "hold") parts.push(fill(PROBES.execHold));
  else if (opts.notifyExecs) parts.push(fill(PROBES.execNotify));
  // Exec predicates read the table too.
  const walked = targets.length > 0 || opts.growingTable || opts.followExecs !== undefined || opts.notifyExecs === "hold";
  const counterMap = walked && walk.counterMap !== undefined;
  if (walked) {
    // A map's declaration comes before every probe.
    if (counterMap) parts.splice(1, 0, fill(PROBES.counterMap, counterMapValues(walk)));
    parts.push(...walkParts(opts, targets, walk));
  }
  if (opts.canary) parts.push(fill(PROBES.canary, { OOMPROF_PID: opts.canary.pid, NONCE: opts.canary.nonce }));
  const text = joinFragments(parts).text;
  // Every fill refuses a placeholder it has no value for; this is the last word on it.
  const left = text.indexOf("{{");
  if (left >= 0) throw new Error(`the generated script has an unfilled placeholder: ${JSON.stringify(text.slice(left, left + 40))}`);
  return { text, unsafe: opts.followExecs !== undefined || opts.notifyExecs === "hold", walk: walk.name, counterMap };
}


/** Cgroup levels the probe follows up from the victim's memory cgroup (Kubernetes needs 4 or 5). */
export const CGROUP_DEPTH = 12;

/** The victim's memory cgroup and namespaced pid, where this kernel's layout is known. */
function victimContextFragment(host: BpftraceHost): TrustedFragment {
  const l = host.victimContext;
  if (!l) return EMPTY_FRAGMENT;
  return fill(PROBES.victimContext, {
    MEMORY_SUBSYS: l.memorySubsysId,
    CGROUP_DEPTH,
    KN_PARENT: ident(l.kernfsParent),
    PID_NUMBERS: l.pidNumbers,
    UPID_SIZE: l.upidSize,
    UPID_NR: l.upidNr,
  });
}

/** The bucket offsets the walks read with (src/gobinary/bucket-layout.ts). */
const BUCKET_VALUES = {
  BUCKET_ALLNEXT: BUCKET.allnext,
  BUCKET_SIZE: BUCKET.size,
  BUCKET_NSTK: BUCKET.nstk,
  BUCKET_STK: BUCKET.headerBytes,
} satisfies Record<string, number>;

/** The counter map's size, for the templates of a walk that has one. */
function counterMapValues(walk: WalkVariant): { COUNTER_MAP_ENTRIES?: number } {
  return walk.counterMap ? { COUNTER_MAP_ENTRIES: walk.counterMap.entries } : {};
}

/** COUNTER_STEP: the walk's printing step, inside the counter map's step where it has one. */
function counterStep(walk: WalkVariant, printing: TrustedFragment): TrustedFragment {
  const step = fill(printing, bucketValuesIn(printing));
  if (!walk.counterMap) return step;
  const mapped = PROBES.walkForMapCountersMap;
  return fill(mapped, { ...bucketValuesIn(mapped), ...counterMapValues(walk) }, { COUNTER_PRINT_STEP: step });
}

/** The bucket offsets a walk template reads (each fill must have its placeholder). */
function bucketValuesIn(template: TrustedFragment): Partial<typeof BUCKET_VALUES> {
  return Object.fromEntries(Object.entries(BUCKET_VALUES).filter(([name]) => template.text.includes(`{{${name}}}`)));
}

/**
 * The walk: one table of target binaries, one walk probe per attach point whatever the
 * number of binaries, the goroutine count beside each, Go's runtime OOM throw per binary
 * (a uprobe names its binary), and the exit marker that forgets a walked process.
 */
function walkParts(opts: ScriptOptions, targets: Array<[id: number, target: GoTarget]>, walk: WalkVariant): TrustedFragment[] {
  const parts = [fill(PROBES.targets, {}, { TARGET_ROWS: targetRows(targets) })];
  // A binary added while bpftrace runs may have a goroutine or memstats layout: the probe is always there.
  const counted = opts.growingTable || targets.some(([, t]) => t.goroutines || t.memStats);
  for (const attach of walkAttachPoints(opts.host, walk.name)) {
    const attachName = comment(attach.name);
    const phase = walk.counterPhase;
    const counters: Record<string, TrustedFragment> = phase ? { COUNTER_PHASE: fill(phase.template, { ...phase.values, ...bucketValuesIn(phase.template) }) } : {};
    if (walk.counterStep) counters.COUNTER_STEP = counterStep(walk, walk.counterStep);
    parts.push(fill(walk.template, { ...walk.values, ...bucketValuesIn(walk.template), ATTACH_NAME: attachName }, { ATTACH: attach.template, WALK_START: PROBES.walkStart, ...counters }));
    for (let copy = 0; copy < (phase?.extraProbes ?? 0); copy++) {
      parts.push(fill(PROBES.walkMoreCounters, { ATTACH_NAME: attachName }, { ATTACH: attach.template, ...counters }));
    }
    // Needs a release whose struct layouts are known; the table says which binaries have them.
    if (counted) parts.push(fill(PROBES.goroutines, { ATTACH_NAME: attachName, MAX_PROCS: MAX_PROCS_SUMMED }, { ATTACH: attach.template }));
  }
  for (const [id, target] of targets) {
    const link = opts.uprobeLinks?.get(id);
    // Go's own out-of-memory throw: the message is read under the register ABI (amd64).
    if (link && target.throwSymbol && target.arch === "amd64") {
      parts.push(
        fill(
          PROBES.oomThrow,
          { TARGET_ID: id, TARGET_LINK: uprobePath(link), THROW_SYMBOL: goSymbol(target.throwSymbol) },
          { VICTIM_CONTEXT: victimContextFragment(opts.host) },
        ),
      );
    }
  }
  if (opts.notifyExecs) parts.push(fill(PROBES.execWalked));
  parts.push(
    fill(PROBES.exitMarker, {}, {
      GOROUTINES_CLEANUP: counted ? PROBES.goroutinesCleanup : EMPTY_FRAGMENT,
      COUNTER_MAP_CLEANUP: walk.counterMap ? PROBES.counterMapCleanup : EMPTY_FRAGMENT,
    }),
  );
  return parts;
}
