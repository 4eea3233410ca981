import { WALK_COUNT_WORDS } from "../gobinary/bucket-layout.ts";
import { COUNTER_MAP, kernelMapName } from "../probes/target-table.ts";
import { BpfError, BpftraceMap } from "../process/bpf-maps.ts";
import type { CounterRecord } from "../stream/records.ts";

/**
 * The walk's counters where bpftrace declares map sizes (0.27+): the walk puts each
 * bucket into @wc instead of printing a C line, and prints a B line at the end of the
 * list. On it, oomprof takes the whole map in a few bpf(2) batch calls and hands the
 * entries on as the C records they replace.
 */

/** {pid, bucket address}, two u64 (probes/walk/for-map-counters-map.bt). */
export const COUNTER_KEY_BYTES = 16;
/** {allnext, nstk, size}, then the memRecord's counts: u64 each. */
export const COUNTER_VALUE_BYTES = (3 + WALK_COUNT_WORDS) * 8;
/** Entries a batch call takes at most: 1.7 MB of buffers, a few calls for a large walk. */
const BATCH_ENTRIES = 16_384;
/**
 * And at least: a call fails (ENOSPC) when one hash bucket of the map holds more entries
 * than it may return, and a walk of a few hundred buckets need not fault in 1.7 MB of
 * fresh buffers (2 ms of the 500-bucket capture's time when it did).
 */
const MIN_BATCH_ENTRIES = 1024;

/** A little-endian u64 as a number (addresses and counts stay far below 2^53). */
function u64(v: DataView, at: number): number {
  return v.getUint32(at, true) + v.getUint32(at + 4, true) * 2 ** 32;
}

/** The C records that `count` packed entries of the counter map stand for. */
export function counterRecords(keys: Uint8Array, values: Uint8Array, count: number): CounterRecord[] {
  if (keys.byteLength < count * COUNTER_KEY_BYTES || values.byteLength < count * COUNTER_VALUE_BYTES) {
    throw new BpfError(`counter map: ${count} entries need ${count * COUNTER_KEY_BYTES} key and ${count * COUNTER_VALUE_BYTES} value bytes`);
  }
  const k = new DataView(keys.buffer, keys.byteOffset, keys.byteLength);
  const v = new DataView(values.buffer, values.byteOffset, values.byteLength);
  const out = new Array<CounterRecord>(count);
  for (let i = 0; i < count; i++) {
    const at = i * COUNTER_VALUE_BYTES;
    const counts = new Array<number>(WALK_COUNT_WORDS);
    for (let w = 0; w < WALK_COUNT_WORDS; w++) counts[w] = u64(v, at + 24 + w * 8);
    out[i] = {
      tag: "C",
      pid: u64(k, i * COUNTER_KEY_BYTES),
      bucket: u64(k, i * COUNTER_KEY_BYTES + 8),
      allnext: u64(v, at),
      nstk: u64(v, at + 8),
      size: u64(v, at + 16),
      counts,
    };
  }
  return out;
}

/** Takes the counter maps of running bpftraces; one open map per bpftrace. */
export class CounterMapReader {
  private maps = new BpftraceMap(kernelMapName(COUNTER_MAP), (m) => {
    if (m.keySize !== COUNTER_KEY_BYTES || m.valueSize !== COUNTER_VALUE_BYTES) {
      throw new BpfError(`${m.name} has ${m.keySize}-byte keys and ${m.valueSize}-byte values, not ${COUNTER_KEY_BYTES} and ${COUNTER_VALUE_BYTES}`);
    }
  });

  /**
   * Every entry of bpftracePid's counter map, removed from it, as C records (any pid's);
   * `written`, the walk's count, sizes the batches.
   */
  take(bpftracePid: number, written = BATCH_ENTRIES): CounterRecord[] {
    const map = this.maps.of(bpftracePid);
    const chunk = Math.min(BATCH_ENTRIES, Math.max(1, map.maxEntries), Math.max(MIN_BATCH_ENTRIES, written));
    const { count, keys, values } = map.takeAll(chunk);
    return counterRecords(keys, values, count);
  }

  /** Finds bpftracePid's map ahead of take; a failure is left for take to report. */
  open(bpftracePid: number): void {
    try {
      this.maps.of(bpftracePid);
    } catch (e) {
      if (!(e instanceof BpfError)) throw e;
    }
  }

  forget(bpftracePid: number): void {
    this.maps.forget(bpftracePid);
  }
}
