import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BadBinaryError } from "../../src/errors.ts";
import { GoSymbolizer, UNEXPECTED_PARSE_ERROR } from "../../src/symbolize/pclntab.ts";
import { readBuildInfo } from "../../src/gobinary/buildinfo.ts";
import { ElfFile, elfLoadProblem } from "../../src/gobinary/elf.ts";
import { prng } from "../helpers/prng.ts";

/**
 * Feeds truncated and bit-flipped copies of a real Go binary to ElfFile,
 * readBuildInfo and GoSymbolizer. Each must either succeed or throw
 * BadBinaryError: never a RangeError, TypeError or a hang. Deterministic
 * (fixed-seed PRNG) and bounded by a deadline.
 */

const GO_PROGRAM = String.raw`
package main

import (
	"fmt"
	"os"
	"runtime"
)

//go:noinline
func leaf(n int) []uintptr {
	pcs := make([]uintptr, 32)
	return pcs[:runtime.Callers(0, pcs)]
}

func inlinedHelper(n int) []uintptr { return leaf(n + 1) }

type box[T any] struct{ v T }

//go:noinline
func (b *box[T]) get() []uintptr { return inlinedHelper(len(os.Args)) }

func main() {
	for _, pc := range (&box[int]{1}).get() {
		fmt.Println(runtime.FuncForPC(pc).Name())
	}
}
`;

/** Wall-clock budget for the whole fuzz run; later cases are skipped once it is spent. */
const DEADLINE_MS = 20_000;
const BIT_FLIP_CASES = 2000;

interface Target {
  name: string;
  bytes: Uint8Array;
  /** Byte ranges worth concentrating bit flips on (file offsets). */
  hotRanges: Array<{ what: string; start: number; end: number }>;
  /** PCs to symbolize after a successful construction. */
  pcs: bigint[];
}

const workDir = mkdtempSync(join(tmpdir(), "oomprof-fuzz-"));
afterAll(() => rmSync(workDir, { recursive: true, force: true }));

function goCommand(): string | undefined {
  const go = (process.env.OOMPROF_GO_LIST ?? "go").split(":").find(Boolean) ?? "go";
  try {
    return Bun.spawnSync([go, "version"]).exitCode === 0 ? go : undefined;
  } catch {
    return undefined;
  }
}

async function build(go: string, out: string, flags: string[]): Promise<Uint8Array> {
  const proc = Bun.spawn([go, "build", ...flags, "-o", out, "."], {
    cwd: workDir,
    env: { ...process.env, GOTOOLCHAIN: "local", GOFLAGS: "" },
    stderr: "pipe",
  });
  const [code, stderr] = await Promise.all([proc.exited, new Response(proc.stderr).text()]);
  if (code !== 0) throw new Error(`go build failed: ${stderr}`);
  return new Uint8Array(await Bun.file(out).arrayBuffer());
}

/** Renames .gopclntab in the section name table, so the table must be found by symbol or by magic. */
function hidePclntabSection(bytes: Uint8Array): Uint8Array {
  const copy = new Uint8Array(bytes);
  const needle = new TextEncoder().encode("gopclntab\0");
  outer: for (let i = 0; i + needle.length <= copy.length; i++) {
    for (let k = 0; k < needle.length; k++) if (copy[i + k] !== needle[k]) continue outer;
    copy[i] = "x".charCodeAt(0);
  }
  return copy;
}

function describeTarget(name: string, bytes: Uint8Array, random: () => number): Target {
  const elf = new ElfFile(name, bytes);
  const hotRanges: Target["hotRanges"] = [];
  const shoff = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(40, true));
  hotRanges.push({ what: "ELF and program headers", start: 0, end: 64 + 56 * elf.segments.length });
  hotRanges.push({ what: "section headers", start: shoff, end: Math.min(bytes.length, shoff + 64 * elf.sections.length) });
  for (const s of elf.sections) {
    if (/gopclntab$|^\.go\.buildinfo$|^\.noptrdata$|^\.rodata$|^\.shstrtab$/.test(s.name) && s.type !== 8) {
      hotRanges.push({ what: s.name, start: s.offset, end: s.offset + s.size });
    }
  }
  // The pclntab header, function table and the first _func records deserve extra attention.
  const pcln = elf.sections.find((s) => s.name.endsWith("gopclntab"));
  if (pcln) hotRanges.push({ what: "pclntab header", start: pcln.offset, end: pcln.offset + 4096 });

  const symbolizer = GoSymbolizer.fromElf(elf);
  const text = elf.textSegment();
  const pcs: bigint[] = [];
  const funcs = [...elf.symbols().values()].filter((s) => s.type === 2 && s.size > 0);
  for (const f of funcs.filter((s) => s.name.startsWith("main."))) pcs.push(f.value, f.value + BigInt(Math.floor(f.size / 2)));
  while (pcs.length < 24) pcs.push(text.vaddr + BigInt(Math.floor(random() * text.filesz)));
  // The unmodified binary must symbolize these, or the fuzzing would prove little.
  expect(pcs.filter((pc) => symbolizer.frames(pc).length > 0).length).toBeGreaterThan(pcs.length / 2);
  return { name, bytes, hotRanges, pcs };
}

/** How far mutated copies got: a fuzz run where nothing parses would prove little. */
const reached = { elf: 0, symbolizer: 0, frames: 0 };

/** Runs the three readers on one mutated copy; returns a description of any non-BadBinaryError failure. */
function exercise(label: string, bytes: Uint8Array, pcs: bigint[]): string | undefined {
  const attempt = (what: string, fn: () => void): boolean => {
    try {
      fn();
      return true;
    } catch (e) {
      // GoSymbolizer turns escaped exceptions into BadBinaryError; they are still bugs.
      if (e instanceof BadBinaryError && !e.message.includes(UNEXPECTED_PARSE_ERROR)) return false;
      throw new Error(`${label}: ${what} threw ${(e as Error)?.name}: ${(e as Error)?.message}\n${(e as Error)?.stack ?? ""}`);
    }
  };
  try {
    // Must never throw: it only ever returns a reason or undefined.
    attempt("elfLoadProblem", () => elfLoadProblem(bytes));
    let elf: ElfFile | undefined;
    if (!attempt("ElfFile", () => (elf = new ElfFile(label, bytes)))) return undefined;
    reached.elf++;
    attempt("readBuildInfo", () => readBuildInfo(elf!));
    let symbolizer: GoSymbolizer | undefined;
    if (!attempt("GoSymbolizer.fromElf", () => (symbolizer = GoSymbolizer.fromElf(elf!)))) return undefined;
    reached.symbolizer++;
    for (const pc of pcs) {
      attempt(`frames(0x${pc.toString(16)})`, () => {
        const frames = symbolizer!.frames(pc);
        if (frames.length > 0) reached.frames++;
        for (const f of frames) {
          if (typeof f.function !== "string" || typeof f.file !== "string" || !Number.isInteger(f.line)) {
            throw new TypeError(`malformed frame ${JSON.stringify(f)}`);
          }
        }
      });
    }
    return undefined;
  } catch (e) {
    return (e as Error).message;
  }
}

describe.skipIf(!goCommand())("fuzzed Go binaries", () => {
  const targets: Target[] = [];
  const random = prng(0x00f0_0d42);

  beforeAll(async () => {
    const go = goCommand()!;
    writeFileSync(join(workDir, "main.go"), GO_PROGRAM);
    writeFileSync(join(workDir, "go.mod"), "module example.com/fuzz\n\ngo 1.18\n");
    const plain = await build(go, join(workDir, "plain"), []);
    const pie = await build(go, join(workDir, "pie"), ["-buildmode=pie", "-ldflags=-s -w"]);
    targets.push(describeTarget("plain", plain, random));
    targets.push(describeTarget("pie-stripped-hidden-pclntab", hidePclntabSection(pie), random));
  }, 300_000);

  test("truncated and bit-flipped copies fail only with BadBinaryError", () => {
    const deadline = performance.now() + DEADLINE_MS;
    const failures: string[] = [];
    let truncations = 0;
    let flips = 0;

    for (const target of targets) {
      const n = target.bytes.length;
      // Every length up to a bit past the ELF header, a spread over the file,
      // and the edges of the interesting ranges.
      const lengths = new Set<number>();
      for (let len = 0; len <= 80; len++) lengths.add(len);
      for (let k = 1; k < 120; k++) lengths.add(Math.floor((n * k) / 120));
      for (const r of target.hotRanges) for (const d of [-9, -1, 0, 1, 7, 64, 4096]) lengths.add(Math.max(0, Math.min(n - 1, r.start + d)));
      for (const r of target.hotRanges) for (const d of [-8, -1, 1]) lengths.add(Math.max(0, Math.min(n - 1, r.end + d)));
      for (const len of [...lengths].sort((a, b) => a - b)) {
        if (performance.now() > deadline) break;
        const failure = exercise(`${target.name} truncated to ${len}`, target.bytes.subarray(0, len), target.pcs);
        if (failure) failures.push(failure);
        truncations++;
      }
    }

    for (let i = 0; i < BIT_FLIP_CASES && performance.now() < deadline; i++) {
      const target = targets[i % targets.length]!;
      const copy = new Uint8Array(target.bytes);
      const bitsToFlip = 1 + Math.floor(random() * 4);
      const flipped: string[] = [];
      for (let b = 0; b < bitsToFlip; b++) {
        // Mostly inside the structures the readers parse; sometimes anywhere.
        const range = random() < 0.85 ? target.hotRanges[Math.floor(random() * target.hotRanges.length)]! : { what: "anywhere", start: 0, end: copy.length };
        const at = range.start + Math.floor(random() * Math.max(1, range.end - range.start));
        if (at >= copy.length) continue;
        const bit = Math.floor(random() * 8);
        copy[at]! ^= 1 << bit;
        flipped.push(`${range.what}@0x${at.toString(16)}.${bit}`);
      }
      const failure = exercise(`${target.name} flip#${i} [${flipped.join(", ")}]`, copy, target.pcs);
      if (failure) failures.push(failure);
      flips++;
    }

    console.log(
      `fuzz: ${truncations} truncated and ${flips} bit-flipped copies of ${targets.length} binaries; ` +
        `${reached.elf} parsed as ELF, ${reached.symbolizer} gave a symbolizer, ${reached.frames} PCs symbolized`,
    );
    expect(failures.slice(0, 5)).toEqual([]);
    expect(reached.symbolizer).toBeGreaterThan(flips / 4);
    // The deadline is a safety net, not the normal way out.
    expect(flips).toBeGreaterThanOrEqual(Math.min(BIT_FLIP_CASES, 100));
  }, 120_000);
});
