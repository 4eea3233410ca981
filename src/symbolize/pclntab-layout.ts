import { BadBinaryError } from "../errors.ts";
import { PF_X, PT_LOAD, type ElfFile, type ElfSymbol } from "../gobinary/elf.ts";

/**
 * Where Go's pc/line table lives in an ELF file and how it is laid out, per
 * toolchain generation. Layouts follow runtime/symtab.go (pcHeader, functab,
 * _func, moduledata, inlinedCall) and cmd/link/internal/ld/pcln.go of each
 * release:
 *
 *   magic       Go      ftab entry              _func                     inline entry
 *   0xFFFFFFFA  1.16-17 {entry, funcoff} u64    entry u64, ...; 44 bytes  20 bytes
 *   0xFFFFFFF0  1.18-19 {entryoff, funcoff} u32 entryoff u32; 40 bytes    20 bytes
 *   0xFFFFFFF1  1.20+   {entryoff, funcoff} u32 + startLine; 44 bytes     16 bytes
 *
 * Funcdata (the inline tree is funcdata 3) holds absolute pointers up to 1.17,
 * and uint32 offsets from moduledata.gofunc (the go:func.* symbol) from 1.18.
 */

export interface PclntabLayout {
  /** Human-readable generation, for messages. */
  readonly generation: "go1.16" | "go1.18" | "go1.20";
  readonly headerSize: number;
  /** Header offsets of the table offsets; textStart is -1 before 1.18. */
  readonly header: { textStart: number; funcname: number; cu: number; filetab: number; pctab: number; pcln: number };
  /** 16 when ftab entries are {uintptr, uintptr} (absolute PCs), 8 when {uint32, uint32}. */
  readonly ftabEntrySize: 8 | 16;
  /** _func field offsets; startLine is -1 when absent. pcdata[] follows at `size`. */
  readonly func: {
    size: number;
    nameOff: number;
    pcfile: number;
    pcln: number;
    npcdata: number;
    cuOffset: number;
    startLine: number;
    funcID: number;
    nfuncdata: number;
  };
  /** Inline tree entry; parentPc is an offset from the function entry. startLine is -1 when absent. */
  readonly inline: { size: number; funcID: number; nameOff: number; parentPc: number; startLine: number };
  /** Funcdata holds 8-byte absolute pointers (true) or uint32 offsets from gofunc (false). */
  readonly absoluteFuncdata: boolean;
  /** Index of moduledata.gofunc counted in 8-byte words; -1 if moduledata has no gofunc. */
  readonly moduledataGofuncWord: number;
}

const GO116: PclntabLayout = {
  generation: "go1.16",
  headerSize: 64,
  header: { textStart: -1, funcname: 24, cu: 32, filetab: 40, pctab: 48, pcln: 56 },
  ftabEntrySize: 16,
  func: { size: 44, nameOff: 8, pcfile: 24, pcln: 28, npcdata: 32, cuOffset: 36, startLine: -1, funcID: 40, nfuncdata: 43 },
  inline: { size: 20, funcID: 2, nameOff: 12, parentPc: 16, startLine: -1 },
  absoluteFuncdata: true,
  moduledataGofuncWord: -1,
};

const GO118: PclntabLayout = {
  generation: "go1.18",
  headerSize: 72,
  header: { textStart: 24, funcname: 32, cu: 40, filetab: 48, pctab: 56, pcln: 64 },
  ftabEntrySize: 8,
  func: { size: 40, nameOff: 4, pcfile: 20, pcln: 24, npcdata: 28, cuOffset: 32, startLine: -1, funcID: 36, nfuncdata: 39 },
  inline: { size: 20, funcID: 2, nameOff: 12, parentPc: 16, startLine: -1 },
  absoluteFuncdata: false,
  moduledataGofuncWord: 38,
};

const GO120: PclntabLayout = {
  generation: "go1.20",
  headerSize: 72,
  header: GO118.header,
  ftabEntrySize: 8,
  func: { size: 44, nameOff: 4, pcfile: 20, pcln: 24, npcdata: 28, cuOffset: 32, startLine: 36, funcID: 40, nfuncdata: 43 },
  inline: { size: 16, funcID: 0, nameOff: 4, parentPc: 8, startLine: 12 },
  absoluteFuncdata: false,
  // moduledata gained covctrs/ecovctrs before `end` in 1.20.
  moduledataGofuncWord: 40,
};

const LAYOUTS = new Map<number, PclntabLayout>([
  [0xfffffffa, GO116],
  [0xfffffff0, GO118],
  [0xfffffff1, GO120],
]);
/** Go 1.2-1.15 tables: a different header we do not read. */
const MAGIC_GO12 = 0xfffffffb;

/** A byte range of the table, as offsets from the header. */
export interface Region {
  start: number;
  end: number;
}

export interface PclntabHeader {
  layout: PclntabLayout;
  /** Instruction size unit of pc deltas: 1 on amd64, 4 on arm64. */
  pcQuantum: number;
  nfunc: number;
  /** Base of ftab entry offsets (1.18+); for 1.16 the first function's entry. */
  textStart: number;
  funcnametab: Region;
  cutab: Region;
  filetab: Region;
  pctab: Region;
  pclntable: Region;
}

/** The table's bytes (from the header to the end of the section or segment) and their address. */
export interface PclntabLocation {
  bytes: Uint8Array;
  vaddr: bigint;
}

/** Largest function count we accept; the Go toolchain's biggest binaries have a few 100k. */
const MAX_FUNCS = 1 << 24;

/**
 * Parses and sanity-checks the pcHeader at the start of `bytes`. Returns a
 * reason string instead of throwing, so the magic scan can try other candidates.
 */
export function parseHeader(bytes: Uint8Array): PclntabHeader | string {
  if (bytes.length < 8) return "table too short";
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const magic = view.getUint32(0, true);
  const layout = LAYOUTS.get(magic);
  if (!layout) {
    if (magic === MAGIC_GO12) return "pclntab from Go 1.15 or older is not supported";
    return `unknown pclntab magic 0x${magic.toString(16)}`;
  }
  if (bytes.length < layout.headerSize) return "truncated pclntab header";
  const pcQuantum = bytes[6]!;
  if (bytes[4] !== 0 || bytes[5] !== 0) return "bad pclntab header padding";
  if (pcQuantum !== 1 && pcQuantum !== 2 && pcQuantum !== 4) return `bad pclntab pc quantum ${pcQuantum}`;
  if (bytes[7] !== 8) return `unsupported pointer size ${bytes[7]}`;
  const word = (at: number) => view.getBigUint64(at, true);
  const nfunc = word(8);
  if (nfunc === 0n || nfunc > BigInt(MAX_FUNCS)) return `implausible function count ${nfunc}`;

  const h = layout.header;
  const offsets: Array<[keyof typeof h, bigint]> = [
    ["funcname", word(h.funcname)],
    ["cu", word(h.cu)],
    ["filetab", word(h.filetab)],
    ["pctab", word(h.pctab)],
    ["pcln", word(h.pcln)],
  ];
  for (const [name, off] of offsets) {
    if (off < BigInt(layout.headerSize) || off >= BigInt(bytes.length)) return `pclntab ${name} offset out of range`;
  }
  // The header gives only starts; each table ends where the next one (in address order) begins.
  const starts = offsets.map(([, off]) => Number(off)).sort((a, b) => a - b);
  const regionFrom = (off: bigint): Region => {
    const start = Number(off);
    const next = starts.find((s) => s > start);
    return { start, end: next ?? bytes.length };
  };
  const [funcname, cu, filetab, pctab, pcln] = offsets.map(([, off]) => regionFrom(off)) as [Region, Region, Region, Region, Region];

  let textStart = 0;
  if (h.textStart >= 0) {
    const t = word(h.textStart);
    if (t > BigInt(Number.MAX_SAFE_INTEGER)) return "implausible text start";
    textStart = Number(t);
  }
  const n = Number(nfunc);
  if (pcln.start + (n + 1) * layout.ftabEntrySize > pcln.end) return "function table runs past the end of pclntab";
  return { layout, pcQuantum, nfunc: n, textStart, funcnametab: funcname, cutab: cu, filetab, pctab, pclntable: pcln };
}

/**
 * Finds the pclntab: by section name, then by the runtime.pclntab symbol, then
 * by scanning loadable segments for a header that parses.
 */
export function locatePclntab(elf: ElfFile): { location: PclntabLocation; header: PclntabHeader } {
  const tried: string[] = [];
  const attempt = (location: PclntabLocation | undefined, what: string) => {
    if (!location) return undefined;
    const header = parseHeader(location.bytes);
    if (typeof header === "string") {
      tried.push(`${what}: ${header}`);
      return undefined;
    }
    if (header.textStart === 0 && header.layout.header.textStart >= 0) {
      // Go 1.26 stopped storing textStart (it needed a relocation); the runtime uses
      // moduledata.text instead, which is where .text (runtime.text) starts.
      const text = elf.section(".text")?.addr ?? symbolsOrNone(elf).get("runtime.text")?.value;
      if (text === undefined || text > BigInt(Number.MAX_SAFE_INTEGER)) {
        tried.push(`${what}: no text start (Go 1.26+ keeps it outside pclntab)`);
        return undefined;
      }
      header.textStart = Number(text);
    }
    return { location, header };
  };

  // Internal linking names it .gopclntab; PIE builds put it in .data.rel.ro.gopclntab.
  for (const name of [".gopclntab", ".data.rel.ro.gopclntab"]) {
    const section = elf.section(name);
    const bytes = elf.sectionData(name);
    const found = section && bytes ? attempt({ bytes, vaddr: section.addr }, name) : undefined;
    if (found) return found;
  }

  const symbols = symbolsOrNone(elf);
  const start = symbols.get("runtime.pclntab") ?? symbols.get("runtime.pcheader");
  if (start) {
    const end = symbols.get("runtime.epclntab");
    const found = attempt(readToSegmentEnd(elf, start.value, end?.value), "runtime.pclntab symbol");
    if (found) return found;
  }

  const scanned = scanForHeader(elf, attempt);
  if (scanned) return scanned;
  throw new BadBinaryError(elf.path, tried.length ? `no usable Go pclntab (${tried.join("; ")})` : "no Go pclntab found (not a Go binary?)");
}

/** The ELF symbols, or none if the symbol table is corrupt: they are only one of several ways in. */
function symbolsOrNone(elf: ElfFile): Map<string, ElfSymbol> {
  try {
    return elf.symbols();
  } catch (e) {
    if (e instanceof BadBinaryError) return new Map();
    throw e;
  }
}

/** Bytes from `addr` up to `end` (if given and sensible) or the end of its segment's file data. */
function readToSegmentEnd(elf: ElfFile, addr: bigint, end?: bigint): PclntabLocation | undefined {
  for (const seg of elf.segments) {
    if (seg.type !== PT_LOAD || addr < seg.vaddr || addr >= seg.vaddr + BigInt(seg.filesz)) continue;
    const segEnd = seg.vaddr + BigInt(seg.filesz);
    const stop = end !== undefined && end > addr && end <= segEnd ? end : segEnd;
    const bytes = elf.readVirtual(addr, Number(stop - addr));
    return bytes ? { bytes, vaddr: addr } : undefined;
  }
  return undefined;
}

/** Upper bound on header candidates checked by the scan, so junk data cannot make it slow. */
const MAX_SCAN_CANDIDATES = 64;

function scanForHeader<T>(elf: ElfFile, attempt: (loc: PclntabLocation, what: string) => T | undefined): T | undefined {
  // Read-only data first: that is where the linker puts the table.
  const segments = elf.segments.filter((s) => s.type === PT_LOAD && s.filesz > 0).sort((a, b) => (a.flags & PF_X) - (b.flags & PF_X));
  let candidates = 0;
  for (const seg of segments) {
    const bytes = elf.readVirtual(seg.vaddr, seg.filesz);
    if (!bytes) continue;
    // The header is pointer-aligned: magic (4 bytes), 0, 0, quantum, 8.
    for (let at = 0; at + 8 <= bytes.length; at += 8) {
      if (bytes[at + 1] !== 0xff || bytes[at + 2] !== 0xff || bytes[at + 3] !== 0xff) continue;
      if (bytes[at + 4] !== 0 || bytes[at + 5] !== 0 || bytes[at + 7] !== 8) continue;
      const b0 = bytes[at]!;
      if (b0 !== 0xf0 && b0 !== 0xf1 && b0 !== 0xfa) continue;
      if (++candidates > MAX_SCAN_CANDIDATES) return undefined;
      const found = attempt({ bytes: bytes.subarray(at), vaddr: seg.vaddr + BigInt(at) }, "magic scan");
      if (found) return found;
    }
  }
  return undefined;
}

/**
 * The base address funcdata offsets are relative to (moduledata.gofunc), for
 * 1.18+ tables. Tries runtime.firstmoduledata, then any moduledata found by
 * scanning data sections for a pointer to the table header (works on stripped
 * binaries), then the go:func.* symbol. Undefined if none is found; inline
 * frames are then unavailable.
 */
export function findGofunc(elf: ElfFile, location: PclntabLocation, header: PclntabHeader, release: number | undefined): bigint | undefined {
  // Go 1.27 added typedesclen, itaboffset and itabsize to moduledata ahead of gofunc,
  // without a new pclntab magic: the release says which word it is.
  const word = header.layout.moduledataGofuncWord >= 0 && (release ?? 0) >= 27 ? header.layout.moduledataGofuncWord + 3 : header.layout.moduledataGofuncWord;
  if (word < 0) return undefined;
  const symbols = symbolsOrNone(elf);
  const fromModuledata = (addr: bigint): bigint | undefined => {
    const md = elf.readVirtual(addr, (word + 1) * 8);
    if (!md) return undefined;
    const view = new DataView(md.buffer, md.byteOffset, md.byteLength);
    const at = (i: number) => view.getBigUint64(i * 8, true);
    // pcHeader, funcnametab.ptr and text must agree with the table we already parsed.
    if (at(0) !== location.vaddr) return undefined;
    if (at(1) !== location.vaddr + BigInt(header.funcnametab.start)) return undefined;
    if (at(22) !== BigInt(header.textStart)) return undefined;
    const gofunc = at(word);
    return elf.readVirtual(gofunc, 1) ? gofunc : undefined;
  };

  const first = symbols.get("runtime.firstmoduledata");
  const viaSymbol = first ? fromModuledata(first.value) : undefined;
  if (viaSymbol !== undefined) return viaSymbol;

  for (const addr of moduledataCandidates(elf, location.vaddr)) {
    const gofunc = fromModuledata(addr);
    if (gofunc !== undefined) return gofunc;
  }

  return (symbols.get("go:func.*") ?? symbols.get("go.func.*") ?? symbols.get("runtime.gofunc"))?.value;
}

/** Addresses of 8-byte words in the data sections that hold `target` (moduledata.pcHeader candidates). */
function* moduledataCandidates(elf: ElfFile, target: bigint): Generator<bigint> {
  const ranges: Array<{ vaddr: bigint; bytes: Uint8Array }> = [];
  // Go 1.26 moved the first moduledata into a section of its own, .go.module.
  for (const name of [".go.module", ".noptrdata", ".data", ".data.rel.ro"]) {
    const s = elf.section(name);
    const bytes = s ? elf.sectionData(name) : undefined;
    if (s && bytes) ranges.push({ vaddr: s.addr, bytes });
  }
  if (ranges.length === 0) {
    // No section headers: fall back to every writable segment.
    for (const seg of elf.segments) {
      if (seg.type !== PT_LOAD || (seg.flags & PF_X) !== 0 || (seg.flags & 2) === 0) continue;
      const bytes = elf.readVirtual(seg.vaddr, seg.filesz);
      if (bytes) ranges.push({ vaddr: seg.vaddr, bytes });
    }
  }
  const lo = Number(target & 0xffffffffn);
  const hi = Number((target >> 32n) & 0xffffffffn);
  for (const { vaddr, bytes } of ranges) {
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    // moduledata is pointer-aligned; keep the scan relative to an aligned address.
    const skew = Number((8n - (vaddr % 8n)) % 8n);
    for (let at = skew; at + 8 <= bytes.length; at += 8) {
      if (view.getUint32(at, true) === lo && view.getUint32(at + 4, true) === hi) yield vaddr + BigInt(at);
    }
  }
}
