import walkWhile from "../../probes/walk/while.bt" with { type: "text" };
import type { BpftraceVersion } from "./bpftrace-host.ts";

/**
 * The memory-profile walk differs by bpftrace's loop features. Each variant is one
 * template in probes/walk/ plus the loop bounds that its verifier budget allows.
 */
export interface WalkLimits {
  /** Buckets whose counters one probe firing prints. */
  counterIterations: number;
  /** 8-frame stack lines one probe firing prints. */
  stackIterations: number;
}

export interface WalkVariant {
  name: string;
  template: string;
  values: Record<string, number>;
}

/**
 * 0.17-0.20: bounded `while` loops, verified instruction by instruction; the defaults
 * stay well inside the kernel's one-million-instruction budget (see FIELD-NOTES).
 */
export const WHILE_DEFAULTS: WalkLimits = { counterIterations: 2000, stackIterations: 2000 };

export function chooseWalk(_version: BpftraceVersion, limits: Partial<WalkLimits> = {}): WalkVariant {
  const l = { ...WHILE_DEFAULTS, ...limits };
  return {
    name: "while",
    template: walkWhile,
    values: { COUNTER_ITERATIONS: l.counterIterations, STACK_ITERATIONS: l.stackIterations },
  };
}
