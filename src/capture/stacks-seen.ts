import { kernelMapName, STACKS_SEEN_MAP } from "../probes/target-table.ts";
import { BpftraceMap, words } from "../process/bpf-maps.ts";

/**
 * Tells the walk which stacks it need not print: for each mirrored process, the newest
 * bucket from which the live mirror holds the rest of the list, stacks and all. Kept
 * here as well as in bpftrace's map, so a new bpftrace gets them all at once. Throws a
 * BpfError when a map cannot be opened or written; the walk then prints every stack.
 */
export class StacksSeenWriter {
  private from = new Map<number, number>();
  private maps = new BpftraceMap(kernelMapName(STACKS_SEEN_MAP));

  /** pid's mirror is whole from bucket `from` (0: forget pid); writes it into the running bpftrace, if any. */
  set(pid: number, from: number, bpftracePid: number | undefined): void {
    if (from) this.from.set(pid, from);
    else this.from.delete(pid);
    if (bpftracePid === undefined) return;
    const map = this.maps.of(bpftracePid);
    if (from) map.update(words(pid), words(from));
    else map.delete(words(pid));
  }

  /** A new bpftrace attached: give it every process's mark. */
  replay(bpftracePid: number): void {
    if (!this.from.size) return;
    const map = this.maps.of(bpftracePid);
    for (const [pid, from] of this.from) map.update(words(pid), words(from));
  }

  forget(bpftracePid: number): void {
    this.maps.forget(bpftracePid);
  }

  close(): void {
    this.maps.close();
  }
}
