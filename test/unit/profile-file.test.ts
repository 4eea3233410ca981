import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { writeFileAtomic, writesSynced } from "../../src/output/profile-file.ts";
import { UserError } from "../../src/errors.ts";

const dir = mkdtempSync(join(tmpdir(), "oomprof-profile-file-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("writeFileAtomic", () => {
  test("puts the whole file in place, private, with no temp file left, and fsyncs it", async () => {
    const data = new Uint8Array(300_000).map((_, i) => i & 0xff);
    const failures: string[] = [];
    const path = writeFileAtomic(dir, "a.pb.gz", data, (m) => failures.push(m));
    expect(path).toBe(join(dir, "a.pb.gz"));
    expect(Buffer.compare(readFileSync(path), Buffer.from(data))).toBe(0);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(readdirSync(dir).filter((f) => f.endsWith(".tmp"))).toEqual([]);
    await writesSynced();
    expect(failures).toEqual([]);
  });

  test("a directory that cannot be written: one clear error, nothing left behind", () => {
    const missing = join(dir, "gone");
    expect(() => writeFileAtomic(missing, "b.pb.gz", new Uint8Array(10))).toThrow(UserError);
    expect(() => writeFileAtomic(missing, "b.pb.gz", new Uint8Array(10))).toThrow(`cannot write profile ${join(missing, "b.pb.gz")}: ENOENT`);
  });

  test("a planted symlink at the temp file's name is not followed", () => {
    const target = join(dir, "victim-file");
    symlinkSync(target, join(dir, `.c.pb.gz.${process.pid}.tmp`));
    expect(() => writeFileAtomic(dir, "c.pb.gz", new Uint8Array(10))).toThrow("EEXIST");
    expect(() => statSync(target)).toThrow();
  });
});
