import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { z } from "zod";
import { funcNameForPrint, GoSymbolizer, type SourceFrame } from "../../src/symbolize/pclntab.ts";
import { ElfFile, PT_LOAD } from "../../src/gobinary/elf.ts";

/**
 * Builds a small Go program with each toolchain in OOMPROF_GO_LIST (colon
 * separated paths to `go`; default: `go` on PATH), as a normal, a stripped and
 * a PIE binary. The program records its own stacks with runtime.Callers and
 * prints runtime.CallersFrames's view of them; GoSymbolizer must produce
 * exactly the same frames from the binary alone, inlined frames included.
 */

const GO_PROGRAM = String.raw`
package main

import (
	"bufio"
	"encoding/json"
	"os"
	"runtime"
	"strconv"
	"strings"
)

type stack = map[string]any

var stacks []stack

//go:noinline
func record(name string) int {
	pcs := make([]uintptr, 64)
	n := runtime.Callers(1, pcs)
	hexPCs := []string{}
	for _, pc := range pcs[:n] {
		hexPCs = append(hexPCs, strconv.FormatUint(uint64(pc), 16))
	}
	frames := []any{}
	iter := runtime.CallersFrames(pcs[:n])
	for {
		f, more := iter.Next()
		frames = append(frames, map[string]any{
			"pc": strconv.FormatUint(uint64(f.PC), 16), "function": f.Function, "file": f.File, "line": f.Line,
		})
		if !more {
			break
		}
	}
	stacks = append(stacks, stack{"name": name, "pcs": hexPCs, "frames": frames})
	return n
}

// smallHelper and wrapHelper are small enough to be inlined into their callers.
func smallHelper(name string) int { return record(name) + 1 }

func wrapHelper(name string) int { return smallHelper(name) * 2 }

//go:noinline
func notInlined(depth int) int {
	if depth > 0 {
		return notInlined(depth-1) + 1
	}
	return wrapHelper("inlined-twice") + record("direct")
}

type box[T any] struct{ v T }

//go:noinline
func (b *box[T]) capture() int { return smallHelper("generic-method") }

func main() {
	total := notInlined(0) + notInlined(3)
	total += (&box[int]{1}).capture() + (&box[string]{"x"}).capture()
	func() { total += wrapHelper("closure") }()
	out := bufio.NewWriter(os.Stdout)
	json.NewEncoder(out).Encode(map[string]any{"stacks": stacks, "base": textMapping(), "total": total})
	out.Flush()
}

// textMapping returns the start of the executable's mapping at file offset 0,
// so the test can undo the load bias of PIE builds.
func textMapping() string {
	exe, _ := os.Executable()
	data, _ := os.ReadFile("/proc/self/maps")
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) >= 6 && f[2] == "00000000" && f[5] == exe {
			return f[0][:strings.IndexByte(f[0], '-')]
		}
	}
	return ""
}
`;

/**
 * An independent oracle for big tables: Go's own debug/gosym, run on the
 * toolchain's compile binary. It knows no inlining, but its innermost
 * file:line and physical function name must match ours at every PC.
 */
const GOSYM_CHECKER = String.raw`
package main

import (
	"debug/elf"
	"debug/gosym"
	"fmt"
	"math/rand"
	"os"
)

func main() {
	f, err := elf.Open(os.Args[1])
	if err != nil {
		panic(err)
	}
	s := f.Section(".gopclntab")
	if s == nil {
		s = f.Section(".data.rel.ro.gopclntab")
	}
	data, err := s.Data()
	if err != nil {
		panic(err)
	}
	table, err := gosym.NewTable(nil, gosym.NewLineTable(data, f.Section(".text").Addr))
	if err != nil {
		panic(err)
	}
	r := rand.New(rand.NewSource(1))
	for i := 0; i < 5000; i++ {
		fn := table.Funcs[r.Intn(len(table.Funcs))]
		if fn.End <= fn.Entry {
			continue
		}
		pc := fn.Entry + uint64(r.Int63n(int64(fn.End-fn.Entry)))
		file, line, _ := table.PCToLine(pc)
		fmt.Printf("%x\t%s\t%s\t%d\n", pc, fn.Name, file, line)
	}
}
`;

const FrameSchema = z.object({ pc: z.string(), function: z.string(), file: z.string(), line: z.number() });
const OutputSchema = z.object({
  base: z.string().regex(/^[0-9a-f]+$/, "mapping start"),
  stacks: z.array(z.object({ name: z.string(), pcs: z.array(z.string()), frames: z.array(FrameSchema) })),
});
type Output = z.infer<typeof OutputSchema>;
type ExpectedFrame = Pick<SourceFrame, "function" | "file" | "line">;

const VARIANTS: Array<{ name: string; flags: string[] }> = [
  { name: "default", flags: [] },
  { name: "stripped", flags: ["-ldflags=-s -w"] },
  { name: "pie", flags: ["-buildmode=pie"] },
  { name: "pie-stripped", flags: ["-buildmode=pie", "-ldflags=-s -w"] },
];

const explicitList = process.env.OOMPROF_GO_LIST;
const goList = (explicitList ?? "go").split(":").filter(Boolean);
const workDir = mkdtempSync(join(tmpdir(), "oomprof-symbolize-"));
afterAll(() => rmSync(workDir, { recursive: true, force: true }));

/** Go toolchain version, or undefined when the default `go` is not installed. */
function goVersion(go: string): string | undefined {
  try {
    const r = Bun.spawnSync([go, "env", "GOVERSION"], { env: goEnv() });
    if (r.exitCode === 0) return r.stdout.toString().trim();
  } catch {
    // not installed
  }
  if (explicitList) throw new Error(`OOMPROF_GO_LIST names ${go}, which does not run`);
  return undefined;
}

function goEnv(extra: Record<string, string> = {}): Record<string, string> {
  // GOTOOLCHAIN=local: never download a different toolchain (Go 1.21+).
  return { ...(process.env as Record<string, string>), GOTOOLCHAIN: "local", GOFLAGS: "", ...extra };
}

async function goBuild(go: string, srcDir: string, out: string, flags: string[], env: Record<string, string> = {}) {
  const proc = Bun.spawn([go, "build", ...flags, "-o", out, "."], { cwd: srcDir, env: goEnv(env), stderr: "pipe", stdout: "pipe" });
  const [code, stderr] = await Promise.all([proc.exited, new Response(proc.stderr).text()]);
  if (code !== 0) throw new Error(`go build ${flags.join(" ")} failed:\n${stderr}`);
}

function writeProgram(dir: string) {
  writeFileSync(join(dir, "main.go"), GO_PROGRAM);
  writeFileSync(join(dir, "go.mod"), "module example.com/symtest\n\ngo 1.18\n");
}

async function runProgram(path: string): Promise<Output> {
  const proc = Bun.spawn([path], { stdout: "pipe", stderr: "pipe" });
  const [code, stdout, stderr] = await Promise.all([proc.exited, new Response(proc.stdout).text(), new Response(proc.stderr).text()]);
  if (code !== 0) throw new Error(`${path} exited ${code}: ${stderr}`);
  return OutputSchema.parse(JSON.parse(stdout));
}

/** Runtime address minus link-time address: non-zero only for PIE. */
function loadBias(elf: ElfFile, mappingStart: bigint): bigint {
  const loads = elf.segments.filter((s) => s.type === PT_LOAD);
  const lowest = loads.reduce((min, s) => (s.vaddr < min ? s.vaddr : min), loads[0]!.vaddr);
  return mappingStart - (lowest & ~0xfffn);
}

const hex = (s: string) => BigInt(`0x${s}`);

/**
 * For every PC of every stack, GoSymbolizer.frames(lookup PC) must equal the
 * CallersFrames frames of that PC and of the following PCs that are its
 * inlined callers (runtime.Callers emits one PC per logical frame), ending at
 * the physical frame. Returns the symbolized expansions, for further checks.
 */
function checkAgainstRuntime(sym: GoSymbolizer, output: Output, bias: bigint): SourceFrame[][] {
  const expansions: SourceFrame[][] = [];
  for (const stack of output.stacks) {
    const pcs = stack.pcs.map(hex);
    // CallersFrames's frames, each tagged with the index of the Callers PC it
    // came from (frame.PC is that pc-1, or pc itself at a function entry).
    const expected: Array<ExpectedFrame & { pcIndex: number }> = [];
    const lookups: bigint[] = [];
    for (const f of stack.frames) {
      const pc = hex(f.pc);
      const next = pcs[lookups.length];
      if (next !== undefined && (pc === next - 1n || pc === next)) lookups.push(pc);
      expect(lookups.length).toBeGreaterThan(0);
      expected.push({ function: f.function, file: f.file, line: f.line, pcIndex: lookups.length - 1 });
    }
    expect(lookups.length).toBe(pcs.length);

    for (let i = 0; i < lookups.length; i++) {
      const got = sym.frames(lookups[i]! - bias);
      expansions.push(got);
      const start = expected.findIndex((f) => f.pcIndex === i);
      const end = start + got.length;
      const context = `${stack.name} pc#${i} 0x${lookups[i]!.toString(16)}`;
      expect({ context, frames: got.map(({ function: fn, file, line }) => ({ function: fn, file, line })) }).toEqual({
        context,
        frames: expected.slice(start, end).map(({ function: fn, file, line }) => ({ function: fn, file, line })),
      });
      // The expansion ends with all frames of a Callers PC: the physical frame.
      const endsAtPcBoundary = end === expected.length || expected[end]!.pcIndex !== expected[end - 1]!.pcIndex;
      expect({ context, endsAtPcBoundary }).toEqual({ context, endsAtPcBoundary: true });
      expect(got.map((f) => f.inlined)).toEqual(got.map((_, k) => k < got.length - 1));
    }
  }
  return expansions;
}

/** A copy of the binary whose pclntab section is renamed, so the symbolizer must find the table another way. */
function withoutPclntabSection(bytes: Uint8Array): Uint8Array {
  const copy = new Uint8Array(bytes);
  const needle = new TextEncoder().encode("gopclntab\0");
  let renamed = 0;
  outer: for (let i = 0; i + needle.length <= copy.length; i++) {
    for (let k = 0; k < needle.length; k++) if (copy[i + k] !== needle[k]) continue outer;
    copy[i] = "x".charCodeAt(0);
    renamed++;
  }
  expect(renamed).toBeGreaterThan(0);
  return copy;
}

for (const go of goList) {
  const version = goVersion(go);
  describe.skipIf(!version)(`GoSymbolizer vs runtime.CallersFrames (${version ?? go})`, () => {
    const dir = join(workDir, (version ?? "none").replace(/[^\w.]/g, "_"));
    let sourceReady = false;
    const prepare = () => {
      if (sourceReady) return;
      mkdirSync(dir, { recursive: true });
      writeProgram(dir);
      sourceReady = true;
    };

    for (const variant of VARIANTS) {
      test(`${variant.name} build`, async () => {
        prepare();
        const binary = join(dir, `prog-${variant.name}`);
        await goBuild(go, dir, binary, variant.flags);
        const output = await runProgram(binary);
        const elf = await ElfFile.open(binary);
        const sym = GoSymbolizer.fromElf(elf);
        expect(sym.functionCount).toBeGreaterThan(100);
        const bias = loadBias(elf, hex(output.base));
        if (variant.flags.includes("-buildmode=pie")) expect(elf.isPie).toBe(true);
        const expansions = checkAgainstRuntime(sym, output, bias);

        // The program was written to exercise inlining: make sure it did.
        const names = expansions.map((e) => e.map((f) => f.function).join(" < "));
        expect(names).toContain("main.smallHelper < main.wrapHelper < main.notInlined");
        expect(names).toContain("main.smallHelper < main.(*box[...]).capture");
        expect(names.some((n) => n.startsWith("main.wrapHelper < main.main.func1"))).toBe(true);
        const minor = Number(/^go1\.(\d+)/.exec(version!)?.[1] ?? 0);
        // runtime/pprof names generic functions by their full symbol since Go 1.21, so the
        // two shapes of box's method stay two functions in a profile.
        const symbolNames = new Set(expansions.flat().flatMap((f) => (f.function === "main.(*box[...]).capture" ? [f.symbolName] : [])));
        if (minor >= 21) expect([...symbolNames].every((n) => n?.startsWith("main.(*box[go.shape.") && n.endsWith("]).capture"))).toBe(true);
        else expect([...symbolNames]).toEqual([undefined]);
        expect(symbolNames.size).toBeGreaterThanOrEqual(1);
        if (minor >= 20) {
          // Go 1.20+ records the line of the `func` keyword.
          const helper = expansions.flat().find((f) => f.function === "main.smallHelper");
          expect(helper?.startLine).toBe(GO_PROGRAM.split("\n").findIndex((l) => l.startsWith("func smallHelper")) + 1);
        }

        // Same answers when the .gopclntab section cannot be found by name
        // (symbol look-up in unstripped builds, magic scan in stripped ones).
        const hidden = GoSymbolizer.fromElf(new ElfFile(binary, withoutPclntabSection(elf.data)));
        checkAgainstRuntime(hidden, output, bias);

        // Outside every function: nothing.
        expect(sym.frames(0n)).toEqual([]);
        expect(sym.frames(0xffff_ffff_ffffn)).toEqual([]);
      }, 300_000);
    }

    test("agrees with debug/gosym on the toolchain's own compile binary", async () => {
      const checkerDir = join(dir, "gosym-checker");
      mkdirSync(checkerDir, { recursive: true });
      writeFileSync(join(checkerDir, "main.go"), GOSYM_CHECKER);
      writeFileSync(join(checkerDir, "go.mod"), "module example.com/gosymchecker\n\ngo 1.18\n");
      const checker = join(checkerDir, "checker");
      await goBuild(go, checkerDir, checker, []);
      const toolDir = Bun.spawnSync([go, "env", "GOTOOLDIR"], { env: goEnv() }).stdout.toString().trim();
      // A toolchain run inside a Debian root (13, or unstable's) reports paths inside that root.
      const rootDir = go.includes("/scripts/sid/")
        ? (process.env.OOMPROF_SID_ROOT ?? "/var/cache/oomprof/sid")
        : (process.env.OOMPROF_TRIXIE_ROOT ?? "/var/cache/oomprof/trixie");
      const inRoot = join(rootDir, toolDir, "compile");
      const compile = existsSync(join(toolDir, "compile")) ? join(toolDir, "compile") : inRoot;
      const proc = Bun.spawn([checker, compile], { stdout: "pipe", stderr: "pipe" });
      const [code, tsv, stderr] = await Promise.all([proc.exited, new Response(proc.stdout).text(), new Response(proc.stderr).text()]);
      expect({ code, stderr }).toEqual({ code: 0, stderr: "" });

      const sym = GoSymbolizer.fromElf(await ElfFile.open(compile));
      const mismatches: string[] = [];
      let inlined = 0;
      const rows = tsv.trim().split("\n");
      for (const row of rows) {
        const [pc, name, file, line] = row.split("\t") as [string, string, string, string];
        const frames = sym.frames(hex(pc));
        if (frames.length > 1) inlined++;
        // gosym says "" and -1 where the runtime (and we) say "?" and 0: padding after a function's code.
        const want = { function: funcNameForPrint(name), file: file || "?", line: Math.max(0, Number(line)) };
        const got = { function: frames.at(-1)?.function, file: frames[0]?.file, line: frames[0]?.line };
        // The runtime gives the function at name offset 0 (the first in the table) no name.
        if (got.function === "" && frames.length === 1) got.function = want.function;
        if (JSON.stringify(got) !== JSON.stringify(want)) mismatches.push(`${pc}: got ${JSON.stringify(got)}, want ${JSON.stringify(want)}`);
      }
      expect(rows.length).toBeGreaterThan(4000);
      expect(inlined).toBeGreaterThan(100);
      expect(mismatches.slice(0, 5)).toEqual([]);
    }, 300_000);

    test("arm64 cross build: physical function names at each function entry", async () => {
      prepare();
      const binary = join(dir, "prog-arm64");
      await goBuild(go, dir, binary, [], { GOARCH: "arm64", GOOS: "linux", CGO_ENABLED: "0" });
      const elf = await ElfFile.open(binary);
      expect(elf.arch).toBe("arm64");
      const sym = GoSymbolizer.fromElf(elf);
      let checked = 0;
      for (const s of elf.symbols().values()) {
        // STT_FUNC symbols of package main; their entry PCs have no inlining.
        if (s.type !== 2 || !s.name.startsWith("main.") || s.name.endsWith(".abi0")) continue;
        const frames = sym.frames(s.value);
        expect(frames.at(-1)?.function).toBe(s.name.replace(/\[.*\]/, "[...]"));
        expect(frames.at(-1)?.file.endsWith("/main.go")).toBe(true);
        checked++;
      }
      expect(checked).toBeGreaterThanOrEqual(5);
    }, 300_000);
  });
}
