import { accessSync, constants, statSync } from "node:fs";
import { constants as osConstants } from "node:os";
import { resolve } from "node:path";
import { z } from "zod";
import { CaptureAssembler } from "../capture/walk-capture.ts";
import { createMemoryCgroup, processCgroup, type MemoryCgroup } from "../cgroup/memory-cgroup.ts";
import { BadBinaryError, UserError } from "../errors.ts";
import { detectBpftrace } from "../probes/bpftrace-host.ts";
import { generateScript } from "../probes/generate.ts";
import { BpftraceSession } from "../stream/bpftrace-session.ts";
import { loadSymbolizer } from "../symbolize/load.ts";
import { discoverGoTarget, type GoTarget } from "../target/go-target.ts";
import { EventWriter, nowIso } from "../output/events.ts";
import { prepareOutDir } from "../output/profile-file.ts";
import { reportKill } from "../output/report-kill.ts";
import { renderKillSummary, terminalStyle } from "../output/summary.ts";
import { SizeSchema } from "./sizes.ts";
import { log } from "./log.ts";

export const RunFlags = z.object({
  limit: SizeSchema.optional(),
  out: z.string().min(1).default(process.env.OOMPROF_OUT ?? "."),
  events: z.string().min(1).optional(),
  quiet: z.boolean().default(false),
});
export type RunFlags = z.infer<typeof RunFlags>;

/** How long to wait, after the child is gone, for the last records of its walk. */
const DRAIN_MS = 3000;

export function requireRoot(): void {
  if (process.getuid?.() !== 0) {
    throw new UserError("oomprof needs root (bpftrace loads eBPF programs and reads other processes' memory): run it with sudo");
  }
}

/** PATH lookup the way a shell does it, with a shell's exit codes for failures. */
export function resolveCommand(cmd: string): string {
  const path = cmd.includes("/") ? resolve(cmd) : Bun.which(cmd);
  if (!path) throw new UserError(`${cmd}: command not found`, 127);
  try {
    if (!statSync(path).isFile()) throw new UserError(`${cmd}: not a regular file`, 126);
    accessSync(path, constants.X_OK);
  } catch (e) {
    if (e instanceof UserError) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    throw new UserError(`${cmd}: ${code === "ENOENT" ? "no such file" : "not executable"}`, code === "ENOENT" ? 127 : 126);
  }
  return path;
}

/** The Go target behind a command, or why there is none. Non-Go programs still run. */
export async function targetForCommand(path: string): Promise<{ target?: GoTarget; why?: string }> {
  try {
    return { target: await discoverGoTarget(path) };
  } catch (e) {
    if (e instanceof BadBinaryError) return { why: e.message };
    throw e;
  }
}

export async function runCommand(argv: string[], flags: RunFlags): Promise<number> {
  const t0 = performance.now();
  if (argv.length === 0) throw new UserError("run: no command given (usage: oomprof run [flags] -- CMD [ARGS...])", 2);
  const cmdPath = resolveCommand(argv[0]!);
  const { target, why } = await targetForCommand(cmdPath);
  requireRoot();
  const outDir = prepareOutDir(flags.out);
  const events = new EventWriter(flags.events);
  const style = terminalStyle(process.stderr);
  if (!target) log.warn(`${why}; it will run, and kills will be reported, but no heap profile is possible`);
  else if (target.memProfilingDisabled) {
    log.warn(`${target.path}: memory profiling is disabled in this binary (runtime/pprof is not linked in); there will be no buckets`);
  }

  const host = await detectBpftrace();
  const targets = target ? [target] : [];
  const script = generateScript({ host, targets });
  const assembler = new CaptureAssembler();
  const firstSeen = new Map<number, number>();
  let childPid = -1;
  let wake: (() => void) | undefined;
  const session = new BpftraceSession(
    { bpftracePath: host.path, script },
    {
      onRecord(r) {
        const pid = assembler.add(r);
        if (pid !== undefined && !firstSeen.has(pid)) firstSeen.set(pid, performance.now());
        if (pid === childPid && (r.tag === "X" || r.tag === "E")) wake?.();
      },
      onBadRecord: (line, whyBad) => log.warn(`unparseable probe record (${whyBad}): ${line.slice(0, 120)}`),
      onHelperError: (msg) => log.verbose(`bpftrace helper error: ${msg}`),
    },
  );
  const probes = await session.attached;
  const armedMs = Math.round(performance.now() - t0);
  events.emit({
    event: "armed",
    time: nowIso(),
    bpftrace_version: host.version.text,
    walk: "while",
    probes,
    targets: targets.map((t) => ({ exe: t.path, go_version: t.buildInfo.goVersion })),
    armed_ms: armedMs,
  });
  if (!flags.quiet) log.info(`armed in ${armedMs} ms (bpftrace ${host.version.text}, ${probes} probes)${target ? `, watching ${target.path} (${target.buildInfo.goVersion})` : ""}`);

  let cgroup: MemoryCgroup | undefined;
  let bpftraceDied = false;
  try {
    if (flags.limit !== undefined) cgroup = createMemoryCgroup(flags.limit);
    // With a cgroup, a tiny shell moves itself into it and then execs the command,
    // so the program is confined from its first instruction and keeps its pid, argv,
    // environment, working directory and stdio.
    const spawnArgv = cgroup ? ["/bin/sh", "-c", 'echo $$ > "$0" && exec "$@"', cgroup.procsFile, ...argv] : argv;
    const child = Bun.spawn(spawnArgv, {
      stdio: ["inherit", flags.events === "-" ? 2 : "inherit", "inherit"],
    });
    childPid = child.pid;
    const cgroupName = cgroup ? cgroup.path : (processCgroup(child.pid) ?? null);
    events.emit({ event: "start", time: nowIso(), pid: child.pid, argv, cgroup: cgroupName, limit_bytes: cgroup?.limitBytes ?? null });
    const forward = (sig: NodeJS.Signals) => () => {
      try {
        child.kill(sig);
      } catch {
        /* already gone */
      }
    };
    const handlers = (["SIGINT", "SIGTERM", "SIGHUP"] as const).map((sig) => [sig, forward(sig)] as const);
    for (const [sig, h] of handlers) process.on(sig, h);
    void session.exited.then(() => {
      if (childPid > 0 && child.exitCode === null && child.signalCode === null) {
        bpftraceDied = true;
        log.warn(`bpftrace exited while ${argv[0]} is still running: heap capture is off (${session.errorSummary() || "no error given"})`);
      }
    });

    await child.exited;
    for (const [sig, h] of handlers) process.off(sig, h);
    const status = child.signalCode ? 128 + (osConstants.signals[child.signalCode as keyof typeof osConstants.signals] ?? 0) : (child.exitCode ?? 1);

    // The walk runs in the dying process's threads; its last lines may still be in flight.
    if (child.signalCode === "SIGKILL" && !bpftraceDied) {
      const deadline = performance.now() + DRAIN_MS;
      while (performance.now() < deadline) {
        const c = assembler.has(child.pid) ? assembler.capture(child.pid) : undefined;
        if (c && (c.exited || (c.walkEnded && c.complete))) break;
        await new Promise<void>((res) => {
          wake = res;
          setTimeout(res, 50);
        });
      }
    }
    if (assembler.has(child.pid)) {
      const capture = assembler.capture(child.pid);
      if (capture.victim || capture.header) {
        const { event, sites } = reportKill(capture, {
          target,
          symbolizer: target ? loadSymbolizer(target) : undefined,
          outDir,
          lostEvents: session.lostEvents,
          cgroup: cgroupName,
          limitBytes: cgroup?.limitBytes ?? null,
          firstSeenMs: firstSeen.get(child.pid),
          noProfileReason: why,
        });
        events.emit(event);
        if (!flags.quiet) process.stderr.write(renderKillSummary(event, sites, style));
      }
    }
    events.emit({ event: "exit", time: nowIso(), pid: child.pid, status, signal: child.signalCode ? String(child.signalCode) : null });
    return status;
  } finally {
    session.stop();
    await Promise.race([session.exited, new Promise((r) => setTimeout(r, 2000))]);
    cgroup?.remove();
    events.close();
  }
}
