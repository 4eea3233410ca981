import { CaptureAssembler } from "../capture/walk-capture.ts";
import { COUNTER_KEY_BYTES, COUNTER_VALUE_BYTES, counterRecords } from "../capture/counter-map.ts";
import { WALK_COUNT_WORDS } from "../gobinary/bucket-layout.ts";
import { heapSamples } from "../profile/heap-views.ts";
import { buildPprof, encodeProfileGz } from "../profile/pprof.ts";
import { allocationSites } from "../profile/sites.ts";
import { parseBpftraceLine } from "../stream/bpftrace-json.ts";
import { parseRecord } from "../stream/records.ts";
import { madeUpCounts } from "../output/rehearsal.ts";
import type { SourceFrame } from "../symbolize/types.ts";

/** Made-up bucket i of n: its address, the next one's (0 for the last) and its counts. */
function madeUpBucket(i: number, n: number): { at: number; next: number; counts: number[] } {
  return { at: 0x10000 + i * 0x100, next: i + 1 < n ? 0x10000 + (i + 1) * 0x100 : 0, counts: madeUpCounts(i) };
}

/** bpftrace's JSON lines for a whole walk of `buckets` made-up buckets of pid 1, 16 frames each. */
export function madeUpWalk(buckets: number): string[] {
  const pid = 1;
  const lines: string[] = [JSON.stringify({ type: "printf", data: `H ${pid} 0 0 10000 524288 3\n` })];
  for (let i = 0; i < buckets; i++) {
    const b = madeUpBucket(i, buckets);
    const at = b.at.toString(16);
    lines.push(JSON.stringify({ type: "printf", data: `C ${pid} ${at} ${b.next.toString(16)} 16 64 ${b.counts.join(" ")}\n` }));
    for (const k of [0, 8]) {
      const pcs = Array.from({ length: 8 }, (_, j) => (0x401000 + ((i * 31 + (k + j) * 7) % 4000) * 16).toString(16));
      lines.push(JSON.stringify({ type: "printf", data: `S ${pid} ${at} ${k} ${pcs.join(" ")}\n` }));
    }
  }
  lines.push(JSON.stringify({ type: "printf", data: `E ${pid}\n` }));
  return lines;
}

/** The same walk's counters as bpftrace 0.27+'s counter map holds them (see counterRecords). */
export function madeUpCounterEntries(buckets: number): { keys: Uint8Array; values: Uint8Array } {
  const keys = new BigUint64Array(buckets * (COUNTER_KEY_BYTES / 8));
  const values = new BigUint64Array(buckets * (COUNTER_VALUE_BYTES / 8));
  for (let i = 0; i < buckets; i++) {
    const b = madeUpBucket(i, buckets);
    keys.set([1n, BigInt(b.at)], i * (COUNTER_KEY_BYTES / 8));
    values.set([b.next, 16, 64, ...b.counts].map(BigInt), i * (COUNTER_VALUE_BYTES / 8));
  }
  return { keys: new Uint8Array(keys.buffer), values: new Uint8Array(values.buffer) };
}

/**
 * Runs the whole capture path (bpftrace's JSON lines, records, the assembled capture,
 * samples, the pprof profile, its encoding, the site table) a few times over made-up
 * buckets, once the probes are attached and nothing waits. OOM kills are rare, so the
 * capture of one is the first time this code runs in the process: the JIT has not
 * compiled it yet. bench-capacity on bpftrace 0.17 measured watch's first capture of a
 * process with 40,000 buckets at 832 ms against 589-664 ms for the next two, and at
 * 500 buckets 42 ms against 22-24. The rounds are small (10-20 ms each), apart, and
 * start a little after arming: a new binary exec'd right then must be read and given its
 * walk within milliseconds (watch-fresh failed when three 100 ms rounds ran at once).
 */
const START_DELAY_MS = 300;
const ROUND_GAP_MS = 50;

export function warmCapturePath(buckets = 500, rounds = 12): void {
  const pid = 1;
  const lines = madeUpWalk(buckets);
  const entries = madeUpCounterEntries(buckets);
  const frames = (pc: bigint): SourceFrame[] => [{ function: `warm.f${pc % 211n}`, file: "warm.go", line: Number(pc % 1000n), inlined: false }];
  const meta = {
    binaryPath: "/warm",
    buildId: "",
    mapping: { start: 0x400000, limit: 0x500000, offset: 0 },
    memProfileRate: 512 * 1024,
    timeNanos: 0n,
    comments: [],
  };
  const round = () => {
    const assembler = new CaptureAssembler();
    for (const line of lines) {
      const m = parseBpftraceLine(line);
      if (m.type === "printf") assembler.add(parseRecord(m.data));
    }
    counterRecords(entries.keys, entries.values, buckets);
    const capture = assembler.capture(pid);
    const samples = heapSamples(capture.buckets, 512 * 1024, 3, WALK_COUNT_WORDS);
    encodeProfileGz(buildPprof(samples, meta, { frames }));
    allocationSites(samples, { frames });
  };
  const next = (left: number) => {
    if (left <= 0) return;
    round();
    setTimeout(() => next(left - 1), ROUND_GAP_MS);
  };
  setTimeout(() => next(rounds), START_DELAY_MS);
}
