import { BadBinaryError } from "../errors.ts";
import { GoSymbolizer } from "../symbolize/pclntab.ts";
import { PF_X, PT_LOAD, type ElfFile } from "./elf.ts";

/**
 * Finds the Go runtime variables oomprof reads (runtime.mbuckets,
 * runtime.MemProfileRate, runtime.mProfCycle, runtime.disableMemoryProfiling)
 * in a binary without a symbol table (`go build -ldflags=-s`).
 *
 * The function table in .gopclntab survives stripping, so the runtime
 * functions that use these variables can still be found by name. Their machine
 * code names the variables' addresses: on amd64 Go reaches package variables
 * with RIP-relative operands (ModRM mod=00 rm=101, disp32 from the end of the
 * instruction), in PIE builds too. Each function is decoded linearly from its
 * entry with a small instruction-length decoder (Go puts no data inside
 * functions), and each variable is taken from a pattern tied to a line of
 * runtime source, then cross-checked against other functions that use it
 * (runtime/mprof.go, malloc.go, mcache.go, proc.go of Go 1.19-1.24):
 *
 *   mbuckets        the one 64-bit load from data in mProf_FlushLocked
 *                   (`head := mbuckets.Load()`) and in MemProfile (<= 1.22) or
 *                   memProfileInternal (1.23+); stkbucket must take its
 *                   address (`allnext = &mbuckets`).
 *   MemProfileRate  defaultMemProfileRate(512 * 1024) inlined where the
 *   and disable-    variable is initialised: in runtime.init (1.19)
 *   MemoryProfiling `movzx disableMemoryProfiling; ...; mov $0x80000; ...;
 *                   mov reg, MemProfileRate`, and in schedinit (1.21+; 1.20 untested)
 *                   `cmpb disableMemoryProfiling, $0; jcc; movq $0,
 *                   MemProfileRate` (the variable then starts as 0x80000 in
 *                   .noptrdata). Cross-checked with the one 64-bit load in
 *                   allocmcache (nextSample) and the loads in profilealloc.
 *   mProfCycle      mProf_Flush's compare-and-swap loop (setFlushed) loads the
 *                   uint32 and takes its address: the one address that is both.
 *                   mProf_Malloc must load it too. Older releases (runtime.mProf
 *                   struct) have no such loop: the cycle is then left unknown.
 *
 * Every candidate must lie in .noptrdata/.data/.bss/.noptrbss, and the
 * patterns that find a variable must agree; anything else is a BadBinaryError.
 * Builds without optimisation (-gcflags=all=-N -l) do not match the patterns
 * and are refused that way. arm64 is not supported.
 */

export interface StrippedRuntimeVars {
  mbuckets: bigint;
  memProfileRate: bigint;
  /** runtime.mProfCycle (Go 1.19+, cycle stored shifted left by one); absent for older releases. */
  cycle?: { addr: bigint; shifted: boolean };
  disableMemoryProfiling?: bigint;
}

/** The value runtime.MemProfileRate starts with (runtime/mprof.go). */
const DEFAULT_MEM_PROFILE_RATE = 512n * 1024n;
/** Bounds the decoding of one function; the functions read here are a few hundred bytes to a few KiB. */
const MAX_FUNCTION_BYTES = 256 * 1024;
/** How far after the movzx of disableMemoryProfiling the Go 1.19 initialisation may reach. */
const INIT_WINDOW = 8;

export function findRuntimeVarsWithoutSymbols(elf: ElfFile): StrippedRuntimeVars {
  if (elf.arch !== "amd64") {
    throw new BadBinaryError(elf.path, "no symbol table, and finding Go runtime variables in arm64 stripped binaries is not supported");
  }
  try {
    return new Finder(elf).find();
  } catch (e) {
    if (e instanceof BadBinaryError) throw e;
    // Every read is bounds-checked, so this is a bug; it was still caused by this binary.
    throw new BadBinaryError(elf.path, `unexpected error while decoding Go runtime code (${(e as Error)?.message})`);
  }
}

// --- Finding the variables --------------------------------------------------

/** A decoded function: its instructions, and whether decoding reached its end. */
interface DecodedFunction {
  name: string;
  insns: Insn[];
  complete: boolean;
}

class Finder {
  private readonly symbolizer: GoSymbolizer;
  private readonly dataRanges: Array<{ start: bigint; end: bigint }>;
  private readonly cache = new Map<string, DecodedFunction | undefined>();

  constructor(private readonly elf: ElfFile) {
    this.symbolizer = GoSymbolizer.fromElf(elf);
    this.dataRanges = dataRanges(elf);
    if (this.dataRanges.length === 0) throw this.fail("no data sections");
  }

  find(): StrippedRuntimeVars {
    const mbuckets = this.findMbuckets();
    const { memProfileRate, disableMemoryProfiling } = this.findMemProfileRate();
    const cycle = this.findCycle();
    const distinct = new Set([mbuckets, memProfileRate, cycle?.addr, disableMemoryProfiling].filter((a) => a !== undefined));
    if (distinct.size !== 2 + (cycle ? 1 : 0) + (disableMemoryProfiling !== undefined ? 1 : 0)) {
      throw this.fail("two runtime variables resolved to the same address");
    }
    return {
      mbuckets,
      memProfileRate,
      ...(cycle ? { cycle } : {}),
      ...(disableMemoryProfiling !== undefined ? { disableMemoryProfiling } : {}),
    };
  }

  private findMbuckets(): bigint {
    const votes: Array<[string, bigint]> = [];
    for (const name of ["runtime.mProf_FlushLocked", "runtime.memProfileInternal", "runtime.MemProfile"]) {
      const fn = this.decode(name);
      if (!fn?.complete) continue;
      const loads = this.targets(fn, isLoad64);
      if (loads.length === 1) votes.push([name, loads[0]!]);
      else if (loads.length > 1 && name === "runtime.mProf_FlushLocked") throw this.fail(`${name} loads ${loads.length} words, expected one (runtime.mbuckets)`);
    }
    const mbuckets = this.agree("runtime.mbuckets", votes);
    // stkbucket links new buckets in through &mbuckets.
    const stkbucket = this.decode("runtime.stkbucket");
    if (stkbucket?.complete && !this.targets(stkbucket, isLea).includes(mbuckets)) {
      throw this.fail(`runtime.stkbucket does not take the address of the runtime.mbuckets candidate 0x${mbuckets.toString(16)}`);
    }
    return mbuckets;
  }

  private findMemProfileRate(): { memProfileRate: bigint; disableMemoryProfiling?: bigint } {
    const init = [...this.initPattern119(), ...this.initPattern121()];
    const distinctInit = new Map(init.map((m) => [`${m.rate}:${m.disable}`, m]));
    if (distinctInit.size > 1) throw this.fail("several places look like the initialisation of runtime.MemProfileRate");
    const found = [...distinctInit.values()][0];

    const votes: Array<[string, bigint]> = [];
    if (found) votes.push(["MemProfileRate initialisation", found.rate]);
    // allocmcache: c.nextSample = nextSample(), whose only word load is MemProfileRate.
    const allocmcache = this.decode("runtime.allocmcache");
    if (allocmcache?.complete) {
      const loads = this.targets(allocmcache, isLoad64);
      if (loads.length === 1) votes.push(["runtime.allocmcache", loads[0]!]);
    }
    const rate = this.agree("runtime.MemProfileRate", votes);
    const profilealloc = this.decode("runtime.profilealloc");
    if (profilealloc?.complete && !this.targets(profilealloc, isLoad64).includes(rate)) {
      throw this.fail(`runtime.profilealloc does not read the runtime.MemProfileRate candidate 0x${rate.toString(16)}`);
    }
    // Where it has file data (statically initialised, 1.21+), it must hold the default.
    const initial = this.elf.readVirtual(rate, 8);
    if (initial) {
      const value = new DataView(initial.buffer, initial.byteOffset, 8).getBigInt64(0, true);
      if (value !== DEFAULT_MEM_PROFILE_RATE) {
        throw this.fail(`the runtime.MemProfileRate candidate 0x${rate.toString(16)} starts as ${value}, not ${DEFAULT_MEM_PROFILE_RATE}`);
      }
    } else if (!found) {
      throw this.fail("runtime.MemProfileRate: found only by runtime.allocmcache, and it has no initial value to check");
    }

    let disable = found?.disable;
    if (disable !== undefined) {
      // A bool the linker sets to 1 when runtime.MemProfile is unreachable.
      const b = this.elf.readVirtual(disable, 1);
      if (b && b[0] !== 0 && b[0] !== 1) disable = undefined;
    }
    return disable !== undefined ? { memProfileRate: rate, disableMemoryProfiling: disable } : { memProfileRate: rate };
  }

  /**
   * Go 1.19: runtime.init evaluates `MemProfileRate = defaultMemProfileRate(512 * 1024)`:
   * a zero-extending byte load of disableMemoryProfiling, 0x80000 put in a
   * register, and a word store to MemProfileRate, close together with no other
   * memory operand in between.
   */
  private initPattern119(): Array<{ rate: bigint; disable: bigint }> {
    const fn = this.decode("runtime.init");
    if (!fn) return [];
    const out: Array<{ rate: bigint; disable: bigint }> = [];
    fn.insns.forEach((insn, i) => {
      if (!(insn.map === 1 && insn.op === 0xb6 && this.isData(insn.rip))) return;
      let sawDefault = false;
      for (const next of fn.insns.slice(i + 1, i + 1 + INIT_WINDOW)) {
        if (immediateToRegister(next) === DEFAULT_MEM_PROFILE_RATE) sawDefault = true;
        else if (next.rip !== undefined) {
          if (sawDefault && isStore64(next) && this.isData(next.rip)) out.push({ rate: next.rip, disable: insn.rip! });
          return;
        }
      }
    });
    return out;
  }

  /**
   * Go 1.21+: schedinit does `if disableMemoryProfiling { MemProfileRate = 0 }`:
   * `cmpb $0, disableMemoryProfiling; jcc; movq $0, MemProfileRate`. Other
   * flag tests could look alike, so the store's target must start as 512 KiB.
   */
  private initPattern121(): Array<{ rate: bigint; disable: bigint }> {
    const fn = this.decode("runtime.schedinit");
    if (!fn) return [];
    const out: Array<{ rate: bigint; disable: bigint }> = [];
    for (let i = 0; i + 2 < fn.insns.length; i++) {
      const [cmp, jcc, store] = [fn.insns[i]!, fn.insns[i + 1]!, fn.insns[i + 2]!];
      if (!(isCmpByteZero(cmp) && this.isData(cmp.rip) && isJcc(jcc) && isStoreZero64(store) && this.isData(store.rip))) continue;
      const initial = this.elf.readVirtual(store.rip!, 8);
      if (initial && new DataView(initial.buffer, initial.byteOffset, 8).getBigInt64(0, true) === DEFAULT_MEM_PROFILE_RATE) {
        out.push({ rate: store.rip!, disable: cmp.rip! });
      }
    }
    return out;
  }

  private findCycle(): { addr: bigint; shifted: boolean } | undefined {
    const flush = this.decode("runtime.mProf_Flush");
    if (!flush?.complete) return undefined;
    // mProfCycleHolder.setFlushed: `prev := c.value.Load()` then `c.value.CompareAndSwap(prev, ...)`.
    const leas = new Set(this.targets(flush, isLea));
    const both = this.targets(flush, isLoad32).filter((a) => leas.has(a));
    if (both.length === 0) return undefined; // Go 1.18 and older: runtime.mProf, not read here.
    if (both.length > 1) throw this.fail("runtime.mProf_Flush: several candidates for runtime.mProfCycle");
    const addr = both[0]!;
    const malloc = this.decode("runtime.mProf_Malloc");
    if (malloc?.complete && !this.targets(malloc, isLoad32).includes(addr)) {
      throw this.fail(`runtime.mProf_Malloc does not read the runtime.mProfCycle candidate 0x${addr.toString(16)}`);
    }
    return { addr, shifted: true };
  }

  /** The one address all votes name; a BadBinaryError if there are none or they differ. */
  private agree(what: string, votes: Array<[string, bigint]>): bigint {
    const first = votes[0];
    if (!first) throw this.fail(`cannot find ${what} (no runtime function with a known pattern for it)`);
    for (const [name, addr] of votes) {
      if (addr !== first[1]) {
        throw this.fail(`conflicting candidates for ${what}: 0x${first[1].toString(16)} (${first[0]}) and 0x${addr.toString(16)} (${name})`);
      }
    }
    return first[1];
  }

  /** Distinct data addresses referenced by the instructions `pick` selects, in code order. */
  private targets(fn: DecodedFunction, pick: (insn: Insn) => boolean): bigint[] {
    const out: bigint[] = [];
    for (const insn of fn.insns) {
      if (insn.rip !== undefined && pick(insn) && this.isData(insn.rip) && !out.includes(insn.rip)) out.push(insn.rip);
    }
    return out;
  }

  private isData(addr: bigint | undefined): boolean {
    return addr !== undefined && this.dataRanges.some((r) => addr >= r.start && addr < r.end);
  }

  /** Decodes a function by name; undefined if the binary has no such function or its code is not in the file. */
  private decode(name: string): DecodedFunction | undefined {
    if (this.cache.has(name)) return this.cache.get(name);
    let result: DecodedFunction | undefined;
    const range = this.symbolizer.functionRange(name);
    if (range && range.end > range.entry && range.end - range.entry <= BigInt(MAX_FUNCTION_BYTES)) {
      const code = this.elf.readVirtual(range.entry, Number(range.end - range.entry));
      if (code) {
        const insns: Insn[] = [];
        let at = 0;
        while (at < code.length) {
          const insn = decodeX86(code, at, range.entry);
          if (!insn) break;
          insns.push(insn);
          at += insn.length;
        }
        result = { name, insns, complete: at === code.length };
      }
    }
    this.cache.set(name, result);
    return result;
  }

  private fail(why: string): BadBinaryError {
    return new BadBinaryError(this.elf.path, `no symbol table, and cannot locate Go runtime variables from code: ${why}`);
  }
}

/** Address ranges of Go's data sections; writable non-executable segments if there are no section headers. */
function dataRanges(elf: ElfFile): Array<{ start: bigint; end: bigint }> {
  const names = [".noptrdata", ".data", ".bss", ".noptrbss"];
  const sections = elf.sections.filter((s) => names.includes(s.name) && s.size > 0);
  if (sections.length > 0) return sections.map((s) => ({ start: s.addr, end: s.addr + BigInt(s.size) }));
  const PF_W = 2;
  return elf.segments
    .filter((p) => p.type === PT_LOAD && (p.flags & PF_W) !== 0 && (p.flags & PF_X) === 0)
    .map((p) => ({ start: p.vaddr, end: p.vaddr + BigInt(p.memsz) }));
}

// --- Instruction classes used by the patterns ------------------------------

/** mov r64, [rip+disp] (REX.W 8B /r). */
function isLoad64(i: Insn): boolean {
  return i.map === 0 && i.op === 0x8b && i.rexW;
}
/** mov r32, [rip+disp] (8B /r without REX.W or operand-size prefix). */
function isLoad32(i: Insn): boolean {
  return i.map === 0 && i.op === 0x8b && !i.rexW && !i.opsize16;
}
/** lea r, [rip+disp] (8D /r). */
function isLea(i: Insn): boolean {
  return i.map === 0 && i.op === 0x8d;
}
/** mov [rip+disp], r64 (REX.W 89 /r). */
function isStore64(i: Insn): boolean {
  return i.map === 0 && i.op === 0x89 && i.rexW;
}
/** cmp byte [rip+disp], 0 (80 /7 ib). */
function isCmpByteZero(i: Insn): boolean {
  return i.map === 0 && i.op === 0x80 && i.modrmReg === 7 && i.imm === 0n;
}
/** mov qword [rip+disp], 0 (REX.W C7 /0 id). */
function isStoreZero64(i: Insn): boolean {
  return i.map === 0 && i.op === 0xc7 && i.rexW && i.modrmReg === 0 && i.imm === 0n;
}
/** A conditional branch (70-7F rel8 or 0F 80-8F rel32). */
function isJcc(i: Insn): boolean {
  return (i.map === 0 && i.op >= 0x70 && i.op <= 0x7f) || (i.map === 1 && i.op >= 0x80 && i.op <= 0x8f);
}
/** The constant an instruction puts in a register (mov r, imm), if it is one. */
function immediateToRegister(i: Insn): bigint | undefined {
  if (i.map !== 0 || i.imm === undefined) return undefined;
  if (i.op >= 0xb8 && i.op <= 0xbf) return i.rexW ? i.imm : i.imm & 0xffffffffn;
  if (i.op === 0xc7 && i.modrmMod === 3 && i.modrmReg === 0) return i.rexW ? i.imm : i.imm & 0xffffffffn;
  return undefined;
}

// --- x86-64 instruction-length decoder --------------------------------------

/**
 * One decoded instruction: enough to measure it and to read the operands the
 * patterns need. Opcode maps: 0 one-byte, 1 0F, 2 0F38, 3 0F3A (VEX/EVEX map
 * numbers are the same).
 */
export interface Insn {
  /** Offset within the decoded buffer. */
  at: number;
  length: number;
  map: number;
  op: number;
  /** VEX/EVEX encoded. */
  vex: boolean;
  rexW: boolean;
  /** 66 operand-size prefix. */
  opsize16: boolean;
  modrmMod?: number;
  /** ModRM.reg without the REX.R extension (the /digit of group opcodes). */
  modrmReg?: number;
  /** Target address of a RIP-relative memory operand. */
  rip?: bigint;
  /** Sign-extended immediate (unsigned for 64-bit mov imm64). */
  imm?: bigint;
}

const MAX_INSN_LENGTH = 15;

// One-byte opcode map properties (64-bit mode). M: has ModRM. Immediates: b imm8,
// z imm16/32 (operand size), w imm16, v imm16/32/64 (mov r, imm), e ENTER (imm16 + imm8),
// o moffs (8 bytes), x invalid in 64-bit mode. Prefixes, REX, VEX/EVEX and 0F are
// handled before the table is consulted.
const ONE_BYTE: string[] = (() => {
  const t: string[] = new Array(256).fill("");
  for (let row = 0; row < 0x40; row += 8) {
    t[row] = t[row + 1] = t[row + 2] = t[row + 3] = "M";
    t[row + 4] = "b";
    t[row + 5] = "z";
    t[row + 6] = t[row + 7] = "x";
  }
  // 26, 2E, 36, 3E are prefixes; 0F is the escape: both handled earlier.
  for (const op of [0x60, 0x61, 0x82, 0x9a, 0xc4, 0xc5, 0xce, 0xd4, 0xd5, 0xd6, 0xea]) t[op] = "x";
  t[0x63] = "M";
  t[0x68] = "z";
  t[0x69] = "Mz";
  t[0x6a] = "b";
  t[0x6b] = "Mb";
  for (let op = 0x70; op <= 0x7f; op++) t[op] = "b";
  t[0x80] = "Mb";
  t[0x81] = "Mz";
  t[0x83] = "Mb";
  for (let op = 0x84; op <= 0x8f; op++) t[op] = "M";
  for (let op = 0xa0; op <= 0xa3; op++) t[op] = "o";
  t[0xa8] = "b";
  t[0xa9] = "z";
  for (let op = 0xb0; op <= 0xb7; op++) t[op] = "b";
  for (let op = 0xb8; op <= 0xbf; op++) t[op] = "v";
  t[0xc0] = t[0xc1] = "Mb";
  t[0xc2] = t[0xca] = "w";
  t[0xc6] = "Mb";
  t[0xc7] = "Mz";
  t[0xc8] = "e";
  t[0xcd] = "b";
  for (let op = 0xd0; op <= 0xd3; op++) t[op] = "M";
  for (let op = 0xd8; op <= 0xdf; op++) t[op] = "M";
  for (let op = 0xe0; op <= 0xe7; op++) t[op] = "b";
  t[0xe8] = t[0xe9] = "z";
  t[0xeb] = "b";
  t[0xf6] = t[0xf7] = "M"; // immediate only for /0 and /1: see below
  t[0xfe] = t[0xff] = "M";
  return t;
})();

/** 0F map: opcodes without ModRM, and those with an imm8 after it. */
const TWO_BYTE_NO_MODRM = new Set([0x05, 0x06, 0x07, 0x08, 0x09, 0x0b, 0x0e, 0x30, 0x31, 0x32, 0x33, 0x34, 0x35, 0x37, 0x77, 0xa0, 0xa1, 0xa2, 0xa8, 0xa9, 0xaa]);
const TWO_BYTE_INVALID = new Set([0x04, 0x0a, 0x0c, 0x36, 0x39, 0x3b, 0x3c, 0x3d, 0x3e, 0x3f]);
const TWO_BYTE_IMM8 = new Set([0x0f, 0x70, 0x71, 0x72, 0x73, 0xa4, 0xac, 0xba, 0xc2, 0xc4, 0xc5, 0xc6]);

/**
 * Decodes the instruction at `at` (x86-64, 64-bit mode); `base` is the address
 * of code[0]. Undefined if the bytes are not a valid instruction or run past
 * the buffer. Covers legacy prefixes, REX, the one-byte, 0F, 0F38 and 0F3A
 * maps, VEX and EVEX: everything the Go toolchain emits.
 */
export function decodeX86(code: Uint8Array, at: number, base: bigint): Insn | undefined {
  const limit = Math.min(code.length, at + MAX_INSN_LENGTH);
  let p = at;
  const byte = (): number | undefined => (p < limit ? code[p++] : undefined);
  let opsize16 = false;
  let addr32 = false;
  let rex = 0;
  let b: number | undefined;
  // Legacy prefixes, then an optional REX (a REX before a legacy prefix is ignored by the CPU).
  for (;;) {
    b = byte();
    if (b === undefined) return undefined;
    if (b === 0x66) opsize16 = true;
    else if (b === 0x67) addr32 = true;
    else if (b === 0xf0 || b === 0xf2 || b === 0xf3 || b === 0x26 || b === 0x2e || b === 0x36 || b === 0x3e || b === 0x64 || b === 0x65) {
      // lock, rep, segment: no effect on length
    } else if (b >= 0x40 && b <= 0x4f) {
      rex = b;
    } else break;
    if (b < 0x40 || b > 0x4f) rex = 0;
  }
  let rexW = (rex & 8) !== 0;
  let map = 0;
  let op = b;
  let vex = false;
  let hasModrm: boolean;
  let immBytes = 0;
  let immSigned = true;

  if (op === 0xc4 || op === 0xc5 || op === 0x62) {
    // VEX (C4 3-byte, C5 2-byte) and EVEX (62): always these in 64-bit mode.
    vex = true;
    if (op === 0xc5) {
      if (byte() === undefined) return undefined;
      map = 1;
    } else if (op === 0xc4) {
      const p0 = byte();
      const p1 = byte();
      if (p0 === undefined || p1 === undefined) return undefined;
      map = p0 & 0x1f;
      rexW = (p1 & 0x80) !== 0;
    } else {
      const p0 = byte();
      const p1 = byte();
      const p2 = byte();
      if (p0 === undefined || p1 === undefined || p2 === undefined) return undefined;
      map = p0 & 0x07;
      rexW = (p1 & 0x80) !== 0;
    }
    if (map < 1 || map > 3) return undefined;
    const o = byte();
    if (o === undefined) return undefined;
    op = o;
    // vzeroupper/vzeroall (VEX 0F 77) are the only ModRM-less VEX instructions.
    hasModrm = !(map === 1 && op === 0x77);
    if (map === 3 || (map === 1 && (TWO_BYTE_IMM8.has(op) || op === 0x0f))) immBytes = 1;
  } else if (op === 0x0f) {
    const o = byte();
    if (o === undefined) return undefined;
    if (o === 0x38 || o === 0x3a) {
      map = o === 0x38 ? 2 : 3;
      const o2 = byte();
      if (o2 === undefined) return undefined;
      op = o2;
      hasModrm = true;
      immBytes = map === 3 ? 1 : 0;
    } else {
      map = 1;
      op = o;
      if (TWO_BYTE_INVALID.has(op)) return undefined;
      if (op >= 0x80 && op <= 0x8f) {
        hasModrm = false;
        immBytes = 4; // jcc rel32
      } else if (op >= 0xc8 && op <= 0xcf) {
        hasModrm = false; // bswap
      } else {
        hasModrm = !TWO_BYTE_NO_MODRM.has(op);
        if (TWO_BYTE_IMM8.has(op)) immBytes = 1;
      }
    }
  } else {
    const kind = ONE_BYTE[op]!;
    if (kind === "x") return undefined;
    hasModrm = kind.startsWith("M");
    const imm = hasModrm ? kind.slice(1) : kind;
    if (imm === "b") immBytes = 1;
    else if (imm === "z") immBytes = opsize16 && op !== 0xe8 && op !== 0xe9 ? 2 : 4;
    else if (imm === "w") immBytes = 2;
    else if (imm === "e") immBytes = 3;
    else if (imm === "v") {
      immBytes = rexW ? 8 : opsize16 ? 2 : 4;
      immSigned = false;
    } else if (imm === "o") {
      immBytes = addr32 ? 4 : 8;
      immSigned = false;
    }
  }

  let modrmMod: number | undefined;
  let modrmReg: number | undefined;
  let dispAt = -1;
  let dispBytes = 0;
  let ripRelative = false;
  if (hasModrm) {
    const m = byte();
    if (m === undefined) return undefined;
    modrmMod = m >> 6;
    modrmReg = (m >> 3) & 7;
    const rm = m & 7;
    if (modrmMod !== 3) {
      if (rm === 4) {
        const sib = byte();
        if (sib === undefined) return undefined;
        if (modrmMod === 0 && (sib & 7) === 5) dispBytes = 4;
      } else if (modrmMod === 0 && rm === 5) {
        dispBytes = 4;
        ripRelative = !addr32;
      }
      if (modrmMod === 1) dispBytes = 1;
      else if (modrmMod === 2) dispBytes = 4;
    }
    // Group 3 (test r/m, imm) is the only one-byte ModRM opcode whose immediate depends on /reg.
    if (map === 0 && !vex && (op === 0xf6 || op === 0xf7) && modrmReg <= 1) {
      immBytes = op === 0xf6 ? 1 : opsize16 ? 2 : 4;
    }
  }
  dispAt = p;
  p += dispBytes;
  const immAt = p;
  p += immBytes;
  if (p > limit) return undefined;

  const length = p - at;
  const insn: Insn = { at, length, map, op, vex, rexW, opsize16 };
  if (modrmMod !== undefined) insn.modrmMod = modrmMod;
  if (modrmReg !== undefined) insn.modrmReg = modrmReg;
  if (ripRelative) insn.rip = base + BigInt(at + length) + littleEndian(code, dispAt, 4, true);
  if (immBytes === 3) insn.imm = littleEndian(code, immAt, 2, false); // ENTER: the frame size
  else if (immBytes > 0) insn.imm = littleEndian(code, immAt, immBytes, immSigned);
  return insn;
}

/** A little-endian integer of `size` bytes at `at` (already bounds-checked by the caller). */
function littleEndian(code: Uint8Array, at: number, size: number, signed: boolean): bigint {
  let v = 0n;
  for (let i = size - 1; i >= 0; i--) v = (v << 8n) | BigInt(code[at + i]!);
  return signed ? BigInt.asIntN(size * 8, v) : v;
}
