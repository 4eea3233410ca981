import { BadBinaryError } from "../errors.ts";
import { GoSymbolizer } from "../symbolize/pclntab.ts";
import { PF_X, PT_LOAD, type ElfFile } from "./elf.ts";
import { decodeX86, type Insn } from "./x86-decode.ts";

/**
 * Finds the Go runtime variables oomprof reads (runtime.mbuckets,
 * runtime.MemProfileRate, runtime.mProfCycle, runtime.disableMemoryProfiling;
 * for the goroutine count runtime.allglen, runtime.allp, runtime.sched) in a
 * binary without a symbol table (`go build -ldflags=-s`).
 *
 * The function table in .gopclntab survives stripping, so the runtime
 * functions that use these variables can still be found by name. Their machine
 * code names the variables' addresses: on amd64 Go reaches package variables
 * with RIP-relative operands (ModRM mod=00 rm=101, disp32 from the end of the
 * instruction), in PIE builds too. Each function is decoded linearly from its
 * entry with a small instruction-length decoder (x86-decode.ts; Go puts no data inside
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
 * What runtime.gcount() reads, for the goroutine count at death
 * (findGoroutineVarsWithoutSymbols; proc.go, runtime2.go of Go 1.19 and 1.21-1.27):
 *
 *   allglen         forEachGRace (atomicAllG) loads two words, allglen and
 *                   allgptr; allgadd compares allgptr (`&allgs[0] != allgptr`)
 *                   and takes the address of allglen for its atomic store
 *                   (`atomic.Storeuintptr(&allglen, ...)`): allglen is the one it
 *                   takes the address of but never compares. It holds no pointer,
 *                   so it must lie in .noptrbss (or .noptrdata).
 *   allp            preemptall and gcMarkTinyAllocs (`for _, p := range allp`)
 *                   load exactly two words, the slice's array and its length 8
 *                   bytes on: allp is the first. timeSleepUntil and checkdead must
 *                   load both too.
 *   sched           the free-g count(s): gfput and gfpurge add to them as int32
 *                   (`sched.gFree.n++`, from 1.25 gFree.stack.size and
 *                   gFree.noStack.size), gfget decrements them; the three must
 *                   name the same one (two from 1.25) address(es), which, less
 *                   the release's offset of the count (runtime-layout.ts), give
 *                   sched. newproc1 must then take the address of sched itself
 *                   (`sched.goidgen.Add`, the first field in every release) and of
 *                   sched.ngsys (`sched.ngsys.Add(1)`) at the release's offset, as
 *                   gdestroy (goexit0 before 1.22) must of sched.ngsys.
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

/** The variables runtime.gcount() reads (see GoroutineLayout in runtime-layout.ts). */
export interface StrippedGoroutineVars {
  allglen: bigint;
  allp: bigint;
  sched: bigint;
}

/** The release's offsets inside runtime.schedt that pin runtime.sched down (runtime-layout.ts). */
export interface SchedOffsets {
  /** sched.gFree.n; from Go 1.25 sched.gFree.stack.size. */
  schedGFreeN: number;
  /** Go 1.25+: sched.gFree.noStack.size. */
  schedGFreeN2?: number;
  schedNgsys: number;
}

export function findRuntimeVarsWithoutSymbols(elf: ElfFile): StrippedRuntimeVars {
  return withFinder(elf, (f) => f.find());
}

/**
 * runtime.allglen, runtime.allp and runtime.sched from the runtime's code; `offsets`
 * are the binary's release's (runtime.sched is found through fields at those offsets).
 */
export function findGoroutineVarsWithoutSymbols(elf: ElfFile, offsets: SchedOffsets): StrippedGoroutineVars {
  return withFinder(elf, (f) => f.findGoroutineVars(offsets));
}

/** One Finder per ElfFile: go-target.ts asks twice of a stripped binary, and the function index costs. */
const finders = new WeakMap<ElfFile, Finder>();

function withFinder<T>(elf: ElfFile, use: (f: Finder) => T): T {
  if (elf.arch !== "amd64") {
    throw new BadBinaryError(elf.path, "no symbol table, and finding Go runtime variables in arm64 stripped binaries is not supported");
  }
  try {
    let finder = finders.get(elf);
    if (!finder) {
      finder = new Finder(elf);
      finders.set(elf, finder);
    }
    return use(finder);
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
      else if (loads.length > 1 && name === "runtime.mProf_FlushLocked")
        throw this.fail(`${name} loads ${loads.length} words, expected one (runtime.mbuckets)`);
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

  findGoroutineVars(offsets: SchedOffsets): StrippedGoroutineVars {
    const allglen = this.findAllglen();
    const allp = this.findAllp();
    const sched = this.findSched(offsets);
    if (new Set([allglen, allp, sched]).size !== 3) throw this.fail("two runtime variables resolved to the same address");
    return { allglen, allp, sched };
  }

  /** forEachGRace loads allglen and allgptr; allgadd compares allgptr and takes allglen's address. */
  private findAllglen(): bigint {
    const race = this.decode("runtime.forEachGRace");
    const add = this.decode("runtime.allgadd");
    if (!race?.complete || !add?.complete) throw this.fail("cannot find runtime.allglen (no runtime.forEachGRace or runtime.allgadd)");
    const loads = this.targets(race, isLoad64);
    if (loads.length !== 2) throw this.fail(`runtime.forEachGRace loads ${loads.length} words, expected two (runtime.allglen, runtime.allgptr)`);
    const compared = new Set(this.targets(add, isCmp64));
    const addressed = new Set(this.targets(add, isLea));
    const allgptr = loads.filter((a) => compared.has(a));
    const allglen = loads.filter((a) => !compared.has(a) && addressed.has(a));
    if (allgptr.length !== 1 || allglen.length !== 1) {
      throw this.fail("runtime.allgadd does not compare one of runtime.forEachGRace's words and take the address of the other");
    }
    const addr = allglen[0]!;
    if (!this.isIn(addr, POINTER_FREE_SECTIONS)) {
      throw this.fail(`the runtime.allglen candidate 0x${addr.toString(16)} is not in a pointer-free data section`);
    }
    return addr;
  }

  /** `for _, p := range allp` in preemptall and gcMarkTinyAllocs: the slice's array and length, nothing else. */
  private findAllp(): bigint {
    const votes: Array<[string, bigint]> = [];
    for (const name of ["runtime.preemptall", "runtime.gcMarkTinyAllocs"]) {
      const fn = this.decode(name);
      if (!fn?.complete) continue;
      const loads = this.targets(fn, isLoad64).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
      if (loads.length !== 2 || loads[1]! - loads[0]! !== 8n) {
        throw this.fail(`${name} does not load just a slice header's array and length (runtime.allp)`);
      }
      votes.push([name, loads[0]!]);
    }
    const allp = this.agree("runtime.allp", votes);
    let confirmed = votes.length;
    for (const name of ["runtime.timeSleepUntil", "runtime.checkdead"]) {
      const fn = this.decode(name);
      if (!fn?.complete) continue;
      const loads = this.targets(fn, isLoad64);
      if (!loads.includes(allp) || !loads.includes(allp + 8n)) {
        throw this.fail(`${name} does not read the runtime.allp candidate 0x${allp.toString(16)}`);
      }
      confirmed++;
    }
    if (confirmed < 2) throw this.fail("runtime.allp: found by one runtime function only");
    return allp;
  }

  /**
   * The free-g counts, changed by gfput, gfget and gfpurge as int32s at the release's
   * offsets in runtime.sched; then checked against sched.goidgen and sched.ngsys.
   */
  private findSched(offsets: SchedOffsets): bigint {
    const counts = offsets.schedGFreeN2 === undefined ? 1 : 2;
    const sets: Array<[string, bigint[]]> = [];
    for (const [name, pick] of [
      ["runtime.gfput", isAdd32ToMemory],
      ["runtime.gfget", isDec32],
      ["runtime.gfpurge", isAdd32ToMemory],
    ] as const) {
      const fn = this.decode(name);
      if (!fn?.complete) continue;
      const found = this.targets(fn, pick).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
      if (found.length !== counts) throw this.fail(`${name} changes ${found.length} int32 variables, expected ${counts} (runtime.sched.gFree)`);
      sets.push([name, found]);
    }
    const first = sets[0];
    if (!first || sets.length < 2) throw this.fail("cannot find runtime.sched (fewer than two of runtime.gfput, gfget, gfpurge)");
    for (const [name, found] of sets) {
      if (found.join() !== first[1].join()) throw this.fail(`${first[0]} and ${name} disagree about runtime.sched.gFree`);
    }
    const [low, high] = first[1];
    const sched = low! - BigInt(offsets.schedGFreeN);
    if (high !== undefined && high - sched !== BigInt(offsets.schedGFreeN2!)) {
      throw this.fail("the two free-g counts in runtime.sched are not as far apart as this release has them");
    }
    const ngsys = sched + BigInt(offsets.schedNgsys);
    if (!this.isData(sched) || !this.isData(high ?? low)) throw this.fail(`the runtime.sched candidate 0x${sched.toString(16)} is not in data`);
    // newproc1: `sched.goidgen.Add(...)` (goidgen is schedt's first field) and `sched.ngsys.Add(1)`.
    const newproc1 = this.decode("runtime.newproc1");
    if (!newproc1?.complete) throw this.fail("cannot check runtime.sched (no runtime.newproc1)");
    const leas = this.targets(newproc1, isLea);
    if (!leas.includes(sched) || !leas.includes(ngsys)) {
      throw this.fail(`runtime.newproc1 does not take the addresses of sched.goidgen and sched.ngsys for the runtime.sched candidate 0x${sched.toString(16)}`);
    }
    // gdestroy (goexit0 before Go 1.22): `sched.ngsys.Add(-1)` for a system goroutine.
    const exit = [this.decode("runtime.gdestroy"), this.decode("runtime.goexit0")].filter((f) => f?.complete);
    if (exit.length > 0 && !exit.some((f) => this.targets(f!, isLea).includes(ngsys))) {
      throw this.fail(`runtime.gdestroy/goexit0 do not take the address of sched.ngsys for the runtime.sched candidate 0x${sched.toString(16)}`);
    }
    return sched;
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

  /** Whether addr lies in one of the named sections; true when the binary has none of them (no section headers). */
  private isIn(addr: bigint, names: readonly string[]): boolean {
    const sections = this.elf.sections.filter((s) => names.includes(s.name) && s.size > 0);
    return sections.length === 0 || sections.some((s) => addr >= s.addr && addr < s.addr + BigInt(s.size));
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

/** Where the Go linker puts variables that hold no pointers. */
const POINTER_FREE_SECTIONS = [".noptrdata", ".noptrbss"] as const;

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
/** cmp [rip+disp], r64 or cmp r64, [rip+disp] (REX.W 39 /r, 3B /r). */
function isCmp64(i: Insn): boolean {
  return i.map === 0 && (i.op === 0x39 || i.op === 0x3b) && i.rexW;
}
/** add dword [rip+disp], r32 (01 /r without REX.W or operand-size prefix). */
function isAdd32ToMemory(i: Insn): boolean {
  return i.map === 0 && i.op === 0x01 && !i.rexW && !i.opsize16;
}
/** dec dword [rip+disp] (FF /1 without REX.W or operand-size prefix). */
function isDec32(i: Insn): boolean {
  return i.map === 0 && i.op === 0xff && i.modrmReg === 1 && !i.rexW && !i.opsize16;
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
