import { appendFileSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { config } from "../config.ts";
import { UserError } from "../errors.ts";
import { dieWithParent } from "../process/parent-death.ts";
import { parseBpftraceLine } from "./bpftrace-json.ts";
import { parseRecord, type WalkRecord } from "./records.ts";

export interface SessionCallbacks {
  onRecord(record: WalkRecord): void;
  /** Lines bpftrace reported lost: a capture that overlaps them is incomplete. */
  onLostEvents?(count: number): void;
  onHelperError?(message: string): void;
  /** A printf line that is not a valid record: a bug in a template, worth surfacing. */
  onBadRecord?(line: string, why: string): void;
}

export interface SessionOptions {
  bpftracePath: string;
  script: string;
  /** Pass --unsafe (the script stops processes with signal()). */
  unsafe?: boolean;
  /** Per-CPU perf buffer pages (0.17-0.18) or ring buffer pages (0.19+). */
  bufferPages?: number;
  /** How long to wait for the probes to attach; the verifier can take seconds on big loops. */
  attachTimeoutMs?: number;
  /**
   * The script ends with the canary probe for this nonce: `attached` then resolves only
   * when the canary fires, which proves every probe is loaded and attached.
   */
  canaryNonce?: number;
}

/**
 * One running bpftrace: writes the script to a private temp file, starts bpftrace
 * with `-f json`, resolves `attached` once every probe is in place, and feeds each
 * parsed record to the callbacks in order.
 */
export class BpftraceSession {
  readonly attached: Promise<number>;
  readonly exited: Promise<number>;
  lostEvents = 0;
  private proc: ReturnType<typeof Bun.spawn>;
  private dir: string;
  private stderrText = "";
  private onCanary: () => void = () => {};

  constructor(
    private opts: SessionOptions,
    private cb: SessionCallbacks,
  ) {
    this.dir = mkdtempSync(join(tmpdir(), "oomprof-"));
    const scriptPath = join(this.dir, "oomprof.bt");
    writeFileSync(scriptPath, opts.script, { mode: 0o600 });
    const env: Record<string, string> = { ...process.env } as Record<string, string>;
    if (opts.bufferPages) env.BPFTRACE_PERF_RB_PAGES = String(opts.bufferPages);
    // Every symbol bound at load, not at its first call: the first calls of bpftrace's
    // output code come at the first kill, and a lazy lookup walks every library's symbol
    // tables, LLVM's and Clang's too, which process/pageout.ts has paged out by then.
    // On 0.27, run's kill → first record went from 9-13 ms to 2-6 ms. LD_BIND_NOW set
    // empty (which glibc reads as unset) keeps lazy binding, should a bpftrace build fail
    // to load with every symbol bound.
    env.LD_BIND_NOW ??= "1";
    this.proc = Bun.spawn(dieWithParent([opts.bpftracePath, "-f", "json", ...(opts.unsafe ? ["--unsafe"] : []), scriptPath]), {
      stdout: "pipe",
      stderr: "pipe",
      stdin: "ignore",
      env,
    });
    let resolveAttached!: (n: number) => void;
    let rejectAttached!: (e: Error) => void;
    this.attached = new Promise((res, rej) => {
      resolveAttached = res;
      rejectAttached = rej;
    });
    // Observed so an early failure never surfaces as an unhandled rejection.
    this.attached.catch(() => {});
    const timeout = setTimeout(() => {
      rejectAttached(new UserError(`bpftrace did not attach its probes within ${(opts.attachTimeoutMs ?? 60000) / 1000} s`));
      this.stop();
    }, opts.attachTimeoutMs ?? 60000);
    void this.readStderr();
    let probeCount = 0;
    let canaryTimer: ReturnType<typeof setInterval> | undefined;
    this.onCanary = () => {
      clearInterval(canaryTimer);
      clearTimeout(timeout);
      resolveAttached(probeCount);
    };
    const stdoutDone = this.readStdout((probes) => {
      probeCount = probes;
      if (opts.canaryNonce === undefined) {
        clearTimeout(timeout);
        resolveAttached(probes);
        return;
      }
      // Poke the canary (a getppid tracepoint filtered on our pid) until it answers.
      canaryTimer = setInterval(() => void process.ppid, 5);
    });
    this.exited = Promise.all([this.proc.exited, stdoutDone]).then(([code]) => {
      clearTimeout(timeout);
      clearInterval(canaryTimer);
      rejectAttached(new UserError(`bpftrace exited before attaching its probes: ${this.errorSummary() || `exit status ${code}`}`));
      rmSync(this.dir, { recursive: true, force: true });
      return code;
    });
  }

  get pid(): number {
    return this.proc.pid;
  }

  /** bpftrace's stderr without its routine noise, for error messages. */
  errorSummary(): string {
    const lines = this.stderrText.split("\n").filter((l) => l.trim() && !/RLIMIT_MEMLOCK|available_filter_functions/.test(l));
    // Errors first: newer bpftrace prefixes warnings with the script position.
    const errors = lines.filter((l) => /ERROR|rror:/.test(l));
    return (errors.length ? errors : lines.filter((l) => !/WARNING|^\s/.test(l))).slice(0, 3).join(" | ");
  }

  /** Asks bpftrace to exit (SIGINT), and makes sure with SIGKILL if it has not within 2 s. */
  stop(): void {
    try {
      this.proc.kill("SIGINT");
      // A stopped bpftrace would never see the SIGINT.
      this.proc.kill("SIGCONT");
    } catch {
      /* already gone */
    }
    const force = setTimeout(() => {
      try {
        this.proc.kill("SIGKILL");
      } catch {
        /* already gone */
      }
    }, 2000);
    void this.exited.then(() => clearTimeout(force));
  }

  private async readStderr(): Promise<void> {
    const stream = this.proc.stderr as ReadableStream<Uint8Array>;
    const dec = new TextDecoder();
    for await (const chunk of stream) {
      if (this.stderrText.length < 64 * 1024) this.stderrText += dec.decode(chunk, { stream: true });
    }
  }

  private async readStdout(onAttached: (probes: number) => void): Promise<void> {
    const stream = this.proc.stdout as ReadableStream<Uint8Array>;
    const dec = new TextDecoder();
    let buf = "";
    for await (const chunk of stream) {
      buf += dec.decode(chunk, { stream: true });
      let nl: number;
      let start = 0;
      while ((nl = buf.indexOf("\n", start)) >= 0) {
        const line = buf.slice(start, nl);
        start = nl + 1;
        if (line.trim()) this.handleLine(line, onAttached);
      }
      buf = buf.slice(start);
    }
    if (buf.trim()) this.handleLine(buf, onAttached);
  }

  private handleLine(line: string, onAttached: (probes: number) => void): void {
    // OOMPROF_RECORD_STREAM keeps the raw stream, for debugging and for test fixtures.
    const record = config().recordStream;
    if (record) appendFileSync(record, `${line}\n`);
    const msg = parseBpftraceLine(line);
    switch (msg.type) {
      case "attached_probes":
        onAttached(msg.data.probes);
        return;
      case "printf":
        // One printf call may carry several records if a template prints more than one line.
        for (const text of msg.data.split("\n")) {
          if (!text) continue;
          try {
            const record = parseRecord(text);
            if (record.tag === "R") {
              if (record.nonce === this.opts.canaryNonce) this.onCanary();
              continue;
            }
            this.cb.onRecord(record);
          } catch (e) {
            this.cb.onBadRecord?.(text, (e as Error).message);
          }
        }
        return;
      case "lost_events": {
        const n = Number(msg.data.events);
        this.lostEvents += n;
        this.cb.onLostEvents?.(n);
        return;
      }
      case "helper_error":
        this.cb.onHelperError?.(msg.msg ?? JSON.stringify(msg));
        return;
      default:
        return;
    }
  }
}
