import { afterAll, describe, expect, test } from "bun:test";
import { closeSync, copyFileSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { mapFile } from "../../src/process/file-map.ts";
import { ElfFile } from "../../src/gobinary/elf.ts";
import { discoverGoTarget } from "../../src/gobinary/go-target.ts";
import { loadSymbolizer } from "../../src/symbolize/load.ts";
import { GoSymbolizer } from "../../src/symbolize/pclntab.ts";
import { buildGoProgram } from "../helpers/go.ts";

const dir = mkdtempSync(join(tmpdir(), "oomprof-file-map-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Lines of /proc/self/maps naming path: the mappings still in place. */
function mappingsOf(path: string): number {
  return readFileSync("/proc/self/maps", "utf8")
    .split("\n")
    .filter((l) => l.endsWith(path)).length;
}

describe("mapFile", () => {
  test("maps a file's bytes, which stay unchanged until the file is rewritten", () => {
    const path = join(dir, "data");
    const content = new Uint8Array(3 * 4096 + 17).map((_, i) => (i * 7) & 0xff);
    writeFileSync(path, content);
    const fd = openSync(path, "r");
    try {
      const mapped = mapFile(fd)!;
      expect(mapped).toBeDefined();
      expect(mappingsOf(path)).toBeGreaterThan(0);
      expect(Buffer.compare(Buffer.from(mapped.bytes), Buffer.from(content))).toBe(0);
      expect(mapped.unchanged()).toBe(true);
      // Rewritten in place, as `cp new old` does: the bytes must not be read again.
      writeFileSync(path, content.subarray(0, 100));
      expect(mapped.unchanged()).toBe(false);
    } finally {
      closeSync(fd);
    }
  });

  test("an empty file is not mapped (ElfFile then reads it, and says it is no ELF file)", () => {
    const path = join(dir, "empty");
    writeFileSync(path, "");
    const fd = openSync(path, "r");
    try {
      expect(mapFile(fd)).toBeUndefined();
      expect(() => ElfFile.fromFd(fd, path)).toThrow("not an ELF file");
    } finally {
      closeSync(fd);
    }
  });

  test("the mapping goes once its bytes are collected", () => {
    const path = join(dir, "collected");
    writeFileSync(path, new Uint8Array(8192).fill(1));
    const fd = openSync(path, "r");
    const mapSome = () => {
      for (let i = 0; i < 8; i++) expect(mapFile(fd)!.bytes[100]).toBe(1);
    };
    mapSome();
    const before = mappingsOf(path);
    for (let i = 0; i < 3; i++) Bun.gc(true);
    closeSync(fd);
    expect(before).toBeGreaterThan(0);
    // Conservative stack scanning may keep one alive; the others must be unmapped.
    expect(mappingsOf(path)).toBeLessThanOrEqual(1);
  });
});

describe("a Go binary's symbol tables, mapped", () => {
  test("symbolize as read ones do, and say when the binary was rewritten in place", async () => {
    const built = await buildGoProgram("memstats");
    const path = join(dir, "memstats");
    copyFileSync(built, path);
    const target = await discoverGoTarget(path);
    try {
      const mapped = loadSymbolizer(target, (m) => {
        throw new Error(m);
      })!;
      expect(mappingsOf(path)).toBeGreaterThan(0);
      const read = GoSymbolizer.fromElf(new ElfFile(path, new Uint8Array(readFileSync(path))));
      const main = read.functionRange("main.main")!;
      for (let pc = main.entry; pc < main.end; pc += 7n) expect(mapped.frames(pc)).toEqual(read.frames(pc));
      expect(mapped.unchanged?.()).toBe(true);
      // A rebuild copied over it (one byte longer: the file's times are only as fine as the kernel's tick).
      writeFileSync(path, Buffer.concat([readFileSync(built), Buffer.from([0])]));
      expect(mapped.unchanged?.()).toBe(false);
    } finally {
      target.release();
    }
  });
});
