import { describe, expect, setDefaultTimeout, test } from "bun:test";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { BadBinaryError } from "../../src/errors.ts";
import { GoSymbolizer } from "../../src/symbolize/pclntab.ts";
import { readBuildInfo } from "../../src/gobinary/buildinfo.ts";
import { ElfFile } from "../../src/gobinary/elf.ts";
import { discoverGoTarget } from "../../src/gobinary/go-target.ts";
import { goroutineLayout } from "../../src/gobinary/runtime-layout.ts";
import { findGoroutineVarsWithoutSymbols, findRuntimeVarsWithoutSymbols } from "../../src/gobinary/stripped-vars.ts";
import { decodeX86 } from "../../src/gobinary/x86-decode.ts";
import { buildGoProgram } from "../helpers/go.ts";

/**
 * findRuntimeVarsWithoutSymbols (the heap profile's variables) and
 * findGoroutineVarsWithoutSymbols (runtime.allglen, allp, sched, for the goroutine
 * count) must find, in a binary built with -ldflags='-s -w', exactly the addresses
 * .symtab gives for the same program built by the same toolchain with the symbol
 * table kept.
 *
 * The reference is built with -ldflags='-w -w', not -ldflags=-w: the go command
 * records the flags in the binary's module info (runtime.modinfo), and a string
 * of a different length can move the data that follows it (seen with Go 1.19
 * and 1.23). '-w -w' has the length of '-s -w'; the test checks that .text and
 * the data sections are then laid out identically. -buildvcs=false keeps the
 * VCS stamp (which changes as the work tree does) out of both.
 *
 * Toolchains: OOMPROF_GO_LIST, colon-separated paths to `go` (default `go`).
 * The entry `debian13` stands for the Go of the Debian 13 root
 * (scripts/debian13-root, Go 1.24), built through scripts/in-debian13 as root.
 */

setDefaultTimeout(300_000);

const ROOT = resolve(import.meta.dir, "../..");
const CACHE = join(ROOT, ".cache", "stripped-vars");
const toolchains = (process.env.OOMPROF_GO_LIST ?? "go").split(":").filter(Boolean);

const VARS = ["runtime.mbuckets", "runtime.MemProfileRate", "runtime.mProfCycle", "runtime.disableMemoryProfiling"] as const;
const MODES: Array<{ name: string; flags: string[] }> = [
  { name: "exe", flags: [] },
  { name: "pie", flags: ["-buildmode=pie"] },
];
const KEEP_SYMTAB = "-ldflags=-w -w";
const STRIP = "-ldflags=-s -w";

/** A program that never reaches runtime.MemProfile: the linker sets runtime.disableMemoryProfiling. */
const NOPROF_PROGRAM = `package main

import "os"

var keep [][]byte

func main() {
	for i := 0; i < len(os.Args)+3; i++ {
		keep = append(keep, make([]byte, 1<<20))
	}
	println(len(keep))
}
`;

function noprofSource(): string {
  const dir = join(CACHE, "src-noprof");
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "main.go"), NOPROF_PROGRAM);
  writeFileSync(join(dir, "go.mod"), "module example.com/noprof\n\ngo 1.19\n");
  return dir;
}

/** Builds `program` (leaker: test/go/leaker; noprof: NOPROF_PROGRAM) with one toolchain; cached per run by flags. */
async function build(toolchain: string, program: "leaker" | "noprof", flags: string[]): Promise<string> {
  const all = ["-buildvcs=false", ...flags];
  if (toolchain !== "debian13" && program === "leaker") return buildGoProgram("leaker", { go: toolchain, flags: all });
  const tag = [toolchain.replace(/[^A-Za-z0-9.]/g, "_"), program, ...all].join("_").replace(/[^A-Za-z0-9._-]/g, "_");
  const out = join(CACHE, "bin", tag, program);
  if (existsSync(out)) return out;
  mkdirSync(join(CACHE, "bin", tag), { recursive: true });
  const src = program === "leaker" ? join(ROOT, "test", "go", "leaker") : noprofSource();
  const env = { ...process.env, GOFLAGS: "-mod=mod", GOTOOLCHAIN: "local", CGO_ENABLED: "0" };
  const argv =
    toolchain === "debian13"
      ? [join(ROOT, "scripts", "in-debian13"), "--", "env", `GOCACHE=${join(ROOT, ".cache", "gocache-debian13")}`, "go", "build", ...all, "-o", out, "."]
      : [toolchain, "build", ...all, "-o", out, "."];
  const p = Bun.spawnSync(argv, { cwd: src, env: { ...env, GOCACHE: join(ROOT, ".cache", "gocache") }, stderr: "pipe" });
  if (p.exitCode !== 0) throw new Error(`${argv.join(" ")} failed: ${p.stderr.toString()}`);
  return out;
}

function version(toolchain: string): string {
  const argv = toolchain === "debian13" ? [join(ROOT, "scripts", "in-debian13"), "--", "go", "env", "GOVERSION"] : [toolchain, "env", "GOVERSION"];
  const p = Bun.spawnSync(argv, { env: { ...process.env, GOTOOLCHAIN: "local" } });
  if (p.exitCode !== 0) throw new Error(`OOMPROF_GO_LIST names ${toolchain}, which does not run`);
  return p.stdout.toString().trim();
}

/**
 * Name, address and size of .text and the writable sections: the layout the two
 * builds must share. (Read-only sections may differ: Go 1.19 and 1.21 put
 * .typelink and what follows 32 bytes lower in -s builds of executables.)
 */
function codeAndDataLayout(elf: ElfFile): string[] {
  const SHF_WRITE = 1n;
  return elf.sections.filter((s) => s.name === ".text" || (s.flags & SHF_WRITE) !== 0n).map((s) => `${s.name} 0x${s.addr.toString(16)} ${s.size}`);
}

function found(v: ReturnType<typeof findRuntimeVarsWithoutSymbols>): Record<(typeof VARS)[number], bigint | undefined> {
  return {
    "runtime.mbuckets": v.mbuckets,
    "runtime.MemProfileRate": v.memProfileRate,
    "runtime.mProfCycle": v.cycle?.addr,
    "runtime.disableMemoryProfiling": v.disableMemoryProfiling,
  };
}

/** runtime.allglen, runtime.allp and runtime.sched from .symtab. */
function goroutineVarsFromSymtab(elf: ElfFile): { allglen: bigint; allp: bigint; sched: bigint } {
  const value = (name: string) => {
    const v = elf.symbol(name)?.value;
    if (v === undefined) throw new Error(`${elf.path} has no ${name} in .symtab`);
    return v;
  };
  return { allglen: value("runtime.allglen"), allp: value("runtime.allp"), sched: value("runtime.sched") };
}

function fromSymtab(elf: ElfFile): Record<(typeof VARS)[number], bigint | undefined> {
  return Object.fromEntries(VARS.map((n) => [n, elf.symbol(n)?.value])) as Record<(typeof VARS)[number], bigint | undefined>;
}

for (const toolchain of toolchains) {
  describe(`stripped binaries built by ${toolchain}`, () => {
    for (const mode of MODES) {
      for (const program of ["leaker", "noprof"] as const) {
        test(`${program} ${mode.name}: the addresses found from code equal .symtab's`, async () => {
          const refPath = await build(toolchain, program, [...mode.flags, KEEP_SYMTAB]);
          const strippedPath = await build(toolchain, program, [...mode.flags, STRIP]);
          const ref = await ElfFile.open(refPath);
          const stripped = await ElfFile.open(strippedPath);
          expect(stripped.symbols().size).toBe(0);
          expect(ref.symbol("runtime.mbuckets")).toBeDefined();
          expect(stripped.isPie).toBe(mode.name === "pie");
          // Stripping must not have moved the code or the data.
          expect(codeAndDataLayout(stripped)).toEqual(codeAndDataLayout(ref));
          expect(codeAndDataLayout(ref).map((l) => l.split(" ")[0])).toEqual(expect.arrayContaining([".text", ".noptrdata", ".data", ".bss", ".noptrbss"]));

          const want = fromSymtab(ref);
          const got = findRuntimeVarsWithoutSymbols(stripped);
          expect(found(got)).toEqual(want);
          expect(got.cycle?.shifted).toBe(true);
          // The unstripped build decodes to the same addresses.
          expect(found(findRuntimeVarsWithoutSymbols(ref))).toEqual(want);

          // discoverGoTarget takes the same path for the stripped build.
          const [a, b] = await Promise.all([discoverGoTarget(refPath), discoverGoTarget(strippedPath)]);
          expect(b.vars).toEqual(a.vars);
          expect(b.memProfilingDisabled).toBe(a.memProfilingDisabled);
          expect(b.memProfilingDisabled).toBe(program === "noprof");
          console.log(`${version(toolchain)} ${program} ${mode.name}: ${VARS.map((n) => `${n}=0x${want[n]?.toString(16)}`).join(" ")}`);
        });

        test(`${program} ${mode.name}: runtime.allglen, allp and sched found from code equal .symtab's`, async () => {
          const refPath = await build(toolchain, program, [...mode.flags, KEEP_SYMTAB]);
          const strippedPath = await build(toolchain, program, [...mode.flags, STRIP]);
          const ref = await ElfFile.open(refPath);
          const stripped = await ElfFile.open(strippedPath);
          expect(codeAndDataLayout(stripped)).toEqual(codeAndDataLayout(ref));
          const goVersion = readBuildInfo(ref)!.goVersion;
          const want = goroutineVarsFromSymtab(ref);

          // The symbol table's layout gives the release's offsets the finder needs.
          const layout = goroutineLayout(ref, goVersion);
          if (!layout) throw new Error(`no goroutine layout for ${goVersion}: add it to src/gobinary/runtime-layout.ts`);
          expect({ allglen: layout.allglen, allp: layout.allp, sched: layout.sched }).toEqual(want);
          expect(findGoroutineVarsWithoutSymbols(stripped, layout)).toEqual(want);
          // The unstripped build decodes to the same addresses.
          expect(findGoroutineVarsWithoutSymbols(ref, layout)).toEqual(want);
          // goroutineLayout, and through it discoverGoTarget, take the code path for the stripped build.
          expect(goroutineLayout(stripped, goVersion)).toEqual(layout);
          const [a, b] = await Promise.all([discoverGoTarget(refPath), discoverGoTarget(strippedPath)]);
          try {
            expect(a.goroutines).toEqual(layout);
            expect(b.goroutines).toEqual(layout);
          } finally {
            a.release();
            b.release();
          }
          console.log(
            `${goVersion} ${program} ${mode.name}: ${Object.entries(want)
              .map(([k, v]) => `${k}=0x${v.toString(16)}`)
              .join(" ")}`,
          );
        });
      }
    }

    test("the length decoder walks every function exactly to its end", async () => {
      // Names from the unstripped build; the code is the same in both.
      const elf = await ElfFile.open(await build(toolchain, "leaker", [KEEP_SYMTAB]));
      const symbolizer = GoSymbolizer.fromElf(elf);
      const STT_FUNC = 2;
      let functions = 0;
      const stuck: string[] = [];
      for (const s of elf.symbols().values()) {
        if (s.type !== STT_FUNC) continue;
        // Assembly functions are .abi0 in .symtab, plain in the pclntab.
        const range = symbolizer.functionRange(s.name.replace(/\.abi0$/, ""));
        if (!range || range.entry !== s.value) continue;
        functions++;
        const code = elf.readVirtual(range.entry, Number(range.end - range.entry))!;
        let at = 0;
        while (at < code.length) {
          const insn = decodeX86(code, at, range.entry);
          if (!insn) break;
          at += insn.length;
        }
        if (at !== code.length) stuck.push(`${s.name}+0x${at.toString(16)}`);
      }
      expect(stuck).toEqual([]);
      expect(functions).toBeGreaterThan(1000);
    });
  });
}

describe("damaged binaries give BadBinaryError", () => {
  const toolchain = toolchains[0] ?? "go";

  /** Runs the look-up on `bytes`; returns the error it threw, or undefined. */
  function attempt(bytes: Uint8Array): unknown {
    try {
      findRuntimeVarsWithoutSymbols(new ElfFile("damaged", bytes));
      return undefined;
    } catch (e) {
      return e;
    }
  }

  test("code of the runtime functions overwritten", async () => {
    const bytes = new Uint8Array(await Bun.file(await build(toolchain, "leaker", [STRIP])).arrayBuffer());
    const elf = new ElfFile("ok", bytes);
    const symbolizer = GoSymbolizer.fromElf(elf);
    const text = elf.textSegment();
    const fileOffset = (addr: bigint) => text.offset + Number(addr - text.vaddr);
    const names = ["runtime.mProf_FlushLocked", "runtime.MemProfile", "runtime.memProfileInternal", "runtime.schedinit", "runtime.init", "runtime.allocmcache"];
    for (const fill of [0x00, 0xcc, 0x0f, 0xff]) {
      const copy = new Uint8Array(bytes);
      for (const name of names) {
        const r = symbolizer.functionRange(name);
        if (r) copy.fill(fill, fileOffset(r.entry), fileOffset(r.end));
      }
      expect(attempt(copy)).toBeInstanceOf(BadBinaryError);
    }
  });

  test("goroutine variables: code of their runtime functions overwritten", async () => {
    const bytes = new Uint8Array(await Bun.file(await build(toolchain, "leaker", [STRIP])).arrayBuffer());
    const elf = new ElfFile("ok", bytes);
    const goVersion = readBuildInfo(elf)!.goVersion;
    const layout = goroutineLayout(elf, goVersion);
    if (!layout) throw new Error(`no goroutine layout for ${goVersion}`);
    const symbolizer = GoSymbolizer.fromElf(elf);
    const text = elf.textSegment();
    const fileOffset = (addr: bigint) => text.offset + Number(addr - text.vaddr);
    // Each group is what finds one variable: without it, the finder must refuse.
    const groups = [
      ["runtime.forEachGRace", "runtime.allgadd"],
      ["runtime.preemptall", "runtime.gcMarkTinyAllocs"],
      ["runtime.gfput", "runtime.gfget", "runtime.gfpurge"],
      ["runtime.newproc1"],
    ];
    for (const names of groups) {
      for (const fill of [0x00, 0xcc, 0x0f, 0xff]) {
        const copy = new Uint8Array(bytes);
        for (const name of names) {
          const r = symbolizer.functionRange(name);
          if (!r) throw new Error(`no ${name}`);
          copy.fill(fill, fileOffset(r.entry), fileOffset(r.end));
        }
        const damaged = new ElfFile("damaged", copy);
        let e: unknown;
        try {
          findGoroutineVarsWithoutSymbols(damaged, layout);
        } catch (caught) {
          e = caught;
        }
        expect(e).toBeInstanceOf(BadBinaryError);
        // The count is an extra: its layout is then unknown, never an exception.
        expect(goroutineLayout(damaged, goVersion)).toBeUndefined();
      }
    }
  });

  test("truncated copies and random garbage in code never escape as other exceptions", async () => {
    const bytes = new Uint8Array(await Bun.file(await build(toolchain, "leaker", [STRIP])).arrayBuffer());
    const elf = new ElfFile("ok", bytes);
    const symbolizer = GoSymbolizer.fromElf(elf);
    const text = elf.textSegment();
    for (const keep of [64, 4096, bytes.length >> 2, bytes.length >> 1, bytes.length - 4096]) {
      expect(attempt(bytes.slice(0, keep))).toBeInstanceOf(BadBinaryError);
    }
    // Deterministic garbage over the functions the patterns read: each run must end in a result or a BadBinaryError.
    let seed = 12345;
    const random = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32;
    const ranges = ["runtime.mProf_FlushLocked", "runtime.schedinit", "runtime.init", "runtime.allocmcache", "runtime.mProf_Flush", "runtime.stkbucket"]
      .map((n) => symbolizer.functionRange(n))
      .filter((r) => r !== undefined);
    for (let round = 0; round < 300; round++) {
      const copy = new Uint8Array(bytes);
      for (let k = 0; k < 8; k++) {
        const r = ranges[Math.floor(random() * ranges.length)]!;
        const at = text.offset + Number(r.entry - text.vaddr) + Math.floor(random() * Number(r.end - r.entry));
        copy[at] = Math.floor(random() * 256);
      }
      const e = attempt(copy);
      if (e !== undefined) expect(e).toBeInstanceOf(BadBinaryError);
    }
    // The same for the goroutine count's functions, through goroutineLayout, which must not throw at all.
    const goVersion = readBuildInfo(elf)!.goVersion;
    const goroutineRanges = [
      "runtime.forEachGRace",
      "runtime.allgadd",
      "runtime.preemptall",
      "runtime.gcMarkTinyAllocs",
      "runtime.timeSleepUntil",
      "runtime.checkdead",
      "runtime.gfput",
      "runtime.gfget",
      "runtime.gfpurge",
      "runtime.newproc1",
      "runtime.gdestroy",
      "runtime.goexit0",
    ]
      .map((n) => symbolizer.functionRange(n))
      .filter((r) => r !== undefined);
    for (let round = 0; round < 300; round++) {
      const copy = new Uint8Array(bytes);
      for (let k = 0; k < 8; k++) {
        const r = goroutineRanges[Math.floor(random() * goroutineRanges.length)]!;
        const at = text.offset + Number(r.entry - text.vaddr) + Math.floor(random() * Number(r.end - r.entry));
        copy[at] = Math.floor(random() * 256);
      }
      goroutineLayout(new ElfFile("damaged", copy), goVersion);
    }
  });

  test("arm64 stripped binaries are refused with BadBinaryError", async () => {
    const dir = join(CACHE, "bin", `arm64-${version(toolchain)}`.replace(/[^A-Za-z0-9._-]/g, "_"));
    mkdirSync(dir, { recursive: true });
    const out = join(dir, "noprof");
    const p = Bun.spawnSync([toolchain === "debian13" ? "go" : toolchain, "build", "-buildvcs=false", STRIP, "-o", out, "."], {
      cwd: noprofSource(),
      env: { ...process.env, GOOS: "linux", GOARCH: "arm64", CGO_ENABLED: "0", GOTOOLCHAIN: "local", GOFLAGS: "", GOCACHE: join(ROOT, ".cache", "gocache") },
      stderr: "pipe",
    });
    if (p.exitCode !== 0) throw new Error(`arm64 build failed: ${p.stderr.toString()}`);
    const bytes = new Uint8Array(await Bun.file(out).arrayBuffer());
    const e = attempt(bytes);
    expect(e).toBeInstanceOf(BadBinaryError);
    expect((e as Error).message).toContain("arm64");
    // No goroutine count for them either, and no exception from asking.
    const elf = new ElfFile("arm64", bytes);
    expect(goroutineLayout(elf, readBuildInfo(elf)!.goVersion)).toBeUndefined();
  });
});
