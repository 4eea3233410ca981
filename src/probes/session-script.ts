import type { GoTarget } from "../gobinary/go-target.ts";
import type { BpftraceHost } from "./bpftrace-host.ts";
import { generateScript, type GeneratedScript } from "./generate.ts";
import type { WalkLimits } from "./walk-templates.ts";

export type ScriptMode =
  /** run: stop programs exec'd under rootPid until their walk is attached. */
  | { kind: "run"; rootPid: number }
  /** watch: hear about every new executable on the host; hold: stop each until it is read. */
  | { kind: "watch"; hold: boolean };

export interface SessionScriptInput {
  host: BpftraceHost;
  targets: ReadonlyArray<GoTarget | undefined>; // index = target id; holes allowed
  mode: ScriptMode;
  limits?: Partial<WalkLimits>;
  uprobeLinks: Map<number, string>;
  canary?: { pid: number; nonce: number };
}

/**
 * The script a `run` or `watch` session loads: one code path for the sessions and for
 * `oomprof probes --print`, so what is printed is what runs.
 */
export function sessionScript(input: SessionScriptInput): GeneratedScript {
  const { host, targets, mode, limits, uprobeLinks, canary } = input;
  return generateScript({
    host,
    targets,
    victims: true,
    // Rows are added while bpftrace runs (capture/target-rows.ts).
    growingTable: true,
    followExecs: mode.kind === "run" ? { rootPid: mode.rootPid } : undefined,
    notifyExecs: mode.kind === "watch" ? (mode.hold ? "hold" : true) : undefined,
    canary,
    limits,
    uprobeLinks,
  });
}
