/**
 * Where Go's runtime keeps a heap-profile bucket, per Go's src/runtime/mprof.go:
 *
 *   type bucket struct {   // followed by stk [nstk]uintptr, then the memRecord
 *     next    *bucket      // hash chain
 *     allnext *bucket      // the mbuckets list the walk follows
 *     typ     bucketType   // int
 *     hash    uintptr
 *     size    uintptr
 *     nstk    uintptr
 *   }
 *
 * and b.mp() is `add(b, unsafe.Sizeof(*b) + b.nstk*unsafe.Sizeof(uintptr(0)))`. The
 * header has not changed from Go 1.19 to 1.27 (amd64 and arm64: 8-byte words). This is
 * the one place oomprof writes these numbers down: the walk templates get them through
 * placeholders, and the live mirror reads with them.
 */
export const WORD_BYTES = 8;

export const BUCKET = {
  next: 0,
  allnext: 8,
  typ: 16,
  hash: 24,
  size: 32,
  nstk: 40,
  /** sizeof(bucket): where stk[] starts. */
  headerBytes: 48,
} as const;

/** Where a bucket's memRecord starts, from the bucket's address. */
export function memRecordOffset(nstk: number): number {
  return BUCKET.headerBytes + nstk * WORD_BYTES;
}

/**
 * runtime.memRecord is `active` and `future [3]` of one memRecordCycle each. Up to Go
 * 1.26 a cycle is {allocs, frees, alloc_bytes, free_bytes}; Go 1.27 dropped the byte
 * counts (a bucket holds one object size, so bytes are counts times size), halving it.
 * GoTarget.memRecordWords says which a binary has.
 */
export type MemRecordWords = 16 | 8;

export interface MemRecordLayout {
  words: MemRecordWords;
  /** active, future[0], future[1], future[2]. */
  cycles: 4;
  /** Words in one memRecordCycle. */
  wordsPerCycle: 4 | 2;
  /** Word index of each field inside a cycle; the byte counts are absent from 1.27. */
  fields: { allocs: 0; frees: 1; allocBytes?: 2; freeBytes?: 3 };
}

export const MEM_RECORD_LAYOUTS: Readonly<Record<MemRecordWords, MemRecordLayout>> = {
  16: { words: 16, cycles: 4, wordsPerCycle: 4, fields: { allocs: 0, frees: 1, allocBytes: 2, freeBytes: 3 } },
  8: { words: 8, cycles: 4, wordsPerCycle: 2, fields: { allocs: 0, frees: 1 } },
};

/**
 * Counts a walk's C line prints: {allocs, frees} of each of the memRecord's four cycles,
 * in Go 1.27's layout whatever the binary's (MEM_RECORD_LAYOUTS[8]). The byte counts
 * are left out: a bucket holds one object size (runtime/mprof.go's stkbucket matches on
 * it, and malloc and sweep both count the object's size class), so they are the counts
 * times the bucket's size. That is why Go 1.27 could drop them; a program built with
 * Go 1.19, 1.21, 1.23, 1.24 and 1.27 found it true of every runtime.MemProfile record
 * at MemProfileRate 1. bpftrace's cost is per number printed: on 0.27 a stream of 48,000
 * C lines four to a printf took 610-710 ms with 16 words and 460-500 ms with these 8.
 * src/stream/records.ts parses this many.
 */
export const WALK_COUNT_WORDS = 8;

/** Bytes from one memRecord cycle to the next, which the walk steps by (the target table's @tgt_slot); 0 for an unknown layout. */
export function memRecordCycleBytes(words: MemRecordWords | undefined): number {
  return words ? MEM_RECORD_LAYOUTS[words].wordsPerCycle * WORD_BYTES : 0;
}
