import type { MemProfileBucket } from "../gobinary/mem-profile-bucket.ts";
import type { MemStatsWords } from "../gobinary/memstats-layout.ts";
import { goroutineCount } from "../gobinary/runtime-layout.ts";
import type {
  CounterRecord,
  GoroutinesRecord,
  MemStatsRecord,
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
  /** When its first and its latest record arrived (performance.now()). */
  firstSeenMs: number;
  lastSeenMs: number;
  /** Go's own fatal out-of-memory message, when that is how it died. */
  runtimeOom?: string;
  victim?: VictimRecord;
  /** The victim's executable and times, from its own thread at the SIGKILL. */
  identity?: VictimIdentityRecord;
  /** Its memory cgroup's path as its own thread read it at the SIGKILL ("/" for the root). */
  cgroupPath?: string;
  /** Its pid inside its own pid namespace (its pid when that is the host's). */
  nsPid?: number;
  /** The memory limit that binds it (its memory cgroup's or an ancestor's), in pages; undefined when unlimited. */
  limitPages?: number;
  trigger?: TriggerRecord;
  oomKillProcess?: OomKillProcessRecord;
  header?: WalkHeaderRecord;
  goroutinesAtDeath?: GoroutinesRecord;
  memStatsAtDeath?: MemStatsRecord;
  walkEnded: boolean;
  exited: boolean;
}

/** Everything the probes reported about one killed process. */
export interface ProcessCapture extends ProcessFacts {
  buckets: MemProfileBucket[];
  /** Goroutines at death as runtime.NumGoroutine would say; atMost when not every P's free list was summed. */
  goroutines?: { count: number; atMost: boolean };
  /** The runtime's memory statistics at death, where its release's layout is known. */
  memStats?: MemStatsWords;
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
    const pid = this.addRecord(r);
    if (pid !== undefined) {
      const s = this.procs.get(pid)!;
      s.lastSeenMs = performance.now();
      s.version++;
    }
    return pid;
  }

  private addRecord(r: WalkRecord): number | undefined {
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
      case "Y":
      case "Z": {
        const names = this.state(r.pid).cgroupNames;
        const level = names.get(r.level) ?? { head: "" };
        if (r.tag === "Y") level.head = r.name;
        else level.tail = r.escaped;
        names.set(r.level, level);
        return r.pid;
      }
      case "W": {
        const s = this.state(r.pid);
        s.nsPid ??= r.nsPid;
        // PAGE_COUNTER_MAX (no limit) is 2^63 bytes in pages: anything near it is no limit.
        if (r.limitPages < 2 ** 40) s.limitPages ??= r.limitPages;
        s.cgroupPath ??= cgroupPathFromNames(s.cgroupNames, r.levels, r.truncated);
        return r.pid;
      }
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
      case "M":
        this.state(r.pid).memStatsAtDeath ??= r;
        return r.pid;
      case "C": {
        const s = this.state(r.pid);
        // The while walk's second bucket of a printf, past the end of the list.
        if (r.bucket === 0) return s.pid;
        s.counters.set(r.bucket, r);
        if (r.allnext === 0) s.chainEnded = true;
        return s.pid;
      }
      case "S": {
        const s = this.state(r.pid);
        let frames = s.stacks.get(r.bucket);
        if (!frames) s.stacks.set(r.bucket, (frames = []));
        for (let i = 0; i < 8; i++) frames[r.index + i] = r.pcs[i]!;
        return s.pid;
      }
      case "B":
        // Its counters came just before it, taken from the map (capture/counter-map.ts).
        this.state(r.pid);
        return r.pid;
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
      case "A":
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
   * probes did not deliver are taken from `mirrored` (read ahead while it lived). The
   * snapshot is kept until pid's next record or a change in the mirror's count: readiness
   * checks and the report that follows them ask for the same one.
   */
  capture(pid: number, mirrored?: Map<number, MemProfileBucket>): ProcessCapture {
    // Asking does not make a process known.
    const s = this.procs.get(pid);
    if (!s) return this.assemble(newState(pid), mirrored);
    const c = s.cached;
    if (c && c.version === s.version && c.mirrored === mirrored && c.mirroredSize === mirrored?.size) return c.capture;
    const capture = this.assemble(s, mirrored);
    s.cached = { version: s.version, mirrored, mirroredSize: mirrored?.size, capture };
    return capture;
  }

  /**
   * What readiness needs to know: the capture, but with no buckets before the counter
   * chain's last bucket has arrived, since it cannot be whole until then. Assembling
   * 40,000 buckets took 25-65 ms, and run's drain asked every 50 ms while the walk
   * streamed, which slowed the stream it waited for.
   */
  status(pid: number, mirrored?: Map<number, MemProfileBucket>): ProcessCapture {
    const s = this.procs.get(pid);
    if (!s || s.chainEnded) return this.capture(pid, mirrored);
    return { ...this.facts(s), buckets: [], complete: false, gaps: ["the walk's counters are still arriving"] };
  }

  private facts(s: ProcessState): ProcessFacts & Pick<ProcessCapture, "goroutines" | "memStats"> {
    const { counters: _counters, stacks: _stacks, cgroupNames: _cgroupNames, chainEnded: _chainEnded, version: _version, cached: _cached, ...facts } = s;
    const m = s.memStatsAtDeath;
    const memStats = m && {
      heapInUse: m.heapInUse,
      mappedReady: m.mappedReady,
      stacksSys: m.stacksSys,
      inStacks: m.inStacks[0] + m.inStacks[1] + m.inStacks[2],
    };
    return { ...facts, goroutines: s.goroutinesAtDeath && goroutineCount(s.goroutinesAtDeath), memStats };
  }

  private assemble(s: ProcessState, mirrored: Map<number, MemProfileBucket> | undefined): ProcessCapture {
    const gaps: string[] = [];
    const buckets: MemProfileBucket[] = [];
    if (!s.header) gaps.push("the memory-profile walk never started (not a known Go target, or no SIGKILL delivered)");
    else {
      let at = s.header.head;
      let missingCounters = 0;
      let missingStacks = 0;
      // No Set of the addresses seen (at 100,000 buckets this loop took 120-150 ms, on
      // the way to the profile): a chain longer than the counter records received can
      // only be a loop, and is cut where it first comes back.
      let loops = false;
      while (at !== 0) {
        if (buckets.length >= s.counters.size) {
          loops = true;
          break;
        }
        const c = s.counters.get(at);
        if (!c) {
          missingCounters++;
          break;
        }
        const frames = s.stacks.get(at);
        const copy = mirrored?.get(at);
        const mirroredStack = copy && copy.stack.length === c.nstk ? copy.stack : undefined;
        let stack: number[];
        if (!frames && mirroredStack) stack = mirroredStack;
        else {
          const delivered = (frames ?? []).slice(0, c.nstk);
          // The mirror's own array where the probes sent the same stack or not all of it:
          // profiles find the locations prepared for it by that array (profile/location-table.ts).
          const gaps = hasGaps(delivered, c.nstk);
          if (mirroredStack && (gaps || sameStack(frames!, mirroredStack))) stack = mirroredStack;
          else {
            if (gaps) missingStacks++;
            stack = delivered.filter((pc) => pc !== undefined);
          }
        }
        buckets.push({ address: at, size: c.size, stack, counts: c.counts });
        at = c.allnext;
      }
      if (loops) buckets.splice(firstRepeat(buckets));
      if (missingCounters) gaps.push(`the bucket walk stopped after ${buckets.length} buckets`);
      if (missingStacks) gaps.push(`${missingStacks} buckets have partial stacks`);
      if (loops) gaps.push("the bucket list loops");
    }
    return { ...this.facts(s), buckets, complete: gaps.length === 0, gaps };
  }

  private state(pid: number): ProcessState {
    let s = this.procs.get(pid);
    if (!s) this.procs.set(pid, (s = newState(pid)));
    return s;
  }
}

function newState(pid: number): ProcessState {
  const now = performance.now();
  return {
    pid,
    firstSeenMs: now,
    lastSeenMs: now,
    counters: new Map(),
    stacks: new Map(),
    cgroupNames: new Map(),
    walkEnded: false,
    exited: false,
    chainEnded: false,
    version: 0,
  };
}

interface ProcessState extends ProcessFacts {
  counters: Map<number, CounterRecord>;
  /** A counter record with no next bucket has arrived: the chain may be whole. */
  chainEnded: boolean;
  /** Records added so far: a cached capture is good while this is unchanged. */
  version: number;
  cached?: { version: number; mirrored: Map<number, MemProfileBucket> | undefined; mirroredSize: number | undefined; capture: ProcessCapture };
  stacks: Map<number, number[]>;
  /** Y and Z records by level, leaf first, until the W record closes them. */
  cgroupNames: Map<number, { head: string; tail?: string }>;
}

/** A name's first 63 bytes come as text (str), the rest as bpftrace's %r escapes (buf). */
const NAME_HEAD_BYTES = 63;

/**
 * The path from the Y/Z records: leaf first in the records, root first in the path. A
 * tail counts only after a full head (for a shorter name it is whatever followed it in
 * memory), up to its first NUL. Undefined if a level is missing.
 */
export function cgroupPathFromNames(names: ReadonlyMap<number, { head: string; tail?: string }>, levels: number, truncated: boolean): string | undefined {
  const parts: string[] = [];
  for (let level = levels - 1; level >= 0; level--) {
    const n = names.get(level);
    if (!n) return undefined;
    const full = Buffer.byteLength(n.head) >= NAME_HEAD_BYTES && n.tail !== undefined;
    parts.push(full ? n.head + unescapeBufText(n.tail!) : n.head);
  }
  return (truncated ? "/..." : "") + "/" + parts.join("/");
}

/** bpftrace's %r: printable bytes as themselves, others as \xNN; cut at the first NUL. */
function unescapeBufText(escaped: string): string {
  const bytes: number[] = [];
  for (let i = 0; i < escaped.length; i++) {
    const hex = escaped[i] === "\\" && escaped[i + 1] === "x" ? /^[0-9a-f]{2}$/i.exec(escaped.slice(i + 2, i + 4)) : null;
    const b = hex ? parseInt(hex[0], 16) : escaped.charCodeAt(i);
    if (b === 0) break;
    bytes.push(b & 0xff);
    if (hex) i += 3;
  }
  return Buffer.from(bytes).toString("utf8");
}

/** Stack lines arrive 8 frames at a time, so a lost line leaves a hole (which Array.some would skip). */
function sameStack(frames: number[], stack: number[]): boolean {
  if (frames.length < stack.length) return false;
  for (let i = 0; i < stack.length; i++) if (frames[i] !== stack[i]) return false;
  return true;
}

/** Where a looping chain first comes back to a bucket it has passed. */
function firstRepeat(buckets: MemProfileBucket[]): number {
  const seen = new Set<number>();
  for (let i = 0; i < buckets.length; i++) {
    if (seen.has(buckets[i]!.address)) return i;
    seen.add(buckets[i]!.address);
  }
  return buckets.length;
}

function hasGaps(stack: number[], nstk: number): boolean {
  if (stack.length < nstk) return true;
  for (let i = 0; i < nstk; i++) if (stack[i] === undefined) return true;
  return false;
}
