import { hostVictimContext } from "../host/victim-context.ts";
import { z } from "zod";
import { UserError } from "../errors.ts";
import { detectBpftrace, parseBpftraceVersion, type BpftraceHost } from "../probes/bpftrace-host.ts";
import { sessionScript } from "../probes/session-script.ts";
import { targetForCommand } from "../gobinary/command-target.ts";
import type { GoTarget } from "../gobinary/go-target.ts";
import { resolveCommand } from "../process/command-path.ts";

export const ProbesFlags = z.object({
  print: z.boolean().default(false),
  bpftraceVersion: z.string().optional(),
  kprobes: z.boolean().optional(),
});
export type ProbesFlags = z.infer<typeof ProbesFlags>;

/**
 * `oomprof probes --print [-- CMD]`: the script `run` would load, for reading at 3 a.m.
 * --bpftrace-version and --kprobes let one see another host's variant from this one.
 */
export async function probesCommand(argv: string[], flags: ProbesFlags): Promise<number> {
  if (!flags.print) throw new UserError("probes: nothing to do (use --print)", 2);
  let host: BpftraceHost;
  if (flags.bpftraceVersion) {
    host = {
      path: "bpftrace",
      version: parseBpftraceVersion(`bpftrace v${flags.bpftraceVersion}`),
      hasOomKillProcessKprobe: flags.kprobes ?? false,
      exitKeepsMm: true,
      markVictimCounters: true,
      victimContext: hostVictimContext(),
    };
  } else {
    host = await detectBpftrace();
    if (flags.kprobes !== undefined) host = { ...host, hasOomKillProcessKprobe: flags.kprobes };
  }
  const targets: GoTarget[] = [];
  if (argv.length) {
    const { target, why } = await targetForCommand(resolveCommand(argv[0]!));
    if (!target) throw new UserError(why ?? `${argv[0]}: not a Go program`);
    targets.push(target);
  }
  // `run` points uprobes at a symlink in its private directory; show where one would be.
  const uprobeLinks = new Map(targets.map((_, id) => [id, `/tmp/oomprof-bin-example/t${id}`] as [number, string]));
  // As `run` builds it (through the same function), for a child that would be pid 1.
  process.stdout.write(sessionScript({ host, targets, mode: { kind: "run", rootPid: 1 }, uprobeLinks }).text);
  return 0;
}
