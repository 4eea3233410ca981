import { mkdtempSync, readlinkSync, rmSync, statSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { versionAtLeast, type BpftraceHost } from "../probes/bpftrace-host.ts";
import { bucketCapacity, bufferPages } from "../probes/buffer-size.ts";
import { generateScript } from "../probes/generate.ts";
import { WHILE_DEFAULTS, type WalkLimits } from "../probes/walk-templates.ts";
import { liveState, resume } from "../process/liveness.ts";
import { pageOutCompiler } from "../process/pageout.ts";
import { BpftraceSession } from "../stream/bpftrace-session.ts";
import type { WalkRecord } from "../stream/records.ts";
import { BadBinaryError } from "../errors.ts";
import { enableMemoryProfiling } from "../gobinary/enable-profiling.ts";
import { discoverGoTarget, type GoTarget } from "../gobinary/go-target.ts";
import { scanProcesses } from "../process/scan.ts";
import { CaptureAssembler, type ProcessCapture } from "./walk-capture.ts";

export interface ProbeSessionEvents {
  onRecord?(r: WalkRecord, pid: number | undefined): void;
  onWarning(message: string): void;
  onVerbose?(message: string): void;
  /** A Go binary was found after start; its walk is attached. */
  onTargetAdded?(target: GoTarget): void;
  /** The bpftrace process ended while oomprof still needed it. */
  onSessionLost?(why: string): void;
}

/** What oomprof knows about a program seen exec'd, for the kill report. */
export interface ExecInfo {
  path: string;
  target?: GoTarget;
  why?: string;
}

export type SessionMode =
  /** run: stop programs exec'd under rootPid until their walk is attached. */
  | { kind: "run"; rootPid: number; memProfileRate: number }
  /** watch: hear about every new executable on the host; hold: stop each until it is read. */
  | { kind: "watch"; hold: boolean };

/** How long a replaced bpftrace may keep running, so a walk in progress in it can finish. */
const RETIRE_GRACE_MS = 5000;
/** How long a replaced bpftrace's output is read before it is judged idle. */
const RETIRE_SETTLE_MS = 300;

/** watch stops walking a binary that has had no process for this long. */
const PRUNE_AFTER_MS = Number(process.env.OOMPROF_PRUNE_AFTER_MS) || 60_000;

/** Non-Go executables remembered so each is read once; bounded so churn cannot grow it. */
const MAX_NON_GO_REMEMBERED = 4096;

/**
 * The bpftrace process behind one oomprof command and the Go binaries it walks.
 * When a new Go binary appears, a new bpftrace with every walk is started and the
 * old one is stopped only once the new one is attached, so there is no moment
 * without probes; records from the overlap are de-duplicated by the assembler.
 */
export class ProbeSessions {
  readonly assembler = new CaptureAssembler();
  /** Every target by id; a hole where one was pruned (ids in records stay valid). */
  private byId: Array<GoTarget | undefined> = [];
  /** When each target last had a live process (watch prunes those without). */
  private lastLive = new Map<GoTarget, number>();
  /** run: programs exec'd in the child's tree, by pid. */
  readonly execs = new Map<number, ExecInfo>();
  readonly firstSeenMs = new Map<number, number>();
  walk = "";
  private current: BpftraceSession | undefined;
  /** Every bpftrace still running: the current one, retiring ones, one still attaching. */
  private live = new Set<BpftraceSession>();
  private walking = new Map<BpftraceSession, Set<number>>();
  private retiredLost = 0;
  private stopping = false;
  /** Non-Go executables by inode, with the size and mtime that tell a reused inode apart. */
  private nonGo = new Map<number, { why: string; stamp: string }>();
  private rebuild: Promise<void> = Promise.resolve();
  /** A relaunch queued behind the current one and not started yet. */
  private queuedLaunch: Promise<void> | undefined;
  private sessionCount = 0;
  private linkDir: string | undefined;
  private limits: Partial<WalkLimits> = {};
  /** Buckets the output buffer is sized for; grown from what the mirror sees. */
  private expectedBuckets: number;
  private capacity = 0;
  private pages = 0;
  private growing = false;

  constructor(
    private host: BpftraceHost,
    private mode: SessionMode,
    private events: ProbeSessionEvents,
  ) {
    // A process can make its stacks and die within a second, before the mirror sees them
    // and the buffer grows. 0.19+ share one ring buffer, so it starts large: 32 MiB (about
    // 100,000 buckets) for `run`, whose programs may be born to die; 16 MiB (about 50,000)
    // for `watch`, which mostly meets long-lived services the mirror sizes it for, and
    // whose resident memory counts (bpftrace maps the ring twice: RSS shows it doubled).
    // 0.17-0.18 have one buffer per CPU, so they start at 20,000 buckets' worth.
    this.expectedBuckets = !versionAtLeast(host.version, 0, 19) ? 20_000 : mode.kind === "run" ? 90_000 : 45_000;
  }

  get lostEvents(): number {
    let n = this.retiredLost;
    for (const s of this.live) n += s.lostEvents;
    return n;
  }

  /** The binaries walked now. */
  get targets(): GoTarget[] {
    return this.byId.filter((t): t is GoTarget => t !== undefined);
  }

  targetById(id: number): GoTarget | undefined {
    return this.byId[id];
  }

  /**
   * Everything the probes will say about a killed process has arrived: its walk is whole,
   * and so is its goroutine count where its binary has one (a probe of its own, whose
   * line may come after the walk's end).
   */
  captureWhole(c: ProcessCapture): boolean {
    if (!c.walkEnded || !c.complete) return false;
    const counted = c.header !== undefined && this.targetById(c.header.targetId)?.goroutines !== undefined;
    return !counted || c.goroutines !== undefined;
  }

  targetByInode(inode: number): GoTarget | undefined {
    return this.byId.find((t) => t?.inode === inode);
  }

  /**
   * watch: stops walking binaries that have had no process for PRUNE_AFTER_MS, so a host
   * that builds and runs Go binaries all day (CI) does not grow the table, the open
   * descriptors, or keep deleted binaries' blocks. Their rows go with one relaunch, which
   * also forgets the executables seen, so a binary that runs again is read again.
   */
  prune(liveInodes: Set<number>, now = performance.now()): void {
    const gone: GoTarget[] = [];
    this.byId.forEach((t, id) => {
      if (!t) return;
      if (liveInodes.has(t.inode) || !this.lastLive.has(t)) this.lastLive.set(t, now);
      else if (now - this.lastLive.get(t)! > PRUNE_AFTER_MS) {
        gone.push(t);
        this.byId[id] = undefined;
        this.lastLive.delete(t);
      }
    });
    if (!gone.length) return;
    this.events.onVerbose?.(`no longer walking ${gone.length} binaries without processes: ${gone.map((t) => t.path).join(", ")}`);
    // Released once the bpftrace that still has their rows is replaced (a kill meanwhile
    // can still be symbolized through them).
    this.relaunch()
      .then(() => new Promise((r) => setTimeout(r, RETIRE_GRACE_MS)))
      .catch(() => undefined)
      .finally(() => gone.forEach((t) => t.release()));
  }

  /** Starts bpftrace with the initial targets and resolves with its probe count once attached. */
  start(initial: GoTarget[]): Promise<number> {
    for (const t of initial) if (!this.targetByInode(t.inode) && this.walkable(t)) this.byId.push(t);
    return this.launch();
  }

  /** Adds walks for Go binaries found after start, and resolves once they are attached. */
  addTargets(found: GoTarget[]): Promise<void> {
    for (const t of found) if (!this.walkable(t)) this.events.onTargetAdded?.(t);
    const fresh = found.filter((t) => this.walkable(t) && !this.targetByInode(t.inode));
    if (!fresh.length) return this.rebuild;
    this.byId.push(...fresh);
    return this.relaunch().then(() => {
      for (const t of fresh) {
        this.events.onVerbose?.(`walk attached for ${t.path} (${t.buildInfo.goVersion})`);
        this.events.onTargetAdded?.(t);
      }
    });
  }

  /**
   * Starts a bpftrace with every known target once the current rebuild is done. Rebuilds
   * are serialised, and one that has not started yet already carries every target added
   * since, so callers share it: ten new binaries at once cost one relaunch, not ten.
   */
  private relaunch(): Promise<void> {
    if (this.queuedLaunch) return this.queuedLaunch;
    const next = this.rebuild
      .catch(() => undefined)
      .then(() => {
        this.queuedLaunch = undefined;
        return this.launch();
      })
      .then(() => undefined);
    this.queuedLaunch = next;
    this.rebuild = next;
    return next;
  }

  /** watch cannot turn profiling on, so a binary without it has nothing to walk. */
  private walkable(t: GoTarget): boolean {
    return this.mode.kind === "run" || !t.memProfilingDisabled;
  }

  /**
   * Starts bpftrace again with every known walk (after it died). With --hold-new-binaries,
   * a process it stopped at exec whose N record died with it would wait forever: every
   * stopped process whose executable oomprof has not read must be one of those (any other
   * executable's first exec is held and read), so it is continued.
   */
  restart(): Promise<number> {
    if (this.mode.kind === "watch" && this.mode.hold) {
      for (const p of scanProcesses()) {
        if (this.targetByInode(p.inode) || this.nonGo.has(p.inode) || liveState(p.pid) !== "T") continue;
        this.events.onVerbose?.(`continuing pid ${p.pid}, held at exec by the bpftrace that died`);
        resume(p.pid);
      }
    }
    return this.launch();
  }

  stop(): Promise<unknown> {
    this.stopping = true;
    if (this.linkDir) rmSync(this.linkDir, { recursive: true, force: true });
    const all = [...this.live];
    for (const s of all) s.stop();
    return Promise.race([Promise.all(all.map((s) => s.exited)), new Promise((r) => setTimeout(r, 2500))]);
  }

  /**
   * The walk must fit the output buffer, which is sized when bpftrace starts. When the
   * mirror sees more buckets than the current buffer holds, start a bigger one.
   */
  ensureCapacity(buckets: number): void {
    if (buckets <= this.capacity || this.growing) return;
    const expected = Math.ceil(buckets * 1.5);
    // At the size cap a restart would buy nothing.
    if (bufferPages(this.host.version, expected) <= this.pages) return;
    this.expectedBuckets = expected;
    this.growing = true;
    this.relaunch()
      .then(() => this.events.onVerbose?.(`output buffer grown for ${buckets} buckets (${this.pages} pages)`))
      .catch((e) => this.events.onWarning(`could not grow the output buffer: ${(e as Error).message}`))
      .finally(() => {
        this.growing = false;
      });
  }

  private async launch(): Promise<number> {
    for (;;) {
      try {
        return await this.launchOnce();
      } catch (e) {
        // An older or stricter verifier than the one these bounds were measured on:
        // halve the loop bounds and try again rather than capture nothing.
        const msg = (e as Error).message;
        const current = { ...WHILE_DEFAULTS, ...this.limits };
        if (!/Error loading|too large|processed \d+ insns/i.test(msg) || current.counterIterations <= 250) throw e;
        this.limits = { counterIterations: Math.floor(current.counterIterations / 2), stackIterations: Math.max(50, Math.floor(current.stackIterations / 2)) };
        this.events.onWarning(`the kernel's verifier rejected the walk; retrying with ${this.limits.counterIterations} buckets per firing`);
      }
    }
  }

  /**
   * Uprobes name the binary by path, and a path is text a user controls; so each target
   * gets a symlink with a plain name in a private directory. Only binaries still on disk
   * as the same file get one (a uprobe that cannot attach would stop bpftrace).
   */
  private uprobeLinks(): Map<number, string> {
    this.linkDir ??= mkdtempSync(join(tmpdir(), "oomprof-bin-"));
    const links = new Map<number, string>();
    this.byId.forEach((t, id) => {
      if (!t) return;
      const link = join(this.linkDir!, `t${id}`);
      try {
        if (statSync(t.path).ino !== t.inode) return;
        rmSync(link, { force: true });
        symlinkSync(t.path, link);
        if (/^[A-Za-z0-9_/.-]+$/.test(link)) links.set(id, link);
      } catch {
        /* gone or replaced: no uprobes for it */
      }
    });
    return links;
  }

  private async launchOnce(): Promise<number> {
    const pages = bufferPages(this.host.version, this.expectedBuckets);
    const script = generateScript({
      host: this.host,
      targets: this.byId,
      victims: true,
      // A known binary is still stopped at exec when its memory profiling is off: `run`
      // turns it on before the runtime starts.
      followExecs: this.mode.kind === "run" ? { rootPid: this.mode.rootPid, knownInodes: this.targets.filter((t) => !t.memProfilingDisabled).map((t) => t.inode) } : undefined,
      notifyExecs: this.mode.kind === "watch" ? (this.mode.hold ? "hold" : true) : undefined,
      canary: { pid: process.pid, nonce: ++this.sessionCount },
      limits: this.limits,
      uprobeLinks: this.uprobeLinks(),
    });
    this.walk = script.walk;
    const session = new BpftraceSession(
      { bpftracePath: this.host.path, script: script.text, unsafe: script.unsafe, canaryNonce: this.sessionCount, bufferPages: pages },
      {
        onRecord: (r) => {
          this.noteWalk(session, r);
          this.handle(r);
        },
        onBadRecord: (line, why) => this.events.onWarning(`unparseable probe record (${why}): ${line.slice(0, 120)}`),
        onHelperError: (msg) => this.events.onVerbose?.(`bpftrace helper error: ${msg}`),
      },
    );
    this.live.add(session);
    void session.exited.then(() => {
      this.live.delete(session);
      if (!this.stopping && this.current === session) this.events.onSessionLost?.(session.errorSummary() || "bpftrace exited");
    });
    if (this.stopping) session.stop();
    const probes = await session.attached;
    const old = this.current;
    this.current = session;
    this.pages = pages;
    this.capacity = bucketCapacity(this.host.version, pages);
    if (old) this.retire(old, session);
    else this.dropCompilerPages(session);
    return probes;
  }

  /** Walks each bpftrace has started (H) and not yet ended (E, or X: the process is gone). */
  private noteWalk(session: BpftraceSession, r: WalkRecord): void {
    if (r.tag !== "H" && r.tag !== "E" && r.tag !== "X") return;
    let walking = this.walking.get(session);
    if (!walking) this.walking.set(session, (walking = new Set()));
    if (r.tag === "H") walking.add(r.pid);
    else walking.delete(r.pid);
  }

  /**
   * Stops a replaced bpftrace. A walk it started before its successor attached would not
   * start again there (each thread's SIGKILL fires once), so it is let finish, for up to
   * RETIRE_GRACE_MS; with none under way it stops at once, so bpftraces do not pile up
   * (each holds ~40 MB, and its ring buffer) when new binaries keep appearing.
   */
  private retire(old: BpftraceSession, successor: BpftraceSession): void {
    const stop = () => {
      old.stop();
      void old.exited.then(() => {
        this.walking.delete(old);
        // Count what it lost to the end.
        this.retiredLost += old.lostEvents;
        // Only now: pages the old bpftrace also maps are not paged out.
        this.dropCompilerPages(successor);
      });
    };
    // First let records already in its buffers arrive: a walk's H may be in flight.
    setTimeout(() => {
      const started = [...(this.walking.get(old) ?? [])];
      if (!started.length) return stop();
      const deadline = performance.now() + RETIRE_GRACE_MS;
      const timer = setInterval(() => {
        const walking = this.walking.get(old);
        if (performance.now() < deadline && started.some((pid) => walking?.has(pid))) return;
        clearInterval(timer);
        stop();
      }, 50);
    }, RETIRE_SETTLE_MS);
  }

  /** An attached bpftrace needs its compiler no more: give those pages back (see pageout.ts). */
  private dropCompilerPages(session: BpftraceSession): void {
    if (this.stopping || this.current !== session || process.env.OOMPROF_PAGEOUT === "0") return;
    const r = pageOutCompiler(session.pid);
    if ("error" in r) this.events.onVerbose?.(`bpftrace's compiler pages stay resident: ${r.error}`);
    else this.events.onVerbose?.(`paged out ${Math.round(r.bytes / 2 ** 20)} MiB of bpftrace's compiler libraries (LLVM, Clang)`);
  }

  private handle(r: WalkRecord): void {
    const pid = this.assembler.add(r);
    if (pid !== undefined && !this.firstSeenMs.has(pid)) this.firstSeenMs.set(pid, performance.now());
    if (r.tag === "P") void this.onStoppedExec(r.pid, r.inode);
    if (r.tag === "N") void this.onNewExecutable(r.pid, r.inode, r.held);
    this.events.onRecord?.(r, pid);
  }

  /** Reads a process's executable; a Go target, or why not. */
  async inspect(pid: number, inode: number): Promise<ExecInfo> {
    let path = `/proc/${pid}/exe`;
    try {
      path = readlinkSync(path).replace(/ \(deleted\)$/, "");
    } catch {
      /* already gone */
    }
    const known = this.targetByInode(inode);
    if (known) return { path, target: known };
    let st;
    try {
      st = statSync(`/proc/${pid}/exe`);
    } catch {
      return { path, why: "exited before it could be read" };
    }
    if (st.ino !== inode) return { path, why: "exec'd again before it could be read" };
    // A target's inode cannot be reused while oomprof holds its descriptor, but a non-Go
    // executable's can once it is deleted: size and mtime tell a new file apart (CI hosts
    // build and delete binaries all day, and a new Go binary may get an old number).
    const stamp = `${st.size}:${st.mtimeMs}`;
    const remembered = this.nonGo.get(inode);
    if (remembered?.stamp === stamp) return { path, why: remembered.why };
    try {
      // Read through /proc so a binary replaced or deleted on disk is still the one that runs.
      const target = await discoverGoTarget(`/proc/${pid}/exe`);
      target.path = path;
      return { path, target };
    } catch (e) {
      const why = e instanceof BadBinaryError ? e.message.replace(`/proc/${pid}/exe: `, "") : (e as Error).message;
      if (this.nonGo.size >= MAX_NON_GO_REMEMBERED) this.nonGo.clear();
      this.nonGo.set(inode, { why, stamp });
      return { path, why };
    } finally {
      // The whole binary was read; let a long-running watch give that memory back now
      // rather than whenever the collector next runs.
      Bun.gc(true);
    }
  }

  /** run: a program exec'd in the child's tree is stopped: attach a walk if it is a new Go binary, then resume it. */
  private async onStoppedExec(pid: number, inode: number): Promise<void> {
    try {
      const info = await this.inspect(pid, inode);
      this.execs.set(pid, info);
      if (info.target?.memProfilingDisabled && this.mode.kind === "run") {
        enableMemoryProfiling(pid, info.target, this.mode.memProfileRate);
        this.events.onWarning(`${info.path}: memory profiling is off in this binary (runtime/pprof is not linked in); enabled it for pid ${pid} at rate ${this.mode.memProfileRate}`);
      }
      if (info.target) await this.addTargets([info.target]);
      else this.events.onVerbose?.(`exec of ${info.path} (pid ${pid}): no walk (${info.why})`);
    } catch (e) {
      this.events.onWarning(`could not attach a walk for pid ${pid}: ${(e as Error).message}`);
    } finally {
      resume(pid);
    }
  }

  /** watch: an executable seen for the first time; add a walk if it is Go, then resume it if it was held. */
  private async onNewExecutable(pid: number, inode: number, held: boolean): Promise<void> {
    try {
      if (this.targetByInode(inode)) return;
      // A remembered non-Go executable is answered from memory (inspect checks that the
      // inode still names the same file).
      const info = await this.inspect(pid, inode);
      if (info.target) await this.addTargets([info.target]).catch((e) => this.events.onWarning(`could not attach a walk for ${info.path}: ${(e as Error).message}`));
    } finally {
      if (held) resume(pid);
    }
  }
}
