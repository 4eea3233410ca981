import { ptr } from "bun:ffi";
import { closeSync, readdirSync, readFileSync } from "node:fs";
import { z } from "zod";
import { syscall } from "./libc.ts";

/**
 * The maps of a running bpftrace, read and written through bpf(2). bpftrace compiles,
 * loads and attaches every probe; oomprof only fills tables the script declares (a new
 * Go binary's row in the target table) so the probes already attached serve it at once,
 * without a new bpftrace.
 *
 * A map is found by its name among the map descriptors the bpftrace process holds
 * (/proc/PID/fdinfo gives each one's id), then opened by id (BPF_MAP_GET_FD_BY_ID, root
 * only). bpftrace names a map `AT_<name>` cut at 15 characters (the kernel's 16 bytes with
 * the NUL), so scripts give oomprof's maps short names that stay distinct.
 */

const SYS_BPF = process.arch === "arm64" ? 280n : 321n;
const BPF_MAP_LOOKUP_ELEM = 1n;
const BPF_MAP_UPDATE_ELEM = 2n;
const BPF_MAP_DELETE_ELEM = 3n;
const BPF_MAP_GET_NEXT_KEY = 4n;
const BPF_MAP_GET_FD_BY_ID = 14n;
const BPF_OBJ_GET_INFO_BY_FD = 15n;
const BPF_MAP_LOOKUP_AND_DELETE_BATCH = 25n;
/** Big enough for every bpf_attr member used here; the kernel checks the rest is zero. */
const ATTR_BYTES = 128;
const MAP_INFO_BYTES = 88;
const ENOENT = 2;
const EPERM = 1;
const ENOSPC = 28;

/** One map descriptor line set from /proc/PID/fdinfo. */
const FdInfo = z.object({
  map_id: z.coerce.number().int().positive(),
  key_size: z.coerce.number().int().positive(),
  value_size: z.coerce.number().int().positive(),
});

export class BpfError extends Error {}

function bpf(cmd: bigint, attr: Uint8Array): { ret: number; errno: number } {
  return syscall(SYS_BPF, cmd, BigInt(ptr(attr)), BigInt(attr.byteLength));
}

/** The ids of the maps process pid holds open. */
export function mapIdsOf(pid: number): number[] {
  const ids: number[] = [];
  let fds: string[];
  try {
    fds = readdirSync(`/proc/${pid}/fdinfo`);
  } catch {
    return ids;
  }
  for (const fd of fds) {
    let text: string;
    try {
      text = readFileSync(`/proc/${pid}/fdinfo/${fd}`, "utf8");
    } catch {
      continue;
    }
    if (!text.includes("map_id:")) continue;
    const fields = Object.fromEntries(text.split("\n").map((l) => l.split(/:\s*/, 2) as [string, string]));
    const info = FdInfo.safeParse(fields);
    if (info.success) ids.push(info.data.map_id);
  }
  return ids;
}

/** An open BPF map: fixed-size keys and values, as little-endian bytes. */
export class BpfMap {
  private constructor(
    private fd: number,
    readonly name: string,
    readonly keySize: number,
    readonly valueSize: number,
    readonly maxEntries: number,
  ) {}

  /** Opens the map with this id; throws a BpfError when the kernel refuses. */
  static open(id: number): BpfMap {
    const attr = new Uint8Array(ATTR_BYTES);
    new DataView(attr.buffer).setUint32(0, id, true);
    const r = bpf(BPF_MAP_GET_FD_BY_ID, attr);
    if (r.ret < 0) {
      const why = r.errno === EPERM ? ": permission denied (opening a map by id needs CAP_SYS_ADMIN)" : ` (errno ${r.errno})`;
      throw new BpfError(`cannot open BPF map ${id}${why}`);
    }
    const fd = r.ret;
    try {
      const info = new Uint8Array(MAP_INFO_BYTES);
      const a = new Uint8Array(ATTR_BYTES);
      const v = new DataView(a.buffer);
      v.setUint32(0, fd, true);
      v.setUint32(4, MAP_INFO_BYTES, true);
      v.setBigUint64(8, BigInt(ptr(info)), true);
      const q = bpf(BPF_OBJ_GET_INFO_BY_FD, a);
      if (q.ret < 0) throw new BpfError(`cannot read BPF map ${id}'s info (errno ${q.errno})`);
      const iv = new DataView(info.buffer);
      const nameBytes = info.subarray(24, 40);
      const end = nameBytes.indexOf(0);
      const name = new TextDecoder().decode(nameBytes.subarray(0, end < 0 ? 16 : end));
      return new BpfMap(fd, name, iv.getUint32(8, true), iv.getUint32(12, true), iv.getUint32(16, true));
    } catch (e) {
      closeSync(fd);
      throw e;
    }
  }

  /** The maps of process pid whose names are in `names`, opened; the others are not kept open. */
  static findByName(pid: number, names: string[]): Map<string, BpfMap> {
    const found = new Map<string, BpfMap>();
    let refused: unknown;
    for (const id of mapIdsOf(pid)) {
      let m: BpfMap;
      try {
        m = BpfMap.open(id);
      } catch (e) {
        refused ??= e;
        continue;
      }
      if (names.includes(m.name) && !found.has(m.name)) found.set(m.name, m);
      else m.close();
    }
    // Every map refused: say why, not that the maps are missing.
    if (found.size === 0 && refused) throw refused;
    return found;
  }

  update(key: Uint8Array, value: Uint8Array): void {
    this.check(key, value);
    const r = this.call(BPF_MAP_UPDATE_ELEM, key, value);
    if (r.ret < 0) throw new BpfError(`cannot update BPF map ${this.name} (errno ${r.errno})`);
  }

  /** The value under key, or undefined when there is none. */
  lookup(key: Uint8Array): Uint8Array | undefined {
    const value = new Uint8Array(this.valueSize);
    this.check(key, value);
    const r = this.call(BPF_MAP_LOOKUP_ELEM, key, value);
    if (r.ret < 0) {
      if (r.errno === ENOENT) return undefined;
      throw new BpfError(`cannot read BPF map ${this.name} (errno ${r.errno})`);
    }
    return value;
  }

  /** Removes key; true if it was there. */
  delete(key: Uint8Array): boolean {
    this.check(key);
    const r = this.call(BPF_MAP_DELETE_ELEM, key);
    if (r.ret < 0 && r.errno !== ENOENT) throw new BpfError(`cannot delete from BPF map ${this.name} (errno ${r.errno})`);
    return r.ret >= 0;
  }

  /** Every key in the map now (a snapshot: the map may change meanwhile). */
  keys(): Uint8Array[] {
    const out: Uint8Array[] = [];
    let key: Uint8Array | undefined;
    for (;;) {
      const next = new Uint8Array(this.keySize);
      const attr = new Uint8Array(ATTR_BYTES);
      const v = new DataView(attr.buffer);
      v.setUint32(0, this.fd, true);
      // No key asks for the first one.
      if (key) v.setBigUint64(8, BigInt(ptr(key)), true);
      v.setBigUint64(16, BigInt(ptr(next)), true);
      const r = bpf(BPF_MAP_GET_NEXT_KEY, attr);
      if (r.ret < 0) {
        if (r.errno === ENOENT) return out;
        throw new BpfError(`cannot list BPF map ${this.name} (errno ${r.errno})`);
      }
      out.push(next);
      key = next;
    }
  }

  /**
   * Takes every entry out of the map (BPF_MAP_LOOKUP_AND_DELETE_BATCH, Linux 5.6+): one
   * call a chunk of up to `chunk` entries, keys and values packed back to back. An entry
   * added meanwhile may stay for the next call; none is returned twice.
   */
  takeAll(chunk: number): { count: number; keys: Uint8Array; values: Uint8Array } {
    if (this.fd < 0) throw new BpfError(`BPF map ${this.name} is closed`);
    const parts: Array<{ count: number; keys: Uint8Array; values: Uint8Array }> = [];
    // The kernel's cursor through a hash map is a bucket index (4 bytes).
    const inBatch = new Uint8Array(8);
    const outBatch = new Uint8Array(8);
    let first = true;
    for (;;) {
      const keys = new Uint8Array(chunk * this.keySize);
      const values = new Uint8Array(chunk * this.valueSize);
      const attr = new Uint8Array(ATTR_BYTES);
      const v = new DataView(attr.buffer);
      if (!first) v.setBigUint64(0, BigInt(ptr(inBatch)), true);
      v.setBigUint64(8, BigInt(ptr(outBatch)), true);
      v.setBigUint64(16, BigInt(ptr(keys)), true);
      v.setBigUint64(24, BigInt(ptr(values)), true);
      v.setUint32(32, chunk, true);
      v.setUint32(36, this.fd, true);
      const r = bpf(BPF_MAP_LOOKUP_AND_DELETE_BATCH, attr);
      // On the last chunk the kernel says ENOENT and still counts what it returned.
      const count = r.ret < 0 && r.errno !== ENOENT ? 0 : v.getUint32(32, true);
      if (r.ret < 0 && r.errno !== ENOENT) {
        const why = r.errno === ENOSPC ? `a hash bucket holds more than ${chunk} entries` : `errno ${r.errno}`;
        throw new BpfError(`cannot read and empty BPF map ${this.name} (${why})`);
      }
      if (count) parts.push({ count, keys: keys.subarray(0, count * this.keySize), values: values.subarray(0, count * this.valueSize) });
      if (r.ret < 0) break;
      inBatch.set(outBatch);
      first = false;
    }
    if (parts.length === 1) return parts[0]!;
    const count = parts.reduce((n, p) => n + p.count, 0);
    const keys = new Uint8Array(count * this.keySize);
    const values = new Uint8Array(count * this.valueSize);
    let k = 0;
    let at = 0;
    for (const p of parts) {
      keys.set(p.keys, k);
      values.set(p.values, at);
      k += p.keys.length;
      at += p.values.length;
    }
    return { count, keys, values };
  }

  close(): void {
    if (this.fd < 0) return;
    closeSync(this.fd);
    this.fd = -1;
  }

  private check(key: Uint8Array, value?: Uint8Array): void {
    if (this.fd < 0) throw new BpfError(`BPF map ${this.name} is closed`);
    if (key.byteLength !== this.keySize) throw new BpfError(`BPF map ${this.name}: key of ${key.byteLength} bytes, the map's are ${this.keySize}`);
    if (value && value.byteLength !== this.valueSize)
      throw new BpfError(`BPF map ${this.name}: value of ${value.byteLength} bytes, the map's are ${this.valueSize}`);
  }

  private call(cmd: bigint, key: Uint8Array, value?: Uint8Array): { ret: number; errno: number } {
    const attr = new Uint8Array(ATTR_BYTES);
    const v = new DataView(attr.buffer);
    v.setUint32(0, this.fd, true);
    v.setBigUint64(8, BigInt(ptr(key)), true);
    if (value) v.setBigUint64(16, BigInt(ptr(value)), true);
    return bpf(cmd, attr);
  }
}

/** One map of each running bpftrace, by name: opened at first use, kept until forgotten. */
export class BpftraceMap {
  private open = new Map<number, BpfMap>();

  /** `check` may refuse the map found (a BpfError), which is then closed. */
  constructor(
    readonly name: string,
    private check: (m: BpfMap) => void = () => {},
  ) {}

  /** bpftracePid's map; throws a BpfError when it has none, or it cannot be opened. */
  of(bpftracePid: number): BpfMap {
    let map = this.open.get(bpftracePid);
    if (map) return map;
    map = BpfMap.findByName(bpftracePid, [this.name]).get(this.name);
    if (!map) throw new BpfError(`bpftrace (pid ${bpftracePid}) has no map ${this.name}`);
    try {
      this.check(map);
    } catch (e) {
      map.close();
      throw e;
    }
    this.open.set(bpftracePid, map);
    return map;
  }

  forget(bpftracePid: number): void {
    this.open.get(bpftracePid)?.close();
    this.open.delete(bpftracePid);
  }

  close(): void {
    for (const pid of [...this.open.keys()]) this.forget(pid);
  }
}

/** Little-endian 64-bit words, as bpftrace lays out integer keys, tuple keys and values. */
export function words(...values: Array<number | bigint>): Uint8Array {
  const out = new Uint8Array(values.length * 8);
  const v = new DataView(out.buffer);
  values.forEach((x, i) => v.setBigUint64(i * 8, BigInt.asUintN(64, BigInt(x)), true));
  return out;
}
