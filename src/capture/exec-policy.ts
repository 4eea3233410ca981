import type { GoTarget } from "../gobinary/go-target.ts";
import { enableMemoryProfiling } from "../gobinary/enable-profiling.ts";
import { monotonicNs } from "../process/libc.ts";
import { liveState, resume } from "../process/liveness.ts";
import { scanProcesses } from "../process/scan.ts";
import type { WalkRecord } from "../stream/records.ts";
import type { BinaryRegistry, ExecInfo } from "./binary-registry.ts";

export type ExecMode =
  /** run: programs exec'd under rootPid are stopped until their walk is attached. */
  | { kind: "run"; rootPid: number; memProfileRate: number }
  /** watch: every new executable on the host is heard of; with hold, stopped until it is read. */
  | { kind: "watch"; hold: boolean };

/** When a program exec'd and when oomprof heard of it, on the kernel's monotonic clock. */
interface ExecHeard {
  execNs: bigint;
  heardNs: bigint | undefined;
}

export interface ExecPolicyEvents {
  onWarning(message: string): void;
  onVerbose?(message: string): void;
}

/**
 * What oomprof does when a program is exec'd: read it, and for a new Go binary have its
 * walk attached (addTargets), then let a stopped program go on. `run` also turns memory
 * profiling on in a binary built without it, before its runtime starts.
 */
export class ExecPolicy {
  /** run: programs exec'd in the child's tree, by pid. */
  private execs = new Map<number, ExecInfo>();

  constructor(
    private mode: ExecMode,
    private registry: BinaryRegistry,
    /** Attaches walks for new Go binaries; resolves once they are attached. */
    private addTargets: (found: GoTarget[]) => Promise<void>,
    private events: ExecPolicyEvents,
  ) {}

  /** A program run's child exec'd, as read when it was stopped. */
  exec(pid: number): ExecInfo | undefined {
    return this.execs.get(pid);
  }

  /** Pids of the Go programs run's child exec'd. */
  goExecPids(): number[] {
    return [...this.execs].filter(([, e]) => e.target).map(([pid]) => pid);
  }

  onRecord(r: WalkRecord): void {
    if (r.tag !== "P" && r.tag !== "N") return;
    const heard = { execNs: r.execNs, heardNs: monotonicNs() };
    if (r.tag === "P") void this.onStoppedExec(r.pid, r.inode, heard);
    else void this.onNewExecutable(r.pid, r.inode, r.held, heard);
  }

  /** Continues a process held at its exec; one oomprof may not signal would stay stopped for good, so that is said. */
  private resumeHeld(pid: number): void {
    if (resume(pid) === "denied") {
      this.events.onWarning(
        `cannot resume pid ${pid}, held at its exec: permission denied (oomprof needs CAP_KILL for other users' processes); it stays stopped until \`kill -CONT ${pid}\``,
      );
    }
  }

  /**
   * After bpftrace died: with --hold-new-binaries, a process it stopped at exec whose N
   * record died with it would wait forever. Every stopped process whose executable oomprof
   * has not read must be one of those (any other executable's first exec is held and
   * read), so it is continued.
   */
  continueOrphanedHolds(): void {
    if (this.mode.kind !== "watch" || !this.mode.hold) return;
    for (const p of scanProcesses()) {
      if (this.registry.byInode(p.inode) || this.registry.knownNonGo(p.inode) || liveState(p.pid) !== "T") continue;
      this.events.onVerbose?.(`continuing pid ${p.pid}, held at exec by the bpftrace that died`);
      this.resumeHeld(p.pid);
    }
  }

  /** How long after its first exec a new binary was walked (the kernel's clock on both ends). */
  private sayLatency(path: string, pid: number, heard: ExecHeard): void {
    const now = monotonicNs();
    if (now === undefined || heard.heardNs === undefined) return;
    const ms = (a: bigint, b: bigint) => (Number(a - b) / 1e6).toFixed(1);
    this.events.onVerbose?.(`${path} (pid ${pid}) walked ${ms(now, heard.execNs)} ms after its exec (heard of after ${ms(heard.heardNs, heard.execNs)} ms)`);
  }

  /** run: a program exec'd in the child's tree is stopped: attach a walk if it is a new Go binary, then resume it. */
  private async onStoppedExec(pid: number, inode: number, heard: ExecHeard): Promise<void> {
    try {
      const info = await this.registry.inspect(pid, inode);
      this.execs.set(pid, info);
      if (info.target?.memProfilingDisabled && this.mode.kind === "run") {
        enableMemoryProfiling(pid, info.target, this.mode.memProfileRate);
        this.events.onWarning(
          `${info.path}: memory profiling is off in this binary (runtime/pprof is not linked in); enabled it for pid ${pid} at rate ${this.mode.memProfileRate}`,
        );
      }
      if (info.target) {
        await this.addTargets([info.target]);
        this.sayLatency(info.path, pid, heard);
      } else this.events.onVerbose?.(`exec of ${info.path} (pid ${pid}): no walk (${info.why})`);
    } catch (e) {
      this.events.onWarning(`could not attach a walk for pid ${pid}: ${(e as Error).message}`);
    } finally {
      this.resumeHeld(pid);
    }
  }

  /** watch: an executable seen for the first time; add a walk if it is Go, then resume it if it was held. */
  private async onNewExecutable(pid: number, inode: number, held: boolean, heard: ExecHeard): Promise<void> {
    try {
      if (this.registry.byInode(inode)) return;
      // A remembered non-Go executable is answered from memory (inspect checks that the
      // inode still names the same file).
      const info = await this.registry.inspect(pid, inode);
      if (info.target) {
        await this.addTargets([info.target]).then(
          () => this.sayLatency(info.path, pid, heard),
          (e) => this.events.onWarning(`could not attach a walk for ${info.path}: ${(e as Error).message}`),
        );
      }
    } finally {
      if (held) this.resumeHeld(pid);
    }
  }
}
