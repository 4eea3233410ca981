import { versionAtLeast, type BpftraceHost, type BpftraceVersion } from "./bpftrace-host.ts";
import { PROBES, type TrustedFragment } from "./template.ts";

/**
 * The memory-profile walk differs by bpftrace's loop features. Each variant is one
 * template in probes/walk/ plus the loop bounds that its verifier budget allows.
 */
export interface WalkLimits {
  /** Buckets whose counters one probe firing prints. */
  counterIterations: number;
  /** 8-frame stack lines one probe firing prints. */
  stackIterations: number;
  /** while walk: probes beside the walk that only continue its counter phase, at each attach point. */
  extraCounterProbes: number;
  /**
   * for-map walk (0.21+): keys in the map its three nested loops iterate over, so one
   * firing prints up to loopKeys³ lines (C and S together). At most 100 (unroll's limit).
   */
  loopKeys: number;
  /**
   * for-map walk with a counter map (0.27+): the buckets @wc holds (counter-map.bt);
   * a longer list prints the rest as C lines.
   */
  counterMapEntries: number;
}

export interface WalkVariant {
  name: string;
  template: TrustedFragment;
  values: Record<string, number>;
  /** for-map: one step of the counter phase that prints C lines, by bpftrace release (COUNTER_STEP). */
  counterStep?: TrustedFragment;
  /**
   * for-map: counters go into a map of this many entries first (for-map-counters-map.bt,
   * with counterStep for the rest), read by oomprof at the B line.
   */
  counterMap?: { entries: number };
  /** while: the counter phase (included in the walk, and repeated by `extraProbes` probes of its own). */
  counterPhase?: { template: TrustedFragment; values: Record<string, number>; extraProbes: number };
}

/**
 * 0.17-0.20: bounded `while` loops, verified instruction by instruction. Measured on
 * 0.17 (Linux 6.18): 4,000 counter lines load in ~0.5 s, 8,000 fail; stack lines cost
 * more (a branch per line). With the live mirror supplying old stacks (the walk stops
 * printing them where the mirror is whole), counters matter most, so a firing prints up
 * to 4,000 buckets' counters and 400 stack lines (500 no longer verified once the stack
 * loop also tested where the mirror's copy begins).
 * 0.21+: `for` over a map (bpf_for_each_map_elem), whose body is verified once: 100 keys
 * nested three deep is a million lines a firing, enough for 200,000+ buckets.
 */
export const WHILE_DEFAULTS: WalkLimits = { counterIterations: 4000, stackIterations: 400, extraCounterProbes: 0, loopKeys: 100, counterMapEntries: 65_536 };

export function chooseWalk(version: BpftraceVersion, limits: Partial<WalkLimits> = {}): WalkVariant {
  const l = { ...WHILE_DEFAULTS, ...limits };
  // for-map.bt keeps to 0.21's for-loop rules (loop bodies read maps, never outer
  // variables); 0.21 also allows for-loops in only one probe of a script, and there the
  // walk has one attach point (walkAttachPoints), which serves every binary.
  if (versionAtLeast(version, 0, 21)) {
    if (!Number.isInteger(l.loopKeys) || l.loopKeys < 1 || l.loopKeys > 100) throw new Error(`loopKeys must be 1-100, got ${l.loopKeys}`);
    const values = { ITER_KEYS: l.loopKeys };
    // Counters through a map from 0.27, the oldest bpftrace tried that declares a map's
    // size (`let @wc = hash(N)`; 0.23 has no such syntax, 0.24-0.26 were not tried);
    // past the map, eight buckets to a printf as on 0.23.
    if (versionAtLeast(version, 0, 27)) {
      if (!Number.isInteger(l.counterMapEntries) || l.counterMapEntries < 1) throw new Error(`counterMapEntries must be a positive integer, got ${l.counterMapEntries}`);
      return { name: "for-map", template: PROBES.walkForMap, values, counterStep: PROBES.walkForMapCounters8, counterMap: { entries: l.counterMapEntries } };
    }
    // Eight buckets to a printf from 0.23, the oldest for-map bpftrace tried with it.
    const counterStep = versionAtLeast(version, 0, 23) ? PROBES.walkForMapCounters8 : PROBES.walkForMapCounters;
    return { name: "for-map", template: PROBES.walkForMap, values, counterStep };
  }
  // 0.21+ compiles `while` into code the verifier explores far more of: on 0.23 the
  // while walk loads at 250 iterations and fails at 500 ("BPF program is too large").
  const newer = versionAtLeast(version, 0, 21) ? { counterIterations: 250, stackIterations: 250 } : {};
  const w = { ...WHILE_DEFAULTS, ...newer, ...limits };
  if (!Number.isInteger(w.extraCounterProbes) || w.extraCounterProbes < 0 || w.extraCounterProbes > 8) throw new Error(`extraCounterProbes must be 0-8, got ${w.extraCounterProbes}`);
  return {
    name: "while",
    template: PROBES.walkWhile,
    values: { STACK_ITERATIONS: w.stackIterations },
    // Three buckets a loop step (while-counters.bt).
    counterPhase: { template: PROBES.walkWhileCounters, values: { COUNTER_TRIPLES: Math.ceil(w.counterIterations / 3) }, extraProbes: w.extraCounterProbes },
  };
}

/**
 * Where a walk runs. Each firing continues the walk, so more firings in the victim's
 * context mean more buckets. SIGKILL delivery fires once per thread. Since Linux 6.16
 * sched_process_exit fires before exit_mm() (the same change gave it `group_dead`), so
 * each thread fires once more with the victim's memory still mapped.
 */
export function walkAttachPoints(host: BpftraceHost, walk: string): Array<{ name: string; template: TrustedFragment }> {
  const points = [{ name: "on SIGKILL delivery", template: PROBES.attachSigkill }];
  // The while walk takes ~0.5 s to verify per probe: a second copy would push arming
  // past 2 s on 0.17. 0.21 allows for-loops in one probe only (chooseWalk relies on it).
  const cheapToLoad = walk !== "while" && versionAtLeast(host.version, 0, 22);
  if (host.exitKeepsMm && cheapToLoad) points.push({ name: "on thread exit", template: PROBES.attachExit });
  return points;
}
