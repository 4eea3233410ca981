import { BadBinaryError } from "../errors.ts";
import { goMinorVersion } from "./buildinfo.ts";
import type { ElfFile } from "./elf.ts";
import { findGoroutineVarsWithoutSymbols } from "./stripped-vars.ts";

/**
 * Where a Go binary keeps what runtime.gcount() reads, so the probes can count
 * goroutines at death the way runtime.NumGoroutine does:
 *
 *   allglen - sched.gFree.n - sched.ngsys - Σ over allp of p.gFree.n   (at least 1)
 *
 * (from Go 1.25 the free list's count is split in two: gFree.stack.size + gFree.noStack.size)
 *
 * The variables come from the symbol table, or without one (stripped binaries) from
 * the runtime's code (stripped-vars.ts); the field offsets inside runtime.schedt
 * and runtime.p change between releases, so they come from this table. Each row was
 * read from the DWARF of real builds (test/go/runtime-offsets, checked again by
 * test/unit/runtime-layout.test.ts) and is the same on amd64 and arm64. The formula
 * is the same in proc.go of every release listed. Releases not listed get no count
 * rather than a guessed one; GOEXPERIMENT=staticlockranking builds (bigger mutexes)
 * would also differ, and are not detected.
 */
export interface GoroutineLayout {
  allglen: bigint;
  allp: bigint;
  sched: bigint;
  /** Offset of sched.gFree.n (int32) in runtime.schedt; from Go 1.25, of gFree.stack.size. */
  schedGFreeN: number;
  /** Go 1.25+: offset of sched.gFree.noStack.size, the second free list's count. */
  schedGFreeN2?: number;
  /** Offset of sched.ngsys (int32; atomic.Int32 from 1.21) in runtime.schedt. */
  schedNgsys: number;
  /** Offset of p.gFree.n (int32) in runtime.p. */
  pGFreeN: number;
}

/** Per-P free lists summed at death; a larger GOMAXPROCS makes the count an upper bound. */
export const MAX_PROCS_SUMMED = 256;

const FIELD_OFFSETS: Record<number, Pick<GoroutineLayout, "schedGFreeN" | "schedGFreeN2" | "schedNgsys" | "pGFreeN">> = {
  19: { schedGFreeN: 176, schedNgsys: 72, pGFreeN: 2472 },
  21: { schedGFreeN: 184, schedNgsys: 72, pGFreeN: 2472 },
  22: { schedGFreeN: 184, schedNgsys: 72, pGFreeN: 2472 },
  23: { schedGFreeN: 184, schedNgsys: 72, pGFreeN: 2464 },
  24: { schedGFreeN: 184, schedNgsys: 72, pGFreeN: 2464 },
  // Go 1.25 gave each free list its own count (gList.size), and p.gFree is a gList.
  25: { schedGFreeN: 184, schedGFreeN2: 200, schedNgsys: 80, pGFreeN: 2464 },
  26: { schedGFreeN: 200, schedGFreeN2: 216, schedNgsys: 96, pGFreeN: 2472 },
  27: { schedGFreeN: 200, schedGFreeN2: 216, schedNgsys: 96, pGFreeN: 2472 },
};

/** Go releases whose layout is known, for messages. */
export const GOROUTINE_LAYOUT_RELEASES = Object.keys(FIELD_OFFSETS).map((m) => `go1.${m}`);

/**
 * The layout for this binary, or undefined: an unlisted release, or a binary without a
 * symbol table whose code does not show the variables unambiguously (arm64 among them).
 * The count is an extra: a binary is never refused for want of it.
 */
export function goroutineLayout(elf: ElfFile, goVersion: string): GoroutineLayout | undefined {
  const minor = goMinorVersion(goVersion);
  const fields = minor === undefined ? undefined : FIELD_OFFSETS[minor];
  if (!fields) return undefined;
  const allglen = elf.symbol("runtime.allglen")?.value;
  const allp = elf.symbol("runtime.allp")?.value;
  const sched = elf.symbol("runtime.sched")?.value;
  if (allglen !== undefined && allp !== undefined && sched !== undefined) return { allglen, allp, sched, ...fields };
  try {
    return { ...findGoroutineVarsWithoutSymbols(elf, fields), ...fields };
  } catch (e) {
    if (e instanceof BadBinaryError) return undefined;
    throw e;
  }
}

/** What runtime.gcount() reads, however it was read (by the probes at death, or live). */
export interface GcountInputs {
  allglen: number;
  schedFree: number;
  ngsys: number;
  /** Σ p.gFree.n over the first min(procs, MAX_PROCS_SUMMED) Ps. */
  procsFree: number;
  /** len(allp). */
  procs: number;
}

/** runtime.gcount(): every g made, less the free ones and the runtime's own; never below 1. */
export function goroutineCount(g: GcountInputs): { count: number; atMost: boolean } {
  return { count: Math.max(1, g.allglen - g.schedFree - g.ngsys - g.procsFree), atMost: g.procs > MAX_PROCS_SUMMED };
}
