import type { GoTarget } from "../gobinary/go-target.ts";
import { EXEC_SEEN_MAP, kernelMapName, TARGET_ROW_MAPS, targetRowWrites } from "../probes/target-table.ts";
import { BpfError, BpfMap, words } from "../process/bpf-maps.ts";

/**
 * Adds Go binaries' rows to the target table of a bpftrace that is already running, by
 * writing its maps through bpf(2): the walk probes it has attached serve a new binary at
 * once, with no new bpftrace to compile, verify and attach (1-2 s on 0.17). bpftrace
 * still loads every probe; oomprof only fills the table the script declares.
 */
export class TargetRowWriter {
  /** The table's maps, opened, per bpftrace pid. */
  private open = new Map<number, Map<string, BpfMap>>();

  /** Writes each target's row into the maps of the bpftrace with this pid; throws a BpfError if it cannot. */
  write(bpftracePid: number, rows: ReadonlyArray<[id: number, target: GoTarget]>): void {
    const maps = this.mapsOf(bpftracePid);
    for (const [id, t] of rows) {
      // The id last: the walk takes a row as present once tgt_id is set.
      const writes = targetRowWrites(t, id);
      writes.sort((a, b) => Number(a.map === "tgt_id") - Number(b.map === "tgt_id"));
      for (const w of writes) maps.get(w.map)!.update(words(w.key), words(w.value));
    }
  }

  /**
   * Takes targets out of a running bpftrace's table, and out of the executables it has
   * seen (watch's exec_seen, keyed by inode and size), so that a binary that runs again
   * is read again. Throws a BpfError if it cannot.
   */
  remove(bpftracePid: number, targets: readonly GoTarget[]): void {
    const maps = this.mapsOf(bpftracePid);
    for (const t of targets) {
      const key = words(t.inode);
      // The id first: the walk takes a row as absent once tgt_id is gone.
      maps.get("tgt_id")!.delete(key);
      for (const [name, m] of maps) if (name !== "tgt_id") m.delete(key);
    }
    const seen = BpfMap.findByName(bpftracePid, [kernelMapName(EXEC_SEEN_MAP)]).get(kernelMapName(EXEC_SEEN_MAP));
    if (!seen) return;
    try {
      const gone = new Set(targets.map((t) => BigInt(t.inode)));
      for (const k of seen.keys()) if (gone.has(new DataView(k.buffer).getBigUint64(0, true))) seen.delete(k);
    } finally {
      seen.close();
    }
  }

  /** Lets go of a bpftrace's maps (it exited, or was replaced). */
  forget(bpftracePid: number): void {
    for (const m of this.open.get(bpftracePid)?.values() ?? []) m.close();
    this.open.delete(bpftracePid);
  }

  close(): void {
    for (const pid of [...this.open.keys()]) this.forget(pid);
  }

  private mapsOf(pid: number): Map<string, BpfMap> {
    let maps = this.open.get(pid);
    if (maps) return maps;
    const wanted = new Map(TARGET_ROW_MAPS.map((r) => [kernelMapName(r.map), r.map]));
    const found = BpfMap.findByName(pid, [...wanted.keys()]);
    maps = new Map([...found].map(([kernelName, m]) => [wanted.get(kernelName)!, m]));
    const missing = [...wanted.values()].filter((name) => !maps!.has(name));
    if (missing.length) {
      for (const m of maps.values()) m.close();
      throw new BpfError(`bpftrace (pid ${pid}) has no map ${missing.map((n) => kernelMapName(n)).join(", ")}`);
    }
    const odd = [...maps.values()].find((m) => m.keySize !== 8 || m.valueSize !== 8);
    if (odd) {
      for (const m of maps.values()) m.close();
      throw new BpfError(`bpftrace's map ${odd.name} has ${odd.keySize}-byte keys and ${odd.valueSize}-byte values, not 8 and 8`);
    }
    this.open.set(pid, maps);
    return maps;
  }
}
