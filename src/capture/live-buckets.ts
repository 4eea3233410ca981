import { BUCKET, WORD_BYTES, type MemRecordWords } from "../gobinary/bucket-layout.ts";
import type { GoTarget } from "../gobinary/go-target.ts";
import { goroutineCount, MAX_PROCS_SUMMED } from "../gobinary/runtime-layout.ts";
import type { ProcessMemory } from "../process/memory.ts";
import type { MemProfileBucket } from "../gobinary/mem-profile-bucket.ts";

/** Go ≤1.22 keeps at most 32 frames; 1.23+ up to debug.profstackdepth (default 128, max 1024). */
const MAX_STACK = 1024;

export interface LiveProfileState {
  head: number;
  memProfileRate: number;
  cycle: number;
}

/** The list head, MemProfileRate and profile cycle of a live Go process. */
export function readProfileState(mem: ProcessMemory, target: GoTarget, bias: number): LiveProfileState | undefined {
  const head = mem.u64(Number(target.vars.mbuckets) + bias);
  const rate = mem.u64(Number(target.vars.memProfileRate) + bias);
  if (head === undefined || rate === undefined) return undefined;
  let cycle = -1;
  if (target.vars.cycle) {
    const b = mem.read(Number(target.vars.cycle.addr) + bias, 4);
    if (b) cycle = target.vars.cycle.shifted ? b.readUInt32LE(0) >>> 1 : b.readUInt32LE(0);
  }
  return { head, memProfileRate: rate, cycle };
}

/** Goroutines in a live process, read as the goroutine probe reads them at death. */
export function readLiveGoroutines(mem: ProcessMemory, target: GoTarget, bias: number): { count: number; atMost: boolean } | undefined {
  const g = target.goroutines;
  if (!g) return undefined;
  const i32 = (addr: number) => mem.read(addr, 4)?.readInt32LE(0);
  const allglen = mem.u64(Number(g.allglen) + bias);
  const second = g.schedGFreeN2 === undefined ? 0 : i32(Number(g.sched) + g.schedGFreeN2 + bias);
  const first = i32(Number(g.sched) + g.schedGFreeN + bias);
  const schedFree = first === undefined || second === undefined ? undefined : first + second;
  const ngsys = i32(Number(g.sched) + g.schedNgsys + bias);
  const allp = mem.u64(Number(g.allp) + bias);
  const procs = mem.u64(Number(g.allp) + 8 + bias);
  if (allglen === undefined || schedFree === undefined || ngsys === undefined || allp === undefined || procs === undefined) return undefined;
  let procsFree = 0;
  for (let i = 0; i < Math.min(procs, MAX_PROCS_SUMMED); i++) {
    const p = mem.u64(allp + i * 8);
    const n = p === undefined ? undefined : i32(p + g.pGFreeN);
    if (n === undefined) return undefined;
    procsFree += n;
  }
  return goroutineCount({ allglen, schedFree, ngsys, procsFree, procs });
}

/**
 * Walks runtime.mbuckets in a live process through /proc/PID/mem. Buckets are only
 * ever prepended and never move, so a walk may stop at the first bucket it already
 * knows (`known`): that is how the live mirror stays cheap.
 */
export function readLiveBuckets(
  mem: ProcessMemory,
  head: number,
  known?: { has(address: number): boolean },
  recordWords: MemRecordWords = 16,
  maxBuckets = 10_000_000,
): { buckets: MemProfileBucket[]; complete: boolean } {
  const buckets: MemProfileBucket[] = [];
  let at = head;
  while (at !== 0 && buckets.length < maxBuckets) {
    if (known?.has(at)) return { buckets, complete: true };
    const hdr = mem.read(at, BUCKET.headerBytes);
    if (!hdr) return { buckets, complete: false };
    const allnext = Number(hdr.readBigUInt64LE(BUCKET.allnext));
    const size = Number(hdr.readBigUInt64LE(BUCKET.size));
    const nstk = Number(hdr.readBigUInt64LE(BUCKET.nstk));
    if (nstk > MAX_STACK) return { buckets, complete: false };
    // stk[nstk] then the memRecord, read in one go from where the header ends.
    const body = mem.read(at + BUCKET.headerBytes, (nstk + recordWords) * WORD_BYTES);
    if (!body) return { buckets, complete: false };
    const stack = new Array<number>(nstk);
    for (let i = 0; i < nstk; i++) stack[i] = Number(body.readBigUInt64LE(i * WORD_BYTES));
    const counts = new Array<number>(recordWords);
    for (let i = 0; i < recordWords; i++) counts[i] = Number(body.readBigUInt64LE((nstk + i) * WORD_BYTES));
    buckets.push({ address: at, size, stack, counts });
    at = allnext;
  }
  return { buckets, complete: at === 0 };
}
