import type { ProcessCapture } from "../capture/walk-capture.ts";
import type { MemProfileBucket } from "../gobinary/mem-profile-bucket.ts";

/**
 * Made-up counters for bucket i, in the walk's layout (WALK_COUNT_WORDS): varied, so that
 * the samples and their views (inuse, gc_live, since_gc) are not all alike. For code run
 * ahead of a kill on made-up data (this rehearsal, and cli/warm-up's made-up walk).
 */
export function madeUpCounts(i: number): number[] {
  return [1 + (i % 5), i % 2, i % 3, 0, 0, 0, 1, i % 2];
}

/**
 * What a kill of a living process would look like to reportKill: its mirrored stacks,
 * with made-up counters in the walk's layout (WALK_COUNT_WORDS: active, then future[0..2],
 * each {allocs, frees}) and made-up records of its death. Only for a rehearsal
 * (KillReporter.rehearse): the report built from it is thrown away.
 */
export function rehearsalCapture(pid: number, stacks: MemProfileBucket[], bias: number): ProcessCapture {
  const now = performance.now();
  const buckets = stacks.map((b, i) => ({ ...b, counts: madeUpCounts(i) }));
  const kb = 64 * 1024;
  return {
    pid,
    firstSeenMs: now,
    lastSeenMs: now,
    walkEnded: true,
    exited: true,
    victim: { tag: "V", pid, triggerPid: pid, totalVmKb: 2 * kb, anonRssKb: kb, fileRssKb: 1024, shmemRssKb: 0, oomScoreAdj: 0, comm: "rehearsal" },
    header: { tag: "H", pid, targetId: 0, bias, head: buckets[0]?.address ?? 0, memProfileRate: 512 * 1024, cycle: 3 },
    memStats: { heapInUse: 48 << 20, mappedReady: 60 << 20, stacksSys: 1 << 20, inStacks: 1 << 20 },
    goroutines: { count: 1, atMost: false },
    buckets,
    complete: true,
    gaps: [],
  };
}
