import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CaptureAssembler } from "../../src/capture/walk-capture.ts";
import { reportKill } from "../../src/output/report-kill.ts";
import { heapSamples } from "../../src/profile/heap-views.ts";
import { parseBpftraceLine } from "../../src/stream/bpftrace-json.ts";
import { parseRecord } from "../../src/stream/records.ts";
import { discoverGoTarget } from "../../src/gobinary/go-target.ts";
import { buildGoProgram } from "../helpers/go.ts";

/**
 * Go 1.27 halved runtime.memRecord (no per-cycle byte counts); read with the older
 * layout its counters were garbage (measured: "Go heap in use 67245029 TiB"). So a
 * binary from a release newer than oomprof decodes gets no profile, and says why; and
 * 1.27's 8-word records get their byte counts from the bucket's object size.
 */
const dir = mkdtempSync(join(tmpdir(), "oomprof-layout-guard-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function fixtureCapture() {
  const assembler = new CaptureAssembler();
  for (const line of readFileSync(new URL("../fixtures/leaker-go1.19-bpftrace0.17.ndjson", import.meta.url), "utf8").split("\n")) {
    const m = line ? parseBpftraceLine(line) : undefined;
    if (m?.type === "printf") assembler.add(parseRecord(m.data));
  }
  return assembler.capture(assembler.pids()[0]!);
}

describe("heap-profile record layout", () => {
  test("a release oomprof decodes gets its profile; a newer one gets none, and the reason", async () => {
    const target = await discoverGoTarget(await buildGoProgram("leaker"));
    expect(target.memRecordWords).toBe(16);
    const ctx = { symbolizer: undefined, outDir: dir, lostEvents: 0, where: {}, limitBytes: null, firstSeenMs: undefined };
    const known = reportKill(fixtureCapture(), { ...ctx, target }).event;
    expect(known.profile).not.toBeNull();
    const newer = { ...target, buildInfo: { ...target.buildInfo, goVersion: "go1.28.0" }, memRecordWords: undefined };
    const e = reportKill(fixtureCapture(), { ...ctx, target: newer }).event;
    expect(e.profile).toBeNull();
    expect(e.complete).toBe(false);
    expect(e.reason).toContain("go1.28.0 stores heap-profile records in a layout this oomprof does not decode");
  });

  test("Go 1.27 records: bytes are counts times the bucket's size, cycle by cycle", () => {
    const bucket = { address: 1, size: 4096, stack: [1], counts: [10, 4, 3, 1, 0, 0, 2, 2, 99, 99, 99, 99, 99, 99, 99, 99] };
    // The same record in the 16-word layout, bytes written out; the trailing 99s are not Go 1.27's.
    const wide = { ...bucket, counts: [10, 4, 40960, 16384, 3, 1, 12288, 4096, 0, 0, 0, 0, 2, 2, 8192, 8192] };
    for (const cycle of [0, 1, 2, -1]) expect(heapSamples([bucket], 1, cycle, 8)).toEqual(heapSamples([wide], 1, cycle, 16));
    expect(heapSamples([bucket], 1, 0, 8)[0]!.values).toEqual([8, 32768, 8, 32768, 0, 0, 15, 61440]);
  });
});
