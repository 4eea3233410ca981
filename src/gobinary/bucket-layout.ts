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
 * Words of the memRecord a walk's C line prints: the widest layout's, whatever the
 * binary (one walk probe serves every binary; a 1.27 record's trailing words are
 * printed and ignored). src/stream/records.ts parses this many.
 */
export const WALK_RECORD_WORDS = 16;
