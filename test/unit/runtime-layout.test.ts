import { afterAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { cpSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { z } from "zod";
import { readBuildInfo } from "../../src/gobinary/buildinfo.ts";
import { ElfFile } from "../../src/gobinary/elf.ts";
import { HEAP_STATS_GENERATIONS, memStatsLayout } from "../../src/gobinary/memstats-layout.ts";
import { goroutineLayout } from "../../src/gobinary/runtime-layout.ts";

/**
 * The goroutine count at death reads runtime.schedt and runtime.p at offsets from a
 * per-release table, and the memory breakdown runtime.gcControllerState, runtime.mstats
 * and runtime.heapStatsDelta at offsets from another. This checks the table against the DWARF of real builds, with
 * every toolchain in OOMPROF_GO_LIST, for amd64 and arm64: test/go/runtime-offsets
 * reads the offsets with Go's own debug/dwarf.
 */

// A first build for a new GOARCH compiles the standard library.
setDefaultTimeout(180_000);

const ROOT = resolve(import.meta.dir, "../..");
const goList = (process.env.OOMPROF_GO_LIST ?? "go").split(":").filter(Boolean);
const work = mkdtempSync(join(tmpdir(), "oomprof-layout-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const Field = z.object({ offset: z.number().int(), size: z.number().int() });
const Offsets = z.object({
  goVersion: z.string(),
  goarch: z.string(),
  schedGFreeN: Field,
  schedGFreeN2: Field.optional(),
  schedNgsys: Field,
  pGFreeN: Field,
  allpLenOffset: z.number().int(),
  memStats: z.object({
    heapInUse: Field,
    mappedReady: Field,
    stacksSys: Field,
    heapStats: Field,
    heapStatsCount: z.number().int(),
    deltaSize: z.number().int(),
    inStacks: Field,
  }),
});

function build(go: string, dir: string, out: string, env: Record<string, string> = {}): void {
  const r = Bun.spawnSync([go, "build", "-o", out, "."], {
    cwd: dir,
    env: { ...process.env, GOTOOLCHAIN: "local", GOFLAGS: "-mod=mod", CGO_ENABLED: "0", GOCACHE: join(ROOT, ".cache", "gocache"), ...env },
    stderr: "pipe",
  });
  if (r.exitCode !== 0) throw new Error(`${go} build in ${dir} failed: ${r.stderr.toString()}`);
}

// The reader is built once, with the first toolchain; it reads any release's DWARF.
const readerSrc = join(work, "runtime-offsets");
const reader = join(work, "runtime-offsets-bin");
cpSync(join(ROOT, "test", "go", "runtime-offsets"), readerSrc, { recursive: true });
build(goList[0]!, readerSrc, reader);

describe.each(goList)("goroutine and memstats layout tables against DWARF, %s", (go) => {
  for (const goarch of ["amd64", "arm64"]) {
    test(goarch, () => {
      const src = join(work, `leaker-${goList.indexOf(go)}-${goarch}`);
      cpSync(join(ROOT, "test", "go", "leaker"), src, { recursive: true });
      const bin = join(src, "leaker");
      build(go, src, bin, { GOARCH: goarch });
      const r = Bun.spawnSync([reader, bin], { stdout: "pipe", stderr: "pipe" });
      if (r.exitCode !== 0) throw new Error(r.stderr.toString());
      const dwarf = Offsets.parse(JSON.parse(r.stdout.toString()));
      const elf = new ElfFile(bin, new Uint8Array(readFileSync(bin)));
      const layout = goroutineLayout(elf, readBuildInfo(elf)!.goVersion);
      if (!layout) throw new Error(`no layout for ${dwarf.goVersion}: add it to src/gobinary/runtime-layout.ts`);
      expect({ schedGFreeN: layout.schedGFreeN, schedGFreeN2: layout.schedGFreeN2, schedNgsys: layout.schedNgsys, pGFreeN: layout.pGFreeN }).toEqual({
        schedGFreeN: dwarf.schedGFreeN.offset,
        schedGFreeN2: dwarf.schedGFreeN2?.offset,
        schedNgsys: dwarf.schedNgsys.offset,
        pGFreeN: dwarf.pGFreeN.offset,
      });
      // The probe reads each as an int32, and allp's length one word in.
      expect([dwarf.schedGFreeN.size, dwarf.schedGFreeN2?.size ?? 4, dwarf.schedNgsys.size, dwarf.pGFreeN.size, dwarf.allpLenOffset]).toEqual([4, 4, 4, 4, 8]);
      expect(layout.allglen).toBe(elf.symbol("runtime.allglen")!.value);

      const ms = memStatsLayout(elf, dwarf.goVersion);
      if (!ms) throw new Error(`no memstats layout for ${dwarf.goVersion}: add it to src/gobinary/memstats-layout.ts`);
      const d = dwarf.memStats;
      expect({ ...ms, gcController: undefined, memstats: undefined }).toEqual({
        gcController: undefined,
        memstats: undefined,
        heapInUse: d.heapInUse.offset,
        mappedReady: d.mappedReady.offset,
        stacksSys: d.stacksSys.offset,
        heapStats: d.heapStats.offset,
        deltaSize: d.deltaSize,
        inStacks: d.inStacks.offset,
      });
      // Read as 8-byte words, the ring of three generations.
      expect([d.heapInUse.size, d.mappedReady.size, d.stacksSys.size, d.inStacks.size, d.heapStatsCount]).toEqual([8, 8, 8, 8, HEAP_STATS_GENERATIONS]);
      expect([ms.gcController, ms.memstats]).toEqual([elf.symbol("runtime.gcController")!.value, elf.symbol("runtime.memstats")!.value]);
    });
  }
});
