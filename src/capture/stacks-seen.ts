import { kernelMapName, STACKS_SEEN_MAP } from "../probes/target-table.ts";
import { BpfError, BpfMap, words } from "../process/bpf-maps.ts";

/**
 * Tells the walk which stacks it need not print: for each mirrored process, the newest
 * bucket from which the live mirror holds the rest of the list, stacks and all. Kept
 * here as well as in bpftrace's map, so a new bpftrace gets them all at once. Throws a
 * BpfError when a map cannot be opened or written; the walk then prints every stack.
 */
export class StacksSeenWriter {
  private from = new Map<number, number>();
  private open = new Map<number, BpfMap>();

  /** pid's mirror is whole from bucket `from` (0: forget pid); writes it into the running bpftrace, if any. */
  set(pid: number, from: number, bpftracePid: number | undefined): void {
    if (from) this.from.set(pid, from);
    else this.from.delete(pid);
    if (bpftracePid === undefined) return;
    const map = this.mapOf(bpftracePid);
    if (from) map.update(words(pid), words(from));
    else map.delete(words(pid));
  }

  /** A new bpftrace attached: give it every process's mark. */
  replay(bpftracePid: number): void {
    if (!this.from.size) return;
    const map = this.mapOf(bpftracePid);
    for (const [pid, from] of this.from) map.update(words(pid), words(from));
  }

  forget(bpftracePid: number): void {
    this.open.get(bpftracePid)?.close();
    this.open.delete(bpftracePid);
  }

  close(): void {
    for (const pid of [...this.open.keys()]) this.forget(pid);
  }

  private mapOf(bpftracePid: number): BpfMap {
    let map = this.open.get(bpftracePid);
    if (map) return map;
    const name = kernelMapName(STACKS_SEEN_MAP);
    map = BpfMap.findByName(bpftracePid, [name]).get(name);
    if (!map) throw new BpfError(`bpftrace (pid ${bpftracePid}) has no map ${name}`);
    this.open.set(bpftracePid, map);
    return map;
  }
}
