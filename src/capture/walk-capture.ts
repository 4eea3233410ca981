import type { MemProfileBucket } from "../gobinary/mem-profile-bucket.ts";
import { goroutineCount } from "../gobinary/runtime-layout.ts";
import type {
  CounterRecord,
  GoroutinesRecord,
  OomKillProcessRecord,
  TriggerRecord,
  VictimIdentityRecord,
  VictimRecord,
  WalkHeaderRecord,
  WalkRecord,
} from "../stream/records.ts";

/** What the probes said about one process, apart from its buckets. */
interface ProcessFacts {
  pid: number;
  /** When its first record arrived (performance.now()). */
  firstSeenMs: number;
  /** Go's own fatal out-of-memory message, when that is how it died. */
  runtimeOom?: string;
  victim?: VictimRecord;
  /** The victim's executable and times, from its own thread at the SIGKILL. */
  identity?: VictimIdentityRecord;
  trigger?: TriggerRecord;
  oomKillProcess?: OomKillProcessRecord;
  header?: WalkHeaderRecord;
  goroutinesAtDeath?: GoroutinesRecord;
  walkEnded: boolean;
  exited: boolean;
}

/** Everything the probes reported about one killed process. */
export interface ProcessCapture extends ProcessFacts {
  buckets: MemProfileBucket[];
  /** Goroutines at death as runtime.NumGoroutine would say; atMost when not every P's free list was summed. */
  goroutines?: { count: number; atMost: boolean };
  /** Every bucket on the list from head to the end was seen, each with its whole stack. */
  complete: boolean;
  /** Why the capture is incomplete, if it is. */
  gaps: string[];
}

/**
 * Accumulates records per process. Several threads of one victim may walk the same
 * buckets concurrently, so records are keyed by pid and bucket address, and
 * duplicates are harmless; completeness is judged from the list itself (a chain from the head to
 * the end), not from the order lines arrived in.
 */
export class CaptureAssembler {
  private procs = new Map<number, ProcessState>();

  add(r: WalkRecord): number | undefined {
    switch (r.tag) {
      case "V":
        this.state(r.pid).victim = r;
        return r.pid;
      case "T":
        this.state(r.pid).trigger = r;
        return r.pid;
      case "I":
        this.state(r.pid).identity ??= r;
        return r.pid;
      case "K":
        this.state(r.pid).oomKillProcess = r;
        return r.pid;
      case "H": {
        const s = this.state(r.pid);
        s.header ??= r;
        return r.pid;
      }
      case "G":
        this.state(r.pid).goroutinesAtDeath ??= r;
        return r.pid;
      case "C": {
        const s = this.state(r.pid);
        s.counters.set(r.bucket, r);
        return s.pid;
      }
      case "S": {
        const s = this.state(r.pid);
        let frames = s.stacks.get(r.bucket);
        if (!frames) s.stacks.set(r.bucket, (frames = []));
        for (let i = 0; i < 8; i++) frames[r.index + i] = r.pcs[i]!;
        return s.pid;
      }
      case "E":
        this.state(r.pid).walkEnded = true;
        return r.pid;
      case "X":
        this.state(r.pid).exited = true;
        return r.pid;
      case "O":
        this.state(r.pid).runtimeOom = r.message;
        return r.pid;
      case "P":
      case "N":
      case "R":
        return undefined;
    }
  }

  has(pid: number): boolean {
    return this.procs.has(pid);
  }

  pids(): number[] {
    return [...this.procs.keys()];
  }

  /** Forget a process once its capture has been turned into output. */
  forget(pid: number): void {
    this.procs.delete(pid);
  }

  /**
   * A snapshot of what is known about pid, with completeness worked out. Stacks the
   * probes did not deliver are taken from `mirrored` (read ahead while it lived).
   */
  capture(pid: number, mirrored?: Map<number, MemProfileBucket>): ProcessCapture {
    // Asking does not make a process known.
    const s = this.procs.get(pid) ?? newState(pid);
    const gaps: string[] = [];
    const buckets: MemProfileBucket[] = [];
    if (!s.header) gaps.push("the memory-profile walk never started (not a known Go target, or no SIGKILL delivered)");
    else {
      const seen = new Set<number>();
      let at = s.header.head;
      let missingCounters = 0;
      let missingStacks = 0;
      while (at !== 0 && !seen.has(at)) {
        seen.add(at);
        const c = s.counters.get(at);
        if (!c) {
          missingCounters++;
          break;
        }
        const frames = s.stacks.get(at) ?? [];
        let stack = frames.slice(0, c.nstk);
        const copy = mirrored?.get(at);
        if (hasGaps(stack, c.nstk) && copy && copy.stack.length === c.nstk) stack = copy.stack;
        if (hasGaps(stack, c.nstk)) missingStacks++;
        buckets.push({ address: at, size: c.size, stack: stack.filter((pc) => pc !== undefined), counts: c.counts });
        at = c.allnext;
      }
      if (missingCounters) gaps.push(`the bucket walk stopped after ${buckets.length} buckets`);
      if (missingStacks) gaps.push(`${missingStacks} buckets have partial stacks`);
      if (!missingCounters && at !== 0 && seen.has(at)) gaps.push("the bucket list loops");
    }
    const { counters: _counters, stacks: _stacks, ...facts } = s;
    return { ...facts, buckets, goroutines: s.goroutinesAtDeath && goroutineCount(s.goroutinesAtDeath), complete: gaps.length === 0, gaps };
  }

  private state(pid: number): ProcessState {
    let s = this.procs.get(pid);
    if (!s) this.procs.set(pid, (s = newState(pid)));
    return s;
  }
}

function newState(pid: number): ProcessState {
  return { pid, firstSeenMs: performance.now(), counters: new Map(), stacks: new Map(), walkEnded: false, exited: false };
}

interface ProcessState extends ProcessFacts {
  counters: Map<number, CounterRecord>;
  stacks: Map<number, number[]>;
}

/** Stack lines arrive 8 frames at a time, so a lost line leaves a hole (which Array.some would skip). */
function hasGaps(stack: number[], nstk: number): boolean {
  if (stack.length < nstk) return true;
  for (let i = 0; i < nstk; i++) if (stack[i] === undefined) return true;
  return false;
}
