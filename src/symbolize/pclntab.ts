import { BadBinaryError } from "../errors.ts";
import { goMinorVersion, readBuildInfo } from "../gobinary/buildinfo.ts";
import { PT_LOAD, type ElfFile } from "../gobinary/elf.ts";
import { findGofunc, locatePclntab, type PclntabHeader, type PclntabLayout, type Region } from "./pclntab-layout.ts";
import type { SourceFrame } from "./types.ts";

/**
 * Self-contained Go symbolization from the binary's own pc/line table
 * (.gopclntab), the same data runtime.CallersFrames reads. Needs no DWARF and
 * no symbol table, so it works on stripped binaries.
 *
 * Construction indexes the function table (entry offsets for binary search);
 * a function's pc-value tables are only decoded when one of its PCs is asked for.
 * Every read is bounds-checked: a corrupt table fails construction with
 * BadBinaryError, or yields fewer frames for the affected PCs.
 */

export type { SourceFrame } from "./types.ts";

// PCDATA and FUNCDATA table indexes (runtime/symtab.go, internal/abi).
const PCDATA_INL_TREE_INDEX = 2;
const FUNCDATA_INL_TREE = 3;
/** funcID 0 is funcID_normal in every release. */
const FUNCID_NORMAL = 0;
/** Bounds the inline walk; real inlining depth is limited by the compiler to far less. */
const MAX_INLINE_DEPTH = 256;
const NO_FUNCDATA = 0xffffffff;
/** Marks errors that escaped the explicit bounds checks (the fuzz test looks for it). */
export const UNEXPECTED_PARSE_ERROR = "unexpected error while reading the Go pclntab";

/** The fields of one _func record that symbolization needs. */
interface FuncRecord {
  /** Absolute entry PC. */
  entry: number;
  nameOff: number;
  pcfile: number;
  pcln: number;
  cuOffset: number;
  startLine: number | undefined;
  /** Offset of the pcdata array from the table start, and its length. */
  pcdataAt: number;
  npcdata: number;
  funcdataAt: number;
  nfuncdata: number;
}

interface InlinedCall {
  funcID: number;
  nameOff: number;
  parentPc: number;
  startLine: number | undefined;
}

/** A file-backed PT_LOAD segment, for reading funcdata by virtual address. */
interface LoadedSegment {
  vaddr: number;
  end: number;
  fileOffset: number;
}

export class GoSymbolizer {
  readonly functionCount: number;
  private readonly layout: PclntabLayout;
  private readonly bytes: Uint8Array;
  private readonly view: DataView;
  private readonly header: PclntabHeader;
  /** ftab entry PCs as offsets from `textBase`, nfunc + 1 of them (the last is the end of text). */
  private readonly entryOffsets: Uint32Array;
  /** ftab funcoff: offsets of _func records from the start of pclntable. */
  private readonly funcOffsets: Uint32Array;
  private readonly textBase: number;
  /** Virtual address of the table header. */
  private readonly tableVaddr: number;
  /** moduledata.gofunc for 1.18+ tables; undefined if it could not be found. */
  private readonly gofunc: number | undefined;
  private readonly segments: LoadedSegment[];
  private readonly fileView: DataView;
  private readonly nameCache = new Map<number, { function: string; symbolName?: string }>();
  /** runtime/pprof names functions by their full symbol since Go 1.21; unknown releases are taken as new. */
  private readonly pprofUsesSymbolNames: boolean;
  private readonly fileCache = new Map<number, string>();
  private wrapperFuncID: number | undefined;
  /** Function index by raw name, built on the first functionRange call. */
  private functionsByName: Map<string, number> | undefined;

  private constructor(private readonly elf: ElfFile) {
    const { location, header } = locatePclntab(elf);
    this.header = header;
    this.layout = header.layout;
    this.bytes = location.bytes;
    this.view = new DataView(location.bytes.buffer, location.bytes.byteOffset, location.bytes.byteLength);
    this.functionCount = header.nfunc;
    this.tableVaddr = Number(location.vaddr);
    this.fileView = new DataView(elf.data.buffer, elf.data.byteOffset, elf.data.byteLength);
    // The Go release (undefined when the build info is unreadable): how its runtime/pprof
    // names functions, and which moduledata word holds gofunc (findGofunc).
    const release = goMinorVersion(readBuildInfo(elf)?.goVersion ?? "");
    this.pprofUsesSymbolNames = release === undefined || release >= 21;
    this.segments = elf.segments
      .filter((s) => s.type === PT_LOAD && s.filesz > 0 && s.vaddr <= BigInt(Number.MAX_SAFE_INTEGER))
      .map((s) => ({ vaddr: Number(s.vaddr), end: Number(s.vaddr) + s.filesz, fileOffset: s.offset }))
      .filter((s) => Number.isSafeInteger(s.end) && s.fileOffset >= 0 && s.fileOffset + (s.end - s.vaddr) <= elf.data.length);

    const index = this.indexFunctions();
    this.entryOffsets = index.entryOffsets;
    this.funcOffsets = index.funcOffsets;
    this.textBase = index.textBase;

    const gofunc = this.layout.absoluteFuncdata ? undefined : findGofunc(elf, location, header, release);
    this.gofunc = gofunc !== undefined && gofunc <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(gofunc) : undefined;
  }

  static fromElf(elf: ElfFile): GoSymbolizer {
    try {
      return new GoSymbolizer(elf);
    } catch (e) {
      if (e instanceof BadBinaryError) throw e;
      // Every read is bounds-checked, so this is a bug; still, it was caused
      // by this binary, so report it as a bad binary rather than crash.
      throw new BadBinaryError(elf.path, `${UNEXPECTED_PARSE_ERROR} (${(e as Error)?.message})`);
    }
  }

  /** Whether the binary's bytes still hold its file: a mapped binary rewritten in place would fault on reading. */
  unchanged(): boolean {
    return this.elf.unchanged();
  }

  /**
   * Frames for one look-up PC (return addresses already decremented by the
   * caller), innermost inlined callee first and the physical function last.
   * Empty if the PC is outside every function. `pc` is a link-time address:
   * for PIE processes subtract the load bias first.
   *
   * Stacks from runtime.Callers and memory-profile buckets already hold one PC
   * per logical frame, so for such a list frames(pc[i] - 1) ends with the
   * frames of pc[i+1], ... up to the physical one; callers merging a whole
   * stack must skip those (as runtime/pprof does).
   */
  frames(pc: bigint): SourceFrame[] {
    if (pc < 0n || pc > BigInt(Number.MAX_SAFE_INTEGER)) return [];
    const index = this.findFunction(Number(pc));
    if (index < 0) return [];
    const fn = this.readFunc(index);
    if (!fn) return [];
    const inlineTree = this.inlineTreeAddress(fn);
    const out: SourceFrame[] = [];

    // The walk runtime.Callers does (tracebackPCs / inlineUnwinder): the
    // inline-tree index at the PC names the innermost inlined call; its
    // parentPc is an instruction in the caller whose position is the call
    // site, and the walk repeats there until the index is -1 (the physical
    // function). Each frame's file:line comes from the pc tables at its PC.
    let targetOffset = Number(pc) - fn.entry;
    for (let depth = 0; ; depth++) {
      const treeIndex = inlineTree !== undefined && depth < MAX_INLINE_DEPTH ? this.pcdataValue(fn, PCDATA_INL_TREE_INDEX, targetOffset) : -1;
      const call = treeIndex >= 0 ? this.readInlinedCall(inlineTree!, treeIndex) : undefined;
      const { file, line } = this.fileLine(fn, targetOffset);
      if (!call) {
        out.push({ ...this.names(fn.nameOff), file, line, ...startLine(fn.startLine), inlined: false });
        return out;
      }
      // runtime.Callers drops inlined wrapper functions unless the wrapper
      // called a panic function (elideWrapperCalling). Panic functions are
      // never inlined, and the callee of the innermost frame is in another
      // physical frame we cannot see, so inlined wrappers are always dropped.
      const isWrapper = call.funcID !== FUNCID_NORMAL && call.funcID === this.wrapperID();
      if (!isWrapper) {
        out.push({ ...this.names(call.nameOff), file, line, ...startLine(call.startLine), inlined: true });
      }
      targetOffset = call.parentPc;
    }
  }

  /**
   * The code range of the function with this exact linker name (for example
   * "runtime.mProf_Flush"): its entry PC and the next function's entry, as
   * link-time addresses. Undefined if the table has no such function; if
   * several share the name, the first in PC order. Used to find runtime
   * variables in binaries without a symbol table (src/gobinary/stripped-vars.ts).
   */
  functionRange(name: string): { entry: bigint; end: bigint } | undefined {
    if (!this.functionsByName) {
      const byName = new Map<string, number>();
      const { pclntable, funcnametab } = this.header;
      for (let i = 0; i < this.funcOffsets.length; i++) {
        // indexFunctions checked that the whole _func record is inside the table.
        const nameOff = this.view.getInt32(pclntable.start + this.funcOffsets[i]! + this.layout.func.nameOff, true);
        // Unlike runtime.cfuncname, offset 0 is a name here: the first function's.
        const raw = this.cString(funcnametab, nameOff);
        if (raw !== undefined && !byName.has(raw)) byName.set(raw, i);
      }
      this.functionsByName = byName;
    }
    const index = this.functionsByName.get(name);
    if (index === undefined) return undefined;
    return {
      entry: BigInt(this.textBase + this.entryOffsets[index]!),
      end: BigInt(this.textBase + this.entryOffsets[index + 1]!),
    };
  }

  /** Index of the function whose [entry, next entry) range holds pc, or -1. */
  private findFunction(pc: number): number {
    const offset = pc - this.textBase;
    const entries = this.entryOffsets;
    const n = entries.length - 1;
    if (offset < entries[0]! || offset >= entries[n]!) return -1;
    // Largest i < n with entries[i] <= offset (the runtime's findfunc picks the
    // last of several functions sharing an entry).
    let lo = 0;
    let hi = n - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >>> 1;
      if (entries[mid]! <= offset) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }

  /** Reads ftab into typed arrays and checks it is sorted and in bounds. */
  private indexFunctions(): { entryOffsets: Uint32Array; funcOffsets: Uint32Array; textBase: number } {
    const { nfunc, pclntable } = this.header;
    const entrySize = this.layout.ftabEntrySize;
    const entryOffsets = new Uint32Array(nfunc + 1);
    const funcOffsets = new Uint32Array(nfunc);
    const view = this.view;
    const pclnLength = pclntable.end - pclntable.start;
    let textBase = this.header.textStart;
    if (entrySize === 16) {
      // Go 1.16-1.17: absolute entry PCs; rebase them on the first one.
      textBase = this.u64AsNumber(pclntable.start);
    }
    let previous = 0;
    for (let i = 0; i <= nfunc; i++) {
      const at = pclntable.start + i * entrySize;
      let entry: number;
      if (entrySize === 16) {
        entry = this.u64AsNumber(at) - textBase;
        if (!(entry >= 0 && entry <= 0xffffffff)) throw this.corrupt("function entry outside the text range");
      } else {
        entry = view.getUint32(at, true);
      }
      if (entry < previous) throw this.corrupt("function table is not sorted by PC");
      previous = entry;
      entryOffsets[i] = entry;
      if (i === nfunc) break;
      const funcOff = entrySize === 16 ? this.u64AsNumber(at + 8) : view.getUint32(at + 4, true);
      if (funcOff + this.layout.func.size > pclnLength) throw this.corrupt("function record outside the table");
      funcOffsets[i] = funcOff;
    }
    return { entryOffsets, funcOffsets, textBase };
  }

  /** Decodes the _func record of function `index`; undefined if it is inconsistent. */
  private readFunc(index: number): FuncRecord | undefined {
    const layout = this.layout.func;
    const { pclntable } = this.header;
    const at = pclntable.start + this.funcOffsets[index]!;
    if (at + layout.size > pclntable.end) return undefined;
    const view = this.view;
    const entry = this.textBase + this.entryOffsets[index]!;
    const recordedEntry = this.layout.ftabEntrySize === 16 ? this.u64AsNumber(at) : this.textBase + view.getUint32(at, true);
    // ftab and _func must agree on the entry; if not, one of them is corrupt.
    if (recordedEntry !== entry) return undefined;
    const npcdata = view.getUint32(at + layout.npcdata, true);
    const nfuncdata = view.getUint8(at + layout.nfuncdata);
    const pcdataAt = at + layout.size;
    let funcdataAt = pcdataAt + npcdata * 4;
    if (this.layout.absoluteFuncdata) {
      // Pointer-sized funcdata slots are 8-aligned in memory (runtime.funcdata, Go 1.17 and older).
      if ((this.tableVaddr + funcdataAt) % 8 !== 0) funcdataAt += 4;
    }
    const funcdataSize = this.layout.absoluteFuncdata ? 8 : 4;
    if (npcdata > 0xffff || funcdataAt + nfuncdata * funcdataSize > pclntable.end) return undefined;
    return {
      entry,
      nameOff: view.getInt32(at + layout.nameOff, true),
      pcfile: view.getUint32(at + layout.pcfile, true),
      pcln: view.getUint32(at + layout.pcln, true),
      cuOffset: view.getUint32(at + layout.cuOffset, true),
      startLine: layout.startLine >= 0 ? view.getInt32(at + layout.startLine, true) : undefined,
      pcdataAt,
      npcdata,
      funcdataAt,
      nfuncdata,
    };
  }

  /** The address of fn's inline tree (FUNCDATA_InlTree), or undefined if it has none. */
  private inlineTreeAddress(fn: FuncRecord): number | undefined {
    if (FUNCDATA_INL_TREE >= fn.nfuncdata) return undefined;
    if (this.layout.absoluteFuncdata) {
      const pointer = this.u64AsNumber(fn.funcdataAt + FUNCDATA_INL_TREE * 8);
      return pointer > 0 ? pointer : undefined;
    }
    const offset = this.view.getUint32(fn.funcdataAt + FUNCDATA_INL_TREE * 4, true);
    if (offset === NO_FUNCDATA || this.gofunc === undefined) return undefined;
    return this.gofunc + offset;
  }

  private readInlinedCall(tree: number, index: number): InlinedCall | undefined {
    const layout = this.layout.inline;
    const at = this.fileOffsetOf(tree + index * layout.size, layout.size);
    if (at < 0) return undefined;
    const view = this.fileView;
    return {
      funcID: view.getUint8(at + layout.funcID),
      nameOff: view.getInt32(at + layout.nameOff, true),
      parentPc: view.getInt32(at + layout.parentPc, true),
      startLine: layout.startLine >= 0 ? view.getInt32(at + layout.startLine, true) : undefined,
    };
  }

  /** File offset of `size` bytes at virtual address `addr`, or -1 if not file-backed. */
  private fileOffsetOf(addr: number, size: number): number {
    for (const s of this.segments) {
      if (addr >= s.vaddr && addr + size <= s.end) return s.fileOffset + (addr - s.vaddr);
    }
    return -1;
  }

  /** runtime.pcdatavalue1: the value of pcdata table `table` at targetOffset, -1 if none. */
  private pcdataValue(fn: FuncRecord, table: number, targetOffset: number): number {
    if (table >= fn.npcdata) return -1;
    return this.pcValue(this.view.getUint32(fn.pcdataAt + table * 4, true), targetOffset);
  }

  /**
   * runtime.pcvalue: walks a pc-value table (pairs of zig-zag varint value
   * delta and varint pc delta in units of the pc quantum, starting at value
   * -1 and the function entry) to the value in effect at targetOffset. A zero
   * value delta after the first pair ends the table. Returns -1 if the table
   * is absent, ends before targetOffset, or runs off the data.
   */
  private pcValue(tableOffset: number, targetOffset: number): number {
    if (tableOffset === 0) return -1;
    const bytes = this.bytes;
    const { start, end } = this.header.pctab;
    const quantum = this.header.pcQuantum;
    let p = start + tableOffset;
    if (p >= end) return -1;
    let pc = 0;
    let value = -1;
    // Each step consumes at least two bytes, so the loop ends with the table.
    while (p < end) {
      // Value delta (uint32 varint, zig-zag encoded).
      let b = bytes[p++]!;
      let uvdelta = b;
      if (b & 0x80) {
        uvdelta = b & 0x7f;
        for (let shift = 7; ; shift += 7) {
          if (p >= end || shift > 28) return -1;
          b = bytes[p++]!;
          uvdelta |= (b & 0x7f) << shift;
          if (!(b & 0x80)) break;
        }
        uvdelta >>>= 0;
      }
      if (uvdelta === 0 && pc !== 0) return -1;
      value = (value + (-(uvdelta & 1) ^ (uvdelta >>> 1))) | 0;
      // Pc delta (uint32 varint).
      if (p >= end) return -1;
      b = bytes[p++]!;
      let pcdelta = b;
      if (b & 0x80) {
        pcdelta = b & 0x7f;
        for (let shift = 7; ; shift += 7) {
          if (p >= end || shift > 28) return -1;
          b = bytes[p++]!;
          pcdelta |= (b & 0x7f) << shift;
          if (!(b & 0x80)) break;
        }
        pcdelta >>>= 0;
      }
      pc += pcdelta * quantum;
      if (targetOffset < pc) return value;
    }
    return -1;
  }

  /** runtime.funcline1: file and line at targetOffset, or "?" and 0 when unknown. */
  private fileLine(fn: FuncRecord, targetOffset: number): { file: string; line: number } {
    const fileno = this.pcValue(fn.pcfile, targetOffset);
    const line = this.pcValue(fn.pcln, targetOffset);
    const { cutab, filetab } = this.header;
    // The runtime compares fileno with len(filetab) in bytes; keep that check as is.
    if (fileno === -1 || line === -1 || fileno >= filetab.end - filetab.start) return { file: "?", line: 0 };
    const cuEntry = cutab.start + (fn.cuOffset + fileno) * 4;
    if (fileno < 0 || cuEntry < cutab.start || cuEntry + 4 > cutab.end) return { file: "?", line: 0 };
    const fileOff = this.view.getUint32(cuEntry, true);
    if (fileOff === 0xffffffff) return { file: "?", line: 0 };
    let file = this.fileCache.get(fileOff);
    if (file === undefined) {
      file = this.cString(filetab, fileOff) ?? "?";
      this.fileCache.set(fileOff, file);
    }
    return { file, line };
  }

  /** A function's name as runtime.Frame.Function shows it, and its full symbol where runtime/pprof uses that. */
  private names(nameOff: number): { function: string; symbolName?: string } {
    let names = this.nameCache.get(nameOff);
    if (names === undefined) {
      // runtime.cfuncname: name offset 0 means no name.
      const raw = nameOff === 0 ? "" : (this.cString(this.header.funcnametab, nameOff) ?? "?");
      const printable = funcNameForPrint(raw);
      names = this.pprofUsesSymbolNames && raw !== printable ? { function: printable, symbolName: raw } : { function: printable };
      this.nameCache.set(nameOff, names);
    }
    return names;
  }

  /**
   * The funcID the toolchain gives autogenerated wrappers. Its number differs
   * between releases, but it is always the last funcID, and every Go binary has
   * wrappers (type equality functions, method wrappers); so it is the largest
   * funcID in the table. Computed on first need.
   */
  private wrapperID(): number {
    if (this.wrapperFuncID !== undefined) return this.wrapperFuncID;
    let max = FUNCID_NORMAL;
    const { pclntable } = this.header;
    const at = this.layout.func.funcID;
    for (let i = 0; i < this.funcOffsets.length; i++) {
      const off = pclntable.start + this.funcOffsets[i]! + at;
      if (off < pclntable.end) max = Math.max(max, this.bytes[off]!);
    }
    this.wrapperFuncID = max;
    return max;
  }

  /** NUL-terminated string at `offset` within `region`; undefined if out of range or unterminated. */
  private cString(region: Region, offset: number): string | undefined {
    if (offset < 0) return undefined;
    const start = region.start + offset;
    if (start >= region.end) return undefined;
    const end = this.bytes.indexOf(0, start);
    if (end < 0 || end > region.end) return undefined;
    return utf8.decode(this.bytes.subarray(start, end));
  }

  private u64AsNumber(at: number): number {
    const value = this.view.getBigUint64(at, true);
    return value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : -1;
  }

  private corrupt(why: string): BadBinaryError {
    return new BadBinaryError(this.elf.path, `corrupt Go pclntab: ${why}`);
  }
}

const utf8 = new TextDecoder();

function startLine(line: number | undefined): { startLine?: number } {
  return line === undefined ? {} : { startLine: line };
}

/**
 * runtime.funcNameForPrint: everything between the first "[" and the last "]"
 * becomes "...", hiding generic shape types. Go 1.18-1.19 linkers already
 * stored names that way; applying it again changes nothing.
 */
export function funcNameForPrint(name: string): string {
  const open = name.indexOf("[");
  if (open < 0) return name;
  const close = name.lastIndexOf("]");
  if (close <= open) return name;
  return `${name.slice(0, open)}[...]${name.slice(close + 1)}`;
}
