import { WALK_COUNT_WORDS } from "../gobinary/bucket-layout.ts";

/**
 * The text records the generated script prints (see probes/README.md), parsed
 * strictly: a line that does not match its tag's shape is rejected, not guessed at.
 * Hand-written rather than zod because a capture can carry 100,000+ lines and this
 * runs between the kill and the profile on disk.
 */

/** The OOM killer's pick, from oom:mark_victim; the counters and comm are null where the kernel's tracepoint has only pid (a U record). */
export interface VictimRecord {
  tag: "V";
  pid: number;
  triggerPid: number;
  totalVmKb: number | null;
  anonRssKb: number | null;
  fileRssKb: number | null;
  shmemRssKb: number | null;
  oomScoreAdj: number | null;
  comm: string | null;
}
export interface TriggerRecord {
  tag: "T";
  pid: number;
  triggerComm: string;
}
export interface OomKillProcessRecord {
  tag: "K";
  pid: number;
  triggerPid: number;
  memcgConstrained: boolean;
  totalPages: number;
}
export interface WalkHeaderRecord {
  tag: "H";
  pid: number;
  targetId: number;
  bias: number;
  head: number;
  memProfileRate: number;
  cycle: number;
}
/** runtime.gcount()'s inputs at death; procs is len(allp), of which at most MAX_PROCS_SUMMED were summed. */
export interface GoroutinesRecord {
  tag: "G";
  pid: number;
  allglen: number;
  schedFree: number;
  ngsys: number;
  procsFree: number;
  procs: number;
}
/** The runtime's memory statistics at death (memstats-layout.ts): one inStacks per heapStats generation. */
export interface MemStatsRecord {
  tag: "M";
  pid: number;
  heapInUse: number;
  mappedReady: number;
  stacksSys: number;
  inStacks: [number, number, number];
}
/**
 * One bucket: header fields and its memRecord's counts (active, then future[0..2]), each
 * {allocs, frees}: Go 1.27's layout whatever the binary's (see WALK_COUNT_WORDS).
 */
export interface CounterRecord {
  tag: "C";
  pid: number;
  bucket: number;
  allnext: number;
  nstk: number;
  size: number;
  counts: number[];
}
/** The walk's counters are in its map (0.27+, probes/walk/counter-map.bt): `written` buckets' worth. */
export interface CountersInMapRecord {
  tag: "B";
  pid: number;
  written: number;
}
export interface StackRecord {
  tag: "S";
  pid: number;
  bucket: number;
  index: number;
  pcs: number[];
}
export interface WalkEndRecord {
  tag: "E";
  pid: number;
}
export interface ExitRecord {
  tag: "X";
  pid: number;
}
export interface RuntimeOomRecord {
  tag: "O";
  pid: number;
  message: string;
}
export interface ReadyRecord {
  tag: "R";
  nonce: number;
}
export interface ExecRecord {
  tag: "P";
  pid: number;
  inode: number;
  /** When it exec'd: the kernel's monotonic clock (bpftrace's nsecs). */
  execNs: bigint;
}
/** watch: a new process of a binary oomprof walks. */
export interface WalkedExecRecord {
  tag: "A";
  pid: number;
}
export interface NewExecutableRecord {
  tag: "N";
  pid: number;
  inode: number;
  held: boolean;
  /** When it exec'd: the kernel's monotonic clock (bpftrace's nsecs). */
  execNs: bigint;
}

/** What an OOM victim's own thread said of it as it took the SIGKILL. */
export interface VictimIdentityRecord {
  tag: "I";
  pid: number;
  /** The inode of its executable. */
  inode: number;
  /** When it started and when it was killed: the kernel's monotonic clock, in ns. */
  startNs: bigint;
  killNs: bigint;
}

/** One level of the victim's memory cgroup path (level 0 is the leaf): a name, or its first 63 bytes. */
export interface CgroupNameRecord {
  tag: "Y";
  pid: number;
  level: number;
  name: string;
}
/** The rest of a long cgroup name, bytes 63 to 126, as bpftrace's %r escapes them (kept only after a full head). */
export interface CgroupNameTailRecord {
  tag: "Z";
  pid: number;
  level: number;
  escaped: string;
}
/** After the Y records: how many levels, whether the path went on past them, the pid in its own pid namespace, and the binding memory limit in pages. */
export interface VictimNamespaceRecord {
  tag: "W";
  pid: number;
  levels: number;
  truncated: boolean;
  nsPid: number;
  /** The smallest memory.max of its memory cgroup and their ancestors, in pages (huge when there is none). */
  limitPages: number;
}

export type WalkRecord =
  | CountersInMapRecord
  | VictimRecord
  | VictimIdentityRecord
  | CgroupNameRecord
  | CgroupNameTailRecord
  | VictimNamespaceRecord
  | TriggerRecord
  | OomKillProcessRecord
  | WalkHeaderRecord
  | GoroutinesRecord
  | MemStatsRecord
  | CounterRecord
  | StackRecord
  | WalkEndRecord
  | ExitRecord
  | ExecRecord
  | NewExecutableRecord
  | WalkedExecRecord
  | ReadyRecord
  | RuntimeOomRecord;

const DEC = /^-?\d+$/;
const HEX = /^[0-9a-f]+$/;

function dec(s: string | undefined): number {
  if (s === undefined || !DEC.test(s)) throw new Error(`expected a decimal number, got ${JSON.stringify(s)}`);
  return Number(s);
}
/** A nanosecond timestamp, past 2^53: kept exact. */
function nanos(s: string): bigint {
  if (!DEC.test(s) || s.length > 20) throw new Error(`expected nanoseconds, got ${JSON.stringify(s)}`);
  return BigInt(s);
}
function hex(s: string | undefined): number {
  if (s === undefined || !HEX.test(s) || s.length > 16) throw new Error(`expected a hex address, got ${JSON.stringify(s)}`);
  return parseInt(s, 16);
}
/** Text after the first n space-separated fields (a comm may itself contain spaces). */
function rest(line: string, n: number): string {
  let at = 0;
  for (let i = 0; i < n; i++) {
    at = line.indexOf(" ", at);
    if (at < 0) return "";
    at++;
  }
  return line.slice(at);
}

/** Parses one record line (without its trailing newline). Throws on malformed input. */
export function parseRecord(text: string): WalkRecord {
  const line = text.endsWith("\n") ? text.slice(0, -1) : text;
  const f = line.split(" ");
  const need = (n: number) => {
    if (f.length !== n) throw new Error(`record ${f[0]} has ${f.length} fields, expected ${n}`);
  };
  switch (f[0]) {
    case "V":
      if (f.length < 9) throw new Error("short V record");
      return {
        tag: "V",
        pid: dec(f[1]),
        triggerPid: dec(f[2]),
        totalVmKb: dec(f[3]),
        anonRssKb: dec(f[4]),
        fileRssKb: dec(f[5]),
        shmemRssKb: dec(f[6]),
        oomScoreAdj: dec(f[7]),
        comm: rest(line, 8),
      };
    case "U":
      need(3);
      return {
        tag: "V",
        pid: dec(f[1]),
        triggerPid: dec(f[2]),
        totalVmKb: null,
        anonRssKb: null,
        fileRssKb: null,
        shmemRssKb: null,
        oomScoreAdj: null,
        comm: null,
      };
    case "T":
      if (f.length < 3) throw new Error("short T record");
      return { tag: "T", pid: dec(f[1]), triggerComm: rest(line, 2) };
    case "K":
      need(5);
      return { tag: "K", pid: dec(f[1]), triggerPid: dec(f[2]), memcgConstrained: dec(f[3]) !== 0, totalPages: dec(f[4]) };
    case "H":
      need(7);
      return { tag: "H", pid: dec(f[1]), targetId: dec(f[2]), bias: hex(f[3]), head: hex(f[4]), memProfileRate: dec(f[5]), cycle: dec(f[6]) };
    case "G":
      need(7);
      return { tag: "G", pid: dec(f[1]), allglen: dec(f[2]), schedFree: dec(f[3]), ngsys: dec(f[4]), procsFree: dec(f[5]), procs: dec(f[6]) };
    case "M":
      need(8);
      return {
        tag: "M",
        pid: dec(f[1]),
        heapInUse: dec(f[2]),
        mappedReady: dec(f[3]),
        stacksSys: dec(f[4]),
        inStacks: [dec(f[5]), dec(f[6]), dec(f[7])],
      };
    case "C": {
      need(6 + WALK_COUNT_WORDS);
      const counts = new Array<number>(WALK_COUNT_WORDS);
      for (let i = 0; i < WALK_COUNT_WORDS; i++) counts[i] = dec(f[6 + i]);
      return { tag: "C", pid: dec(f[1]), bucket: hex(f[2]), allnext: hex(f[3]), nstk: dec(f[4]), size: dec(f[5]), counts };
    }
    case "B":
      need(3);
      return { tag: "B", pid: dec(f[1]), written: dec(f[2]) };
    case "S": {
      need(12);
      const pcs = new Array<number>(8);
      for (let i = 0; i < 8; i++) pcs[i] = hex(f[4 + i]);
      return { tag: "S", pid: dec(f[1]), bucket: hex(f[2]), index: dec(f[3]), pcs };
    }
    case "E":
      need(2);
      return { tag: "E", pid: dec(f[1]) };
    case "X":
      need(2);
      return { tag: "X", pid: dec(f[1]) };
    case "O":
      if (f.length < 4) throw new Error("short O record");
      return { tag: "O", pid: dec(f[1]), message: rest(line, 3).slice(0, dec(f[2])) };
    case "R":
      need(2);
      return { tag: "R", nonce: dec(f[1]) };
    case "P":
      need(4);
      return { tag: "P", pid: dec(f[1]), inode: dec(f[2]), execNs: nanos(f[3]!) };
    case "I":
      need(5);
      return { tag: "I", pid: dec(f[1]), inode: dec(f[2]), startNs: nanos(f[3]!), killNs: nanos(f[4]!) };
    case "Y":
      if (f.length < 4) throw new Error("short Y record");
      return { tag: "Y", pid: dec(f[1]), level: dec(f[2]), name: rest(line, 3) };
    case "Z":
      if (f.length < 4) throw new Error("short Z record");
      return { tag: "Z", pid: dec(f[1]), level: dec(f[2]), escaped: rest(line, 3) };
    case "W":
      need(6);
      return { tag: "W", pid: dec(f[1]), levels: dec(f[2]), truncated: dec(f[3]) !== 0, nsPid: dec(f[4]), limitPages: dec(f[5]) };
    case "A":
      need(2);
      return { tag: "A", pid: dec(f[1]) };
    case "N":
      need(5);
      return { tag: "N", pid: dec(f[1]), inode: dec(f[2]), held: dec(f[3]) === 1, execNs: nanos(f[4]!) };
    default:
      throw new Error(`unknown record tag ${JSON.stringify(f[0])}`);
  }
}
