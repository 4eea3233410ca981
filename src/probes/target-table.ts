import { memRecordCycleBytes } from "../gobinary/bucket-layout.ts";
import type { GoTarget } from "../gobinary/go-target.ts";
import { comment, fill, joinFragments, PROBES, type Fill, type TrustedFragment } from "./template.ts";

/**
 * The target table: one row per Go binary, keyed by its executable's inode, in maps the
 * walk probes read (probes/walk/target-row.bt). A row is written either by the script's
 * BEGIN probe (the binaries known when bpftrace starts) or, for binaries found later, by
 * oomprof into the running bpftrace's maps (capture/target-rows.ts). Both come from
 * targetRowValues, and the map names from the template itself, so they cannot disagree.
 */

/** One assignment line of target-row.bt: `@map[(uint64){{INODE}}] = (uint64){{PLACEHOLDER}};`. */
const ROW_LINE = /^\s*@(\w+)\[\(uint64\)\{\{INODE\}\}\] = \(uint64\)\{\{([A-Z][A-Z0-9_]*)\}\};$/;

/** watch's executables seen, keyed by (inode, size) (probes/common/exec-notify.bt, exec-hold.bt). */
export const EXEC_SEEN_MAP = "exec_seen";

/** Where each process's read-ahead bucket copy is whole, by pid: the walk prints no stack from there (probes/walk/targets.bt). */
export const STACKS_SEEN_MAP = "stk_seen";

/** The walk's counters, keyed by {pid, bucket}, where bpftrace declares map sizes (probes/walk/counter-map.bt). */
export const COUNTER_MAP = "wc";

/** bpftrace names a map `AT_<name>` in the kernel, cut at 15 characters. */
export const KERNEL_MAP_NAME_MAX = 15;
export function kernelMapName(name: string): string {
  return `AT_${name}`.slice(0, KERNEL_MAP_NAME_MAX);
}

/** The maps of a row, in template order, with the placeholder that gives each its value. */
export const TARGET_ROW_MAPS: ReadonlyArray<{ map: string; placeholder: string }> = PROBES.targetRow.text
  .split("\n")
  .filter((l) => l.trim() && !l.trim().startsWith("//"))
  .map((l) => {
    const m = ROW_LINE.exec(l);
    if (!m) throw new Error(`probes/walk/target-row.bt: not a row assignment: ${JSON.stringify(l)}`);
    return { map: m[1]!, placeholder: m[2]! };
  });

/** One row's values: where this binary keeps what the walk reads (0: absent). id -1: the row that declares the maps. */
export function targetRowValues(t: GoTarget | undefined, id: number): Record<string, number | bigint> {
  const g = t?.goroutines;
  const m = t?.memStats;
  return {
    INODE: t?.inode ?? 0,
    // 0 means "not a target": the walk's predicate tests it.
    TARGET_KEY: t ? id + 1 : 0,
    TEXT_VADDR: t?.text.vaddr ?? 0,
    MBUCKETS: t?.vars.mbuckets ?? 0,
    MEMPROFILERATE: t?.vars.memProfileRate ?? 0,
    // The heap-profile cycle decides which future[] slot runtime/pprof would fold in.
    CYCLE_ADDR: t?.vars.cycle?.addr ?? 0,
    CYCLE_SHIFT: t?.vars.cycle?.shifted ? 1 : 0,
    // Bytes of one memRecord cycle, from one to the next: the C line reads {allocs, frees} of each.
    RECORD_CYCLE_BYTES: memRecordCycleBytes(t?.memRecordWords),
    // `run` stops each exec of such a binary, to turn profiling on before its runtime starts.
    PROFILING_OFF: t?.memProfilingDisabled ? 1 : 0,
    ALLGLEN: g?.allglen ?? 0,
    ALLP: g?.allp ?? 0,
    SCHED_GFREE_N: g ? g.sched + BigInt(g.schedGFreeN) : 0,
    SCHED_GFREE_N2: g?.schedGFreeN2 !== undefined ? g.sched + BigInt(g.schedGFreeN2) : 0,
    SCHED_NGSYS: g ? g.sched + BigInt(g.schedNgsys) : 0,
    P_GFREE_N: g?.pGFreeN ?? 0,
    // Addresses of the words the memory breakdown reads (memstats-layout.ts); 0: none.
    GC_HEAP_INUSE: m ? m.gcController + BigInt(m.heapInUse) : 0,
    GC_MAPPED_READY: m ? m.gcController + BigInt(m.mappedReady) : 0,
    MS_STACKS_SYS: m ? m.memstats + BigInt(m.stacksSys) : 0,
    MS_IN_STACKS: m ? m.memstats + BigInt(m.heapStats + m.inStacks) : 0,
    MS_DELTA_SIZE: m?.deltaSize ?? 0,
  };
}

/** The writes that add a binary's row to a running bpftrace: map name, key (its inode), value. */
export function targetRowWrites(t: GoTarget, id: number): Array<{ map: string; key: bigint; value: bigint }> {
  const values = targetRowValues(t, id);
  return TARGET_ROW_MAPS.map((r) => ({ map: r.map, key: BigInt(t.inode), value: BigInt(values[r.placeholder]!) }));
}

/**
 * The BEGIN rows: an all-zero row at inode 0 (no file has it) first, so every map exists
 * and has its type even before a binary is known, then one row per target.
 */
export function targetRows(targets: ReadonlyArray<[id: number, target: GoTarget]>): TrustedFragment {
  const row = (t: GoTarget | undefined, id: number, label: string) => {
    const values: Record<string, Fill> = { ...targetRowValues(t, id), TARGET_LABEL: comment(label) };
    return fill(PROBES.targetRow, values);
  };
  const rows = [row(undefined, -1, "none. Inode 0 is no file and this row only declares every map"), ...targets.map(([id, t]) => row(t, id, `${id} is the binary with inode ${t.inode}`))];
  return joinFragments(rows, PROBES.targetRow.origin);
}
