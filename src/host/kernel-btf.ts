import { readFileSync } from "node:fs";

/**
 * Just enough of the kernel's BTF (/sys/kernel/btf/vmlinux) to find where a struct keeps
 * a member. bpftrace resolves `curtask->...` chains itself; oomprof needs offsets only
 * where bpftrace cannot index (struct pid's flexible `numbers[]`) and member names that
 * changed between kernels (kernfs_node's `parent`, `__parent` from Linux 6.15).
 * Format: Documentation/bpf/btf.rst in the kernel tree.
 */

export interface BtfMember {
  name: string;
  /** Byte offset within the struct (bitfields are not needed here and are skipped). */
  offset: number;
}

export interface BtfStruct {
  size: number;
  members: Map<string, BtfMember>;
}

const BTF_MAGIC = 0xeb9f;
const KIND_STRUCT = 4;
const KIND_UNION = 5;
const KIND_ENUM = 6;

/** Bytes that follow a type's 12-byte header, by kind (btf.rst, "Type Encoding"). */
function trailerBytes(kind: number, vlen: number): number {
  switch (kind) {
    case 1: // INT
    case 14: // VAR
    case 17: // DECL_TAG
      return 4;
    case 3: // ARRAY
      return 12;
    case 4: // STRUCT
    case 5: // UNION
    case 15: // DATASEC
    case 19: // ENUM64
      return 12 * vlen;
    case 6: // ENUM
    case 13: // FUNC_PROTO
      return 8 * vlen;
    default: // PTR, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT, FUNC, FLOAT, TYPE_TAG
      return 0;
  }
}

/** Structs, and enumerators' values (`memory_cgrp_id`), of a BTF blob; undefined if it is not one this reader understands. */
export function parseBtf(
  buf: Uint8Array,
  wanted: ReadonlySet<string>,
  wantedEnumerators: ReadonlySet<string>,
): { structs: Map<string, BtfStruct>; enumerators: Map<string, number> } | undefined {
  if (buf.length < 24) return undefined;
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  if (dv.getUint16(0, true) !== BTF_MAGIC) return undefined;
  const hdrLen = dv.getUint32(4, true);
  const typeStart = hdrLen + dv.getUint32(8, true);
  const typeEnd = typeStart + dv.getUint32(12, true);
  const strStart = hdrLen + dv.getUint32(16, true);
  const strEnd = strStart + dv.getUint32(20, true);
  if (typeEnd > buf.length || strEnd > buf.length) return undefined;
  const decoder = new TextDecoder();
  const name = (off: number) => {
    const at = strStart + off;
    if (off === 0 || at >= strEnd) return "";
    const end = buf.indexOf(0, at);
    return decoder.decode(buf.subarray(at, end < 0 ? strEnd : end));
  };
  const found = new Map<string, BtfStruct>();
  const enumerators = new Map<string, number>();
  for (let at = typeStart; at + 12 <= typeEnd;) {
    const info = dv.getUint32(at + 4, true);
    const kind = (info >>> 24) & 0x1f;
    const vlen = info & 0xffff;
    const next = at + 12 + trailerBytes(kind, vlen);
    if (kind === KIND_STRUCT || kind === KIND_UNION) {
      const typeName = name(dv.getUint32(at, true));
      if (wanted.has(typeName) && !found.has(typeName) && next <= typeEnd) {
        const bitfields = info >>> 31 === 1;
        const members = new Map<string, BtfMember>();
        for (let m = at + 12; m < next; m += 12) {
          const raw = dv.getUint32(m + 8, true);
          const bitOffset = bitfields ? raw & 0xffffff : raw;
          if (bitfields && raw >>> 24 !== 0) continue;
          const memberName = name(dv.getUint32(m, true));
          if (memberName && bitOffset % 8 === 0) members.set(memberName, { name: memberName, offset: bitOffset / 8 });
        }
        found.set(typeName, { size: dv.getUint32(at + 8, true), members });
      }
    } else if (kind === KIND_ENUM && wantedEnumerators.size && next <= typeEnd) {
      for (let e = at + 12; e < next; e += 8) {
        const enumerator = name(dv.getUint32(e, true));
        if (wantedEnumerators.has(enumerator) && !enumerators.has(enumerator)) enumerators.set(enumerator, dv.getInt32(e + 4, true));
      }
    }
    at = next;
  }
  return { structs: found, enumerators };
}

export interface KernelTypes {
  structs: Map<string, BtfStruct>;
  enumerators: Map<string, number>;
}

let cached: KernelTypes | undefined | null = null;

/** The structs and enumerators oomprof asks about, from the running kernel's BTF (read once). */
export function kernelTypes(): KernelTypes | undefined {
  if (cached === null) {
    try {
      cached = parseBtf(readFileSync("/sys/kernel/btf/vmlinux"), new Set(["pid", "upid", "kernfs_node"]), new Set(["memory_cgrp_id"]));
    } catch {
      cached = undefined;
    }
  }
  return cached;
}
