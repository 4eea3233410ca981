import { memRecordOffset, WORD_BYTES, type MemRecordWords } from "../gobinary/bucket-layout.ts";
import type { MemProfileBucket } from "../gobinary/mem-profile-bucket.ts";
import type { ProcessMemory } from "../process/memory.ts";

/**
 * Earlier readings of a live Go process's bucket counters, so that at its death a base
 * profile from about `--base-age` before can be written beside the kill's. A reading is
 * counters only: the stacks are the live mirror's, which never change.
 */
export interface CounterReading {
  /** performance.now() when it was read. */
  atMs: number;
  /** It covers the first this-many buckets of the mirror's list (in the order found; buckets are only ever added). */
  bucketCount: number;
  /** Each bucket's memRecord words, bucketCount × the binary's record words. */
  counts: Float64Array;
  memProfileRate: number;
  cycle: number;
}

/** The buckets of a base profile: the mirror's, with the counters of one earlier reading. */
export interface BaseCounters {
  buckets: MemProfileBucket[];
  memProfileRate: number;
  cycle: number;
  /** How long before death it was read, in ms. */
  ageMs: number;
}

/** A base-age of 60 s reads every 10 s; never more often than this. */
export const MIN_READING_INTERVAL_MS = 2000;
/** Readings spread over the base age: about six of them. */
const READINGS_PER_BASE_AGE = 6;
/** Kept per process at most (one more than the spread, so the oldest still reaches the base age). */
const MAX_READINGS = READINGS_PER_BASE_AGE + 2;
/** Memory the readings of one process may hold; a huge profile keeps fewer, never under two. */
export const READINGS_BUDGET_BYTES = 64 << 20;
/** A diff over less than this says nothing about growth: such a reading is no base. */
export const MIN_BASE_AGE_MS = 500;

/** How often a growing process's counters are read for a given base age. */
export function readingIntervalMs(baseAgeMs: number): number {
  return Math.max(MIN_READING_INTERVAL_MS, baseAgeMs / READINGS_PER_BASE_AGE);
}

/**
 * The reading whose age at death is closest to the base age (the older of two as close).
 * When none is that old, that is the oldest: the user gets the base there is, and its age.
 * Readings taken after death, or too recent to show growth, are never a base.
 */
export function chooseReading<R extends { atMs: number }>(
  readings: readonly R[],
  deathMs: number,
  baseAgeMs: number,
): { reading: R; ageMs: number } | undefined {
  let best: { reading: R; ageMs: number } | undefined;
  for (const reading of readings) {
    const ageMs = deathMs - reading.atMs;
    if (ageMs < MIN_BASE_AGE_MS) continue;
    const off = Math.abs(ageMs - baseAgeMs);
    const bestOff = best ? Math.abs(best.ageMs - baseAgeMs) : Infinity;
    if (off < bestOff || (off === bestOff && best && ageMs > best.ageMs)) best = { reading, ageMs };
  }
  return best;
}

/** One pread: `records` memRecords at these offsets inside [address, address + length). */
export interface ReadSpan {
  address: number;
  length: number;
  /** For each record in the span: its index in the reading and its offset in the span. */
  records: Array<[index: number, offset: number]>;
}

/**
 * Buckets are allocated one after another from the runtime's persistent allocator, so
 * their memRecords sit a header and a stack apart: records closer than `maxGap` bytes
 * are read in one pread, up to `maxSpan` bytes per read.
 */
export const READ_MAX_GAP = 4096;
export const READ_MAX_SPAN = 256 << 10;

/** Groups the memRecords at `addresses` (each `recordBytes` long) into as few reads as the limits allow. */
export function planCounterReads(addresses: readonly number[], recordBytes: number, maxGap = READ_MAX_GAP, maxSpan = READ_MAX_SPAN): ReadSpan[] {
  const order = addresses.map((address, index) => ({ address, index })).sort((a, b) => a.address - b.address);
  const spans: ReadSpan[] = [];
  let span: ReadSpan | undefined;
  for (const { address, index } of order) {
    const end = address + recordBytes;
    if (span && address - (span.address + span.length) <= maxGap && end - span.address <= maxSpan) {
      span.records.push([index, address - span.address]);
      span.length = Math.max(span.length, end - span.address);
    } else {
      span = { address, length: recordBytes, records: [[index, 0]] };
      spans.push(span);
    }
  }
  return spans;
}

/**
 * Reads every planned memRecord into one array (recordWords per bucket, in the buckets'
 * order). A span that cannot be read whole (a hole between two allocator chunks) is read
 * record by record; undefined if a record itself cannot be read (the process is gone).
 */
export function readCounters(mem: ProcessMemory, plan: readonly ReadSpan[], bucketCount: number, recordWords: number): Float64Array | undefined {
  const counts = new Float64Array(bucketCount * recordWords);
  const recordBytes = recordWords * WORD_BYTES;
  // Words as two 32-bit halves through a typed view: BigInt decoding cost more than the reads.
  const take = (buf: Buffer, offset: number, index: number) => {
    const at = buf.byteOffset + offset;
    if (at % 4 !== 0) {
      for (let w = 0; w < recordWords; w++) counts[index * recordWords + w] = Number(buf.readBigUInt64LE(offset + w * WORD_BYTES));
      return;
    }
    const halves = new Uint32Array(buf.buffer, at, recordWords * 2);
    for (let w = 0; w < recordWords; w++) counts[index * recordWords + w] = halves[2 * w]! + halves[2 * w + 1]! * 2 ** 32;
  };
  for (const span of plan) {
    const buf = span.records.length > 1 ? mem.read(span.address, span.length) : undefined;
    if (buf) {
      for (const [index, offset] of span.records) take(buf, offset, index);
      continue;
    }
    for (const [index, offset] of span.records) {
      const one = mem.read(span.address + offset, recordBytes);
      if (!one) return undefined;
      take(one, 0, index);
    }
  }
  return counts;
}

/** Whether two readings hold the same counters for the same buckets. */
function sameCounters(a: CounterReading, b: CounterReading): boolean {
  if (a.bucketCount !== b.bucketCount || a.cycle !== b.cycle) return false;
  for (let i = 0; i < a.counts.length; i++) if (a.counts[i] !== b.counts[i]) return false;
  return true;
}

/**
 * The readings of one process, a few seconds apart, oldest first. Bounded: at most
 * MAX_READINGS, and no more than READINGS_BUDGET_BYTES of counters (at least two).
 */
export class CounterHistory {
  readonly readings: CounterReading[] = [];
  /** Where the next reading reads, per bucket count (the list only grows). */
  private plan: { bucketCount: number; spans: ReadSpan[] } | undefined;
  private lastCheckMs = -Infinity;

  constructor(
    readonly baseAgeMs: number,
    readonly recordWords: MemRecordWords,
  ) {}

  /**
   * Whether it is time to look for growth again (no read); if so, the next look waits
   * another interval, whatever it finds.
   */
  /** When the next look for growth is due (performance.now()). */
  nextCheckMs(): number {
    return this.lastCheckMs + readingIntervalMs(this.baseAgeMs);
  }

  startCheck(nowMs: number): boolean {
    if (nowMs - this.lastCheckMs < readingIntervalMs(this.baseAgeMs)) return false;
    this.lastCheckMs = nowMs;
    return true;
  }

  /**
   * Reads the counters of `buckets` (the mirror's, in the order found) and keeps the
   * reading unless it equals the last one kept. Returns what was kept, if anything.
   */
  read(mem: ProcessMemory, buckets: readonly MemProfileBucket[], state: { memProfileRate: number; cycle: number }, nowMs: number): CounterReading | undefined {
    if (this.plan?.bucketCount !== buckets.length) {
      const recordBytes = this.recordWords * WORD_BYTES;
      this.plan = {
        bucketCount: buckets.length,
        spans: planCounterReads(
          buckets.map((b) => b.address + memRecordOffset(b.stack.length)),
          recordBytes,
        ),
      };
    }
    const counts = readCounters(mem, this.plan.spans, buckets.length, this.recordWords);
    if (!counts) return undefined;
    const reading: CounterReading = { atMs: nowMs, bucketCount: buckets.length, counts, ...state };
    const last = this.readings.at(-1);
    if (last && sameCounters(last, reading)) return undefined;
    this.readings.push(reading);
    const keep = Math.max(2, Math.min(MAX_READINGS, Math.floor(READINGS_BUDGET_BYTES / Math.max(1, counts.byteLength))));
    while (this.readings.length > keep) this.readings.shift();
    return reading;
  }

  /** The base for a death at deathMs: its buckets with the reading's counters, and its age. */
  base(buckets: readonly MemProfileBucket[], deathMs: number): BaseCounters | undefined {
    const chosen = chooseReading(this.readings, deathMs, this.baseAgeMs);
    if (!chosen) return undefined;
    const r = chosen.reading;
    const w = this.recordWords;
    const out: MemProfileBucket[] = [];
    for (let i = 0; i < r.bucketCount && i < buckets.length; i++) {
      const b = buckets[i]!;
      out.push({ address: b.address, size: b.size, stack: b.stack, counts: Array.from(r.counts.subarray(i * w, (i + 1) * w)) });
    }
    return { buckets: out, memProfileRate: r.memProfileRate, cycle: r.cycle, ageMs: Math.round(chosen.ageMs) };
  }
}
