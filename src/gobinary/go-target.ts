import { closeSync, openSync, statSync } from "node:fs";
import { z } from "zod";
import { BadBinaryError } from "../errors.ts";
import { goMinorVersion, readBuildInfo, type BuildInfo } from "./buildinfo.ts";
import { ElfFile } from "./elf.ts";
import { memStatsLayout, type MemStatsLayout } from "./memstats-layout.ts";
import { goroutineLayout, type GoroutineLayout } from "./runtime-layout.ts";
import { findRuntimeVarsWithoutSymbols } from "./stripped-vars.ts";

/**
 * Why a binary has no memory profile, and the fix. The linker sets
 * runtime.disableMemoryProfiling unless runtime.MemProfile (memProfileInternal from Go
 * 1.23) is reachable: a blank `import _ "runtime/pprof"` does not make it so (measured
 * on Go 1.19 and 1.24); using the package, or net/http/pprof, does.
 */
export const DISABLED_HINT =
  'memory profiling is off in this binary (the linker zeroed runtime.MemProfileRate because nothing calls runtime.MemProfile): use runtime/pprof (e.g. pprof.Lookup("heap"); a blank import is not enough) or import _ "net/http/pprof", or run it under `oomprof run`';

/**
 * The newest Go release whose heap-profile records oomprof decodes. Each release changes
 * runtime.memRecord rarely but without notice (Go 1.27 dropped its per-cycle byte
 * counts), and counters read with the wrong layout are garbage: a binary from a newer
 * release gets no profile rather than a wrong one.
 */
export const NEWEST_PROFILE_LAYOUT_MINOR = 27;

/**
 * Words in runtime.memRecord: active and three future cycles of {allocs, frees,
 * alloc_bytes, free_bytes} up to Go 1.26; of {allocs, frees} from 1.27, where a
 * bucket's bytes are its count times its (single) object size. Undefined for a release
 * newer than oomprof decodes (devel builds, with no release number, are trusted).
 */
function memRecordWords(goVersion: string): 16 | 8 | undefined {
  const minor = goMinorVersion(goVersion) ?? 0;
  return minor > NEWEST_PROFILE_LAYOUT_MINOR ? undefined : minor >= 27 ? 8 : 16;
}

/** Why a binary from a release newer than oomprof knows gets no profile (memRecordWords undefined). */
export const UNKNOWN_LAYOUT_HINT = (goVersion: string) =>
  `${goVersion} stores heap-profile records in a layout this oomprof does not decode yet (it knows Go up to 1.${NEWEST_PROFILE_LAYOUT_MINOR}); no profile was written rather than a wrong one`;

/**
 * Everything the probes and the profile builder need to know about one Go binary,
 * read from the file on disk before the target runs. Addresses are link-time
 * virtual addresses; the load bias (non-zero for PIE) is applied at run time, in
 * the probe, from the victim's mm->start_code.
 */
export interface GoTarget {
  /** The path its process sees (inside a container: the container's own). */
  path: string;
  inode: number;
  dev: number;
  arch: "amd64" | "arm64";
  isPie: boolean;
  buildInfo: BuildInfo;
  /** GNU build ID if present, else Go's build ID: what pprof matches binaries by. */
  buildId: string;
  text: { vaddr: bigint; offset: number; memsz: number };
  vars: GoRuntimeVars;
  /** Words in runtime.memRecord (see memRecordWords); undefined when oomprof does not know the layout. */
  memRecordWords: 16 | 8 | undefined;
  /** The linker turned memory profiling off (no runtime/pprof linked in): no buckets will exist. */
  memProfilingDisabled: boolean;
  /** How a uprobe names runtime.throw: the symbol, or its address when stripped. */
  throwSymbol?: string;
  /** Where to count goroutines at death (known releases; stripped binaries through their code). */
  goroutines?: GoroutineLayout;
  /** Where its runtime's memory statistics are (known releases, with a symbol table). */
  memStats?: MemStatsLayout;
  /**
   * Reads the binary again, for symbolization: through a descriptor held since discovery,
   * so a binary deleted or replaced on disk meanwhile still reads as the one that ran,
   * and without keeping every binary ever seen in memory (kubelet alone is 100 MB).
   */
  readElf(): ElfFile;
  /** Closes the descriptor (a deleted binary's blocks are freed); readElf then fails. */
  release(): void;
  /**
   * While oomprof holds the file open: a path that opens exactly this file from any mount
   * namespace (/proc/OOMPROF_PID/fd/N), for uprobes on a binary whose own path is not
   * this file here (a container's, or one replaced on disk).
   */
  heldPath(): string | undefined;
}

export interface GoRuntimeVars {
  mbuckets: bigint;
  memProfileRate: bigint;
  /** runtime.disableMemoryProfiling, the linker-set bool that zeroes MemProfileRate at start. */
  disableMemoryProfiling?: bigint;
  /** runtime.mProfCycle (Go 1.19+; cycle is value >> 1) or runtime.mProf (older; cycle at offset 0). */
  cycle: { addr: bigint; shifted: boolean } | undefined;
}

const FileStat = z.object({ ino: z.number().int().nonnegative(), dev: z.number().int().nonnegative(), mode: z.number().int() });

export async function discoverGoTarget(path: string): Promise<GoTarget> {
  let st: z.infer<typeof FileStat>;
  try {
    st = FileStat.parse(statSync(path));
  } catch (e) {
    throw new BadBinaryError(path, `cannot stat: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  let fd: number;
  try {
    fd = openSync(path, "r");
  } catch (e) {
    throw new BadBinaryError(path, `cannot open: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  try {
    return inspectGoBinary(path, st, fd);
  } catch (e) {
    closeSync(fd);
    throw e;
  }
}

/** Closures of their own: ones made in inspectGoBinary would share (and keep) its scope's ElfFile. */
function elfReader(fd: number, path: string): Pick<GoTarget, "readElf" | "release" | "heldPath"> {
  let open = true;
  return {
    readElf() {
      if (!open) throw new BadBinaryError(path, "no longer watched (its descriptor is closed)");
      return ElfFile.fromFd(fd, path);
    },
    release() {
      if (open) closeSync(fd);
      open = false;
    },
    heldPath() {
      return open ? `/proc/${process.pid}/fd/${fd}` : undefined;
    },
  };
}

function inspectGoBinary(path: string, st: z.infer<typeof FileStat>, fd: number): GoTarget {
  const elf = ElfFile.fromFd(fd, path);
  const buildInfo = readBuildInfo(elf);
  if (!buildInfo) throw new BadBinaryError(path, "not a Go program (no Go build info)");
  const sym = (name: string) => elf.symbol(name)?.value;
  let mbuckets = sym("runtime.mbuckets");
  let memProfileRate = sym("runtime.MemProfileRate");
  const cycleNew = sym("runtime.mProfCycle");
  const cycleOld = sym("runtime.mProf");
  let cycle: GoRuntimeVars["cycle"] =
    cycleNew !== undefined ? { addr: cycleNew, shifted: true } : cycleOld !== undefined ? { addr: cycleOld, shifted: false } : undefined;
  let disableMemoryProfiling = sym("runtime.disableMemoryProfiling");
  if (mbuckets === undefined || memProfileRate === undefined) {
    // No symbol table (-ldflags=-s): read the addresses out of the runtime's code.
    const found = findRuntimeVarsWithoutSymbols(elf);
    ({ mbuckets, memProfileRate } = found);
    cycle = found.cycle;
    disableMemoryProfiling = found.disableMemoryProfiling;
  }
  const text = elf.textSegment();
  return {
    path,
    inode: st.ino,
    dev: st.dev,
    arch: elf.arch,
    isPie: elf.isPie,
    buildInfo,
    buildId: readBuildId(elf),
    text: { vaddr: text.vaddr, offset: text.offset, memsz: text.memsz },
    vars: { mbuckets, memProfileRate, cycle, disableMemoryProfiling },
    memProfilingDisabled: readDisableMemoryProfiling(elf, disableMemoryProfiling),
    memRecordWords: memRecordWords(buildInfo.goVersion),
    throwSymbol: throwProbeName(elf),
    goroutines: goroutineLayout(elf, buildInfo.goVersion),
    memStats: memStatsLayout(elf, buildInfo.goVersion),
    ...elfReader(fd, path),
  };
}

/**
 * runtime.throw by name. bpftrace (0.17 and 0.23 alike) refuses an address uprobe in a
 * binary without symbols ("Could not resolve address"), so stripped binaries get no
 * runtime out-of-memory probe.
 */
function throwProbeName(elf: ElfFile): string | undefined {
  return elf.symbol("runtime.throw") ? "runtime.throw" : undefined;
}

function readBuildId(elf: ElfFile): string {
  const NT_GNU_BUILD_ID = 3;
  const NT_GO_BUILD_ID = 4;
  const notes = elf.notes();
  const gnu = notes.find((n) => n.name === "GNU" && n.type === NT_GNU_BUILD_ID);
  if (gnu) return Buffer.from(gnu.desc).toString("hex");
  const go = notes.find((n) => n.name === "Go" && n.type === NT_GO_BUILD_ID);
  return go ? new TextDecoder().decode(go.desc) : "";
}

/** runtime.disableMemoryProfiling (at `addr`) is a bool the linker initialises in the data section. */
function readDisableMemoryProfiling(elf: ElfFile, addr: bigint | undefined): boolean {
  if (addr === undefined) return false;
  const b = elf.readVirtual(addr, 1);
  return b !== undefined && b[0] === 1;
}
