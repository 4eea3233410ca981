import { statSync } from "node:fs";
import type { GoTarget } from "../gobinary/go-target.ts";
import { loadBias, ProcessMemory, readMaps } from "../process/memory.ts";
import { readLiveBuckets } from "./live-buckets.ts";
import type { MemProfileBucket } from "../gobinary/mem-profile-bucket.ts";

interface Tracked {
  mem: ProcessMemory;
  bias: number;
  target: GoTarget;
  buckets: Map<number, MemProfileBucket>;
}

/**
 * A read-ahead copy of the stacks of a live target's memory-profile buckets, taken
 * through /proc/PID/mem. Buckets never move and their stacks never change, so at death
 * the probes only have to deliver counters for the buckets mirrored here, and stacks
 * only for the newest ones (which come first in the runtime's list).
 */
export class LiveMirror {
  private tracked = new Map<number, Tracked>();
  private timer: ReturnType<typeof setInterval> | undefined;
  private closed = false;

  constructor(
    private candidates: () => Iterable<[pid: number, targets: GoTarget[]]>,
    private intervalMs = 250,
    /** Called after each pass with the bucket count of every mirrored process together. */
    private onCount?: (totalBuckets: number) => void,
  ) {}

  start(): void {
    this.timer ??= setInterval(() => this.tick(), this.intervalMs);
  }

  /** Stops reading; what was mirrored stays available to buckets(). */
  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    for (const t of this.tracked.values()) t.mem.close();
    this.closed = true;
  }

  /** Drops what is known about pid (its capture is reported, or it exited normally). */
  forget(pid: number): void {
    const t = this.tracked.get(pid);
    if (!t) return;
    if (!this.closed) t.mem.close();
    this.tracked.delete(pid);
  }

  /** Pids being mirrored. */
  pids(): number[] {
    return [...this.tracked.keys()];
  }

  /** The mirrored buckets of pid, by address (empty when it was never mirrored). */
  buckets(pid: number): Map<number, MemProfileBucket> {
    return this.tracked.get(pid)?.buckets ?? new Map();
  }

  /** One pass: start tracking new Go processes, then read each tracked list up to the first known bucket. */
  tick(): void {
    if (this.closed) return;
    for (const [pid, targets] of this.candidates()) {
      if (this.tracked.has(pid)) continue;
      try {
        const ino = statSync(`/proc/${pid}/exe`).ino;
        const target = targets.find((t) => t.inode === ino);
        if (!target) continue;
        this.tracked.set(pid, { mem: new ProcessMemory(pid), bias: loadBias(target, readMaps(pid)), target, buckets: new Map() });
      } catch {
        /* gone, or not yet exec'd into its Go binary */
      }
    }
    for (const [, t] of this.tracked) {
      // Only the list head: one read per process per pass, which is all an idle one costs.
      const head = t.mem.u64(Number(t.target.vars.mbuckets) + t.bias);
      if (!head) continue;
      const { buckets } = readLiveBuckets(t.mem, head, t.buckets, t.target.memRecordWords);
      for (const b of buckets) t.buckets.set(b.address, b);
    }
    let total = 0;
    for (const t of this.tracked.values()) total += t.buckets.size;
    this.onCount?.(total);
  }
}
