import { fstatSync, readSync } from "node:fs";
import { BadBinaryError } from "../errors.ts";
import { mapFile } from "../process/file-map.ts";

/**
 * A minimal, bounds-checked reader for 64-bit little-endian ELF files: just what
 * oomprof needs to find Go's runtime variables, its pclntab and build info.
 * Every offset read from the file is checked before use, so a truncated or
 * corrupt binary yields a BadBinaryError instead of a crash or a hang.
 */

export interface ElfSection {
  name: string;
  type: number;
  flags: bigint;
  addr: bigint;
  offset: number;
  size: number;
  link: number;
  entsize: number;
}

export interface ElfSegment {
  type: number;
  flags: number;
  offset: number;
  vaddr: bigint;
  filesz: number;
  memsz: number;
}

export interface ElfSymbol {
  name: string;
  value: bigint;
  size: number;
  type: number;
}

export const PT_LOAD = 1;
export const PF_X = 1;
const SHT_SYMTAB = 2;
const SHT_NOTE = 7;
const SHT_NOBITS = 8;
const ET_EXEC = 2;
const ET_DYN = 3;
const EM_X86_64 = 62;
const EM_AARCH64 = 183;

/**
 * Why the kernel could not run this ELF file as it is (its loadable segments are cut
 * off or its program headers are broken), or undefined when it looks loadable or is
 * not a 64-bit little-endian ELF file at all (scripts and other formats are for the
 * kernel to judge). Section headers do not matter here: the kernel never reads them.
 */
export function elfLoadProblem(data: Uint8Array): string | undefined {
  if (data.length < 4 || data[0] !== 0x7f || data[1] !== 0x45 || data[2] !== 0x4c || data[3] !== 0x46) return undefined;
  if (data.length < 64) return "truncated ELF header";
  if (data[4] !== 2 || data[5] !== 1) return undefined;
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const phoff = view.getBigUint64(32, true);
  const phentsize = view.getUint16(54, true);
  const phnum = view.getUint16(56, true);
  if (phentsize !== 56 || phnum === 0) return "no valid program headers";
  if (phoff + BigInt(phentsize * phnum) > BigInt(data.length)) return "program headers cut off";
  let loads = 0;
  for (let i = 0; i < phnum; i++) {
    const at = Number(phoff) + i * phentsize;
    if (view.getUint32(at, true) !== PT_LOAD) continue;
    loads++;
    const offset = view.getBigUint64(at + 8, true);
    const filesz = view.getBigUint64(at + 32, true);
    const memsz = view.getBigUint64(at + 40, true);
    if (filesz > memsz) return "a loadable segment is larger in the file than in memory";
    if (offset + filesz > BigInt(data.length)) return `a loadable segment is cut off (the file ends at byte ${data.length}, the segment at ${offset + filesz})`;
  }
  return loads === 0 ? "no loadable segments" : undefined;
}

export class ElfFile {
  readonly sections: ElfSection[];
  readonly segments: ElfSegment[];
  readonly type: number;
  readonly machine: number;
  private view: DataView;
  private symbolCache?: Map<string, ElfSymbol>;

  constructor(
    readonly path: string,
    readonly data: Uint8Array,
    /** Whether data still holds the file (a mapped file can change under it; a copy cannot). */
    readonly unchanged: () => boolean = () => true,
  ) {
    this.view = new DataView(data.buffer, data.byteOffset, data.byteLength);
    if (data.length < 64 || data[0] !== 0x7f || data[1] !== 0x45 || data[2] !== 0x4c || data[3] !== 0x46) {
      throw new BadBinaryError(path, "not an ELF file");
    }
    if (data[4] !== 2) throw new BadBinaryError(path, "only 64-bit ELF is supported");
    if (data[5] !== 1) throw new BadBinaryError(path, "only little-endian ELF is supported");
    this.type = this.u16(16);
    this.machine = this.u16(18);
    if (this.type !== ET_EXEC && this.type !== ET_DYN) throw new BadBinaryError(path, "ELF file is not an executable");
    if (this.machine !== EM_X86_64 && this.machine !== EM_AARCH64) {
      throw new BadBinaryError(path, `unsupported ELF machine ${this.machine}`);
    }
    this.segments = this.readSegments();
    this.sections = this.readSections();
  }

  /** The whole file behind fd, mapped (see mapFile) or else read; the fd stays open. */
  static fromFd(fd: number, path: string): ElfFile {
    let bytes: Uint8Array;
    try {
      const mapped = mapFile(fd);
      if (mapped) return new ElfFile(path, mapped.bytes, mapped.unchanged);
      const size = fstatSync(fd).size;
      bytes = new Uint8Array(size);
      for (let at = 0; at < size;) {
        const n = readSync(fd, bytes, at, size - at, at);
        if (n === 0) throw new Error("file shrank while being read");
        at += n;
      }
    } catch (e) {
      if (e instanceof BadBinaryError) throw e;
      throw new BadBinaryError(path, `cannot read: ${(e as Error).message}`);
    }
    return new ElfFile(path, bytes);
  }

  static async open(path: string): Promise<ElfFile> {
    let bytes: Uint8Array;
    try {
      bytes = new Uint8Array(await Bun.file(path).arrayBuffer());
    } catch (e) {
      throw new BadBinaryError(path, `cannot read: ${(e as Error).message}`);
    }
    return new ElfFile(path, bytes);
  }

  get isPie(): boolean {
    return this.type === ET_DYN;
  }

  get arch(): "amd64" | "arm64" {
    return this.machine === EM_X86_64 ? "amd64" : "arm64";
  }

  section(name: string): ElfSection | undefined {
    return this.sections.find((s) => s.name === name);
  }

  /** The bytes of a section, or undefined if it is absent or has no file data. */
  sectionData(name: string): Uint8Array | undefined {
    const s = this.section(name);
    if (!s || s.type === SHT_NOBITS) return undefined;
    return this.slice(s.offset, s.size, `section ${name}`);
  }

  /** The first executable PT_LOAD segment: what the kernel reports as mm->start_code. */
  textSegment(): ElfSegment {
    const seg = this.segments.filter((p) => p.type === PT_LOAD && (p.flags & PF_X) !== 0).sort((a, b) => (a.vaddr < b.vaddr ? -1 : 1))[0];
    if (!seg) throw new BadBinaryError(this.path, "no executable segment");
    return seg;
  }

  /** Reads `size` bytes at virtual address `addr` from the file image, if they are file-backed. */
  readVirtual(addr: bigint, size: number): Uint8Array | undefined {
    for (const p of this.segments) {
      if (p.type !== PT_LOAD) continue;
      if (addr >= p.vaddr && addr + BigInt(size) <= p.vaddr + BigInt(p.filesz)) {
        return this.slice(p.offset + Number(addr - p.vaddr), size, "virtual read");
      }
    }
    return undefined;
  }

  symbol(name: string): ElfSymbol | undefined {
    return this.symbols().get(name);
  }

  symbols(): Map<string, ElfSymbol> {
    if (this.symbolCache) return this.symbolCache;
    const out = new Map<string, ElfSymbol>();
    const symtab = this.sections.find((s) => s.type === SHT_SYMTAB);
    if (symtab) {
      const strtab = this.sections[symtab.link];
      if (!strtab) throw new BadBinaryError(this.path, "symbol table has no string table");
      const strings = this.slice(strtab.offset, strtab.size, "symbol strings");
      const count = Math.floor(symtab.size / 24);
      this.slice(symtab.offset, count * 24, "symbol table");
      for (let i = 1; i < count; i++) {
        const at = symtab.offset + i * 24;
        const nameOff = this.u32(at);
        const info = this.view.getUint8(at + 4);
        const value = this.u64(at + 8);
        const size = Number(this.u64(at + 16));
        const name = cString(strings, nameOff);
        if (name) out.set(name, { name, value, size, type: info & 0xf });
      }
    }
    this.symbolCache = out;
    return out;
  }

  /** Notes of the given type from SHT_NOTE sections, as [name, descriptor] pairs. */
  notes(): Array<{ name: string; type: number; desc: Uint8Array }> {
    const out: Array<{ name: string; type: number; desc: Uint8Array }> = [];
    for (const s of this.sections) {
      if (s.type !== SHT_NOTE) continue;
      const d = this.slice(s.offset, s.size, "note");
      const v = new DataView(d.buffer, d.byteOffset, d.byteLength);
      let at = 0;
      while (at + 12 <= d.length) {
        const namesz = v.getUint32(at, true);
        const descsz = v.getUint32(at + 4, true);
        const type = v.getUint32(at + 8, true);
        const nameAt = at + 12;
        const descAt = nameAt + align4(namesz);
        const end = descAt + align4(descsz);
        if (descAt + descsz > d.length) break;
        out.push({ name: cString(d.subarray(nameAt, nameAt + namesz), 0), type, desc: d.subarray(descAt, descAt + descsz) });
        at = end;
      }
    }
    return out;
  }

  private readSegments(): ElfSegment[] {
    const phoff = this.u64(32);
    const phentsize = this.u16(54);
    const phnum = this.u16(56);
    if (phnum === 0) return [];
    if (phentsize < 56) throw new BadBinaryError(this.path, "bad program header size");
    const base = this.offset(phoff, phentsize * phnum, "program headers");
    const out: ElfSegment[] = [];
    for (let i = 0; i < phnum; i++) {
      const at = base + i * phentsize;
      out.push({
        type: this.u32(at),
        flags: this.u32(at + 4),
        offset: Number(this.u64(at + 8)),
        vaddr: this.u64(at + 16),
        filesz: Number(this.u64(at + 32)),
        memsz: Number(this.u64(at + 40)),
      });
    }
    return out;
  }

  private readSections(): ElfSection[] {
    const shoff = this.u64(40);
    const shentsize = this.u16(58);
    const shnum = this.u16(60);
    const shstrndx = this.u16(62);
    if (shnum === 0) return [];
    if (shentsize < 64) throw new BadBinaryError(this.path, "bad section header size");
    const base = this.offset(shoff, shentsize * shnum, "section headers");
    const raw = [];
    for (let i = 0; i < shnum; i++) {
      const at = base + i * shentsize;
      raw.push({
        nameOff: this.u32(at),
        type: this.u32(at + 4),
        flags: this.u64(at + 8),
        addr: this.u64(at + 16),
        offset: Number(this.u64(at + 24)),
        size: Number(this.u64(at + 32)),
        link: this.u32(at + 40),
        entsize: Number(this.u64(at + 56)),
      });
    }
    const strHdr = raw[shstrndx];
    const names = strHdr ? this.slice(strHdr.offset, strHdr.size, "section names") : new Uint8Array();
    return raw.map((r) => ({ ...r, name: cString(names, r.nameOff) }));
  }

  private offset(off: bigint, len: number, what: string): number {
    if (off < 0n || off + BigInt(len) > BigInt(this.data.length)) {
      throw new BadBinaryError(this.path, `truncated or corrupt ELF (${what} out of bounds)`);
    }
    return Number(off);
  }

  private slice(off: number, len: number, what: string): Uint8Array {
    if (!Number.isSafeInteger(off) || !Number.isSafeInteger(len) || off < 0 || len < 0 || off + len > this.data.length) {
      throw new BadBinaryError(this.path, `truncated or corrupt ELF (${what} out of bounds)`);
    }
    return this.data.subarray(off, off + len);
  }

  private u16(at: number): number {
    return this.view.getUint16(at, true);
  }
  private u32(at: number): number {
    return this.view.getUint32(at, true);
  }
  private u64(at: number): bigint {
    return this.view.getBigUint64(at, true);
  }
}

const utf8 = new TextDecoder();

/** Rounds up to 4 without 32-bit overflow (note sizes come from untrusted files). */
function align4(n: number): number {
  return Math.ceil(n / 4) * 4;
}

function cString(bytes: Uint8Array, at: number): string {
  if (at >= bytes.length) return "";
  let end = at;
  while (end < bytes.length && bytes[end] !== 0) end++;
  return utf8.decode(bytes.subarray(at, end));
}
