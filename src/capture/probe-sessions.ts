import { readlinkSync } from "node:fs";
import type { BpftraceHost } from "../probes/bpftrace-host.ts";
import { generateScript } from "../probes/generate.ts";
import { BpftraceSession } from "../stream/bpftrace-session.ts";
import type { WalkRecord } from "../stream/records.ts";
import { BadBinaryError } from "../errors.ts";
import { discoverGoTarget, type GoTarget } from "../target/go-target.ts";
import { CaptureAssembler } from "./walk-capture.ts";

export interface ProbeSessionEvents {
  onRecord?(r: WalkRecord, pid: number | undefined): void;
  onWarning(message: string): void;
  onVerbose?(message: string): void;
  /** A session ended while oomprof still needed it. */
  onSessionLost?(why: string): void;
}

/** What oomprof knows about a program seen exec'd, for the kill report. */
export interface ExecInfo {
  path: string;
  target?: GoTarget;
  why?: string;
}

/**
 * The bpftrace processes behind one oomprof command, all feeding one assembler:
 * the main session (OOM-killer probes, exec following, the initial targets) and one
 * walk-only session for each Go binary discovered later. Target ids are global, so a
 * walk's H record names its binary whichever session printed it.
 */
export class ProbeSessions {
  readonly assembler = new CaptureAssembler();
  readonly targets: GoTarget[] = [];
  readonly execs = new Map<number, ExecInfo>();
  readonly firstSeenMs = new Map<number, number>();
  private sessions: BpftraceSession[] = [];
  private stopping = false;

  constructor(
    private host: BpftraceHost,
    private events: ProbeSessionEvents,
  ) {}

  get lostEvents(): number {
    return this.sessions.reduce((n, s) => n + s.lostEvents, 0);
  }

  targetById(id: number): GoTarget | undefined {
    return this.targets[id];
  }

  /** Starts the main session and resolves with its probe count once attached. */
  async startMain(initial: GoTarget[], followExecsOf?: number): Promise<number> {
    const firstTargetId = this.targets.length;
    this.targets.push(...initial);
    const script = generateScript({
      host: this.host,
      targets: initial,
      firstTargetId,
      victims: true,
      followExecs: followExecsOf !== undefined ? { rootPid: followExecsOf, knownInodes: initial.map((t) => t.inode) } : undefined,
    });
    return this.start(script.text, script.unsafe);
  }

  /** Adds a walk for a Go binary found after start, and resolves once it is attached. */
  async addTarget(target: GoTarget): Promise<void> {
    if (this.targets.some((t) => t.inode === target.inode)) return;
    const firstTargetId = this.targets.length;
    this.targets.push(target);
    const script = generateScript({ host: this.host, targets: [target], firstTargetId, victims: false });
    await this.start(script.text, script.unsafe);
    this.events.onVerbose?.(`walk attached for ${target.path} (${target.buildInfo.goVersion})`);
  }

  stop(): Promise<unknown> {
    this.stopping = true;
    for (const s of this.sessions) s.stop();
    return Promise.race([Promise.all(this.sessions.map((s) => s.exited)), new Promise((r) => setTimeout(r, 2000))]);
  }

  private start(script: string, unsafe: boolean): Promise<number> {
    const session = new BpftraceSession(
      { bpftracePath: this.host.path, script, unsafe },
      {
        onRecord: (r) => this.handle(r),
        onBadRecord: (line, why) => this.events.onWarning(`unparseable probe record (${why}): ${line.slice(0, 120)}`),
        onHelperError: (msg) => this.events.onVerbose?.(`bpftrace helper error: ${msg}`),
      },
    );
    this.sessions.push(session);
    void session.exited.then(() => {
      if (!this.stopping) this.events.onSessionLost?.(session.errorSummary() || "bpftrace exited");
    });
    return session.attached;
  }

  private handle(r: WalkRecord): void {
    const pid = this.assembler.add(r);
    if (pid !== undefined && !this.firstSeenMs.has(pid)) this.firstSeenMs.set(pid, performance.now());
    if (r.tag === "P") void this.onExec(r.pid, r.inode);
    this.events.onRecord?.(r, pid);
  }

  /** A program exec'd in the child's tree is stopped: attach a walk if it is a new Go binary, then resume it. */
  private async onExec(pid: number, inode: number): Promise<void> {
    try {
      let path = `/proc/${pid}/exe`;
      try {
        path = readlinkSync(path);
      } catch {
        /* already gone */
      }
      const known = this.targets.find((t) => t.inode === inode);
      if (known) {
        this.execs.set(pid, { path, target: known });
        return;
      }
      try {
        // Read through /proc so a binary replaced or deleted on disk is still the one that runs.
        const target = await discoverGoTarget(`/proc/${pid}/exe`);
        target.path = path.replace(/ \(deleted\)$/, "");
        this.execs.set(pid, { path, target });
        await this.addTarget(target);
      } catch (e) {
        const why = e instanceof BadBinaryError ? e.message.replace(`/proc/${pid}/exe`, path) : (e as Error).message;
        this.execs.set(pid, { path, why });
        this.events.onVerbose?.(`exec of ${path} (pid ${pid}): no walk (${why})`);
      }
    } finally {
      try {
        process.kill(pid, "SIGCONT");
      } catch {
        /* it died meanwhile */
      }
    }
  }
}
