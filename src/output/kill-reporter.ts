import type { LiveMirror } from "../capture/live-mirror.ts";
import type { ProbeSessions } from "../capture/probe-sessions.ts";
import { loadSymbolizer } from "../symbolize/load.ts";
import type { Symbolizer } from "../symbolize/types.ts";
import type { GoTarget } from "../target/go-target.ts";
import type { EventWriter, KillEvent } from "./events.ts";
import { reportKill } from "./report-kill.ts";
import { renderKillSummary, terminalStyle } from "./summary.ts";

export interface KillReporterOptions {
  sessions: ProbeSessions;
  events: EventWriter;
  outDir: string;
  quiet: boolean;
  mirror?: LiveMirror;
  /** Where the process ran and the limit, when oomprof knows. */
  placement(pid: number): { cgroup: string | null; limitBytes: number | null };
  /** A target known by other means (run's command), and why there is none. */
  fallback?(pid: number): { target?: GoTarget; why?: string; exe?: string };
}

/**
 * Turns a finished capture into its outputs, once per process: the profile file,
 * the event, and the summary on stderr. Shared by `run` and `watch`.
 */
export class KillReporter {
  private reported = new Set<number>();
  private symbolizers = new Map<GoTarget, Symbolizer | undefined>();
  private style = terminalStyle(process.stderr);
  bpftraceLost: string | undefined;

  constructor(private o: KillReporterOptions) {}

  hasReported(pid: number): boolean {
    return this.reported.has(pid);
  }

  /** Reports pid if the probes saw it killed; returns the event, or undefined if there is nothing to say. */
  report(pid: number): KillEvent | undefined {
    const { sessions } = this.o;
    if (this.reported.has(pid) || !sessions.assembler.has(pid)) return undefined;
    const capture = sessions.assembler.capture(pid, this.o.mirror?.buckets(pid));
    if (!capture.victim && !capture.header) return undefined;
    this.reported.add(pid);
    const exec = sessions.execs.get(pid);
    const fallback = this.o.fallback?.(pid);
    const walked = capture.header ? sessions.targetById(capture.header.targetId) : undefined;
    const target = walked ?? exec?.target ?? fallback?.target;
    const { event, sites } = reportKill(capture, {
      target,
      symbolizer: target ? this.symbolizer(target) : undefined,
      outDir: this.o.outDir,
      lostEvents: sessions.lostEvents,
      ...this.placementOf(pid),
      firstSeenMs: sessions.firstSeenMs.get(pid),
      exe: exec?.path ?? fallback?.exe,
      noProfileReason: this.bpftraceLost ? `bpftrace exited early: ${this.bpftraceLost}` : (exec?.why ?? fallback?.why),
    });
    this.o.events.emit(event);
    if (!this.o.quiet) process.stderr.write(renderKillSummary(event, sites, this.style));
    sessions.assembler.forget(pid);
    sessions.firstSeenMs.delete(pid);
    return event;
  }

  private placementOf(pid: number): { cgroup: string | null; limitBytes: number | null } {
    return this.o.placement(pid);
  }

  /** Symbol tables are read once per binary, however many of its processes die. */
  private symbolizer(t: GoTarget): Symbolizer | undefined {
    if (!this.symbolizers.has(t)) this.symbolizers.set(t, loadSymbolizer(t));
    return this.symbolizers.get(t);
  }
}
