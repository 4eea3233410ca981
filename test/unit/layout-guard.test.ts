import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CaptureAssembler } from "../../src/capture/walk-capture.ts";
import { reportKill } from "../../src/output/report-kill.ts";
import { parseBpftraceLine } from "../../src/stream/bpftrace-json.ts";
import { parseRecord } from "../../src/stream/records.ts";
import { discoverGoTarget } from "../../src/target/go-target.ts";
import { buildGoProgram } from "../helpers/go.ts";

/**
 * Go 1.27 halved runtime.memRecord (no per-cycle byte counts). Read with the older
 * layout its counters are garbage (measured: "Go heap in use 67245029 TiB"), so a
 * binary from a release newer than oomprof decodes gets no profile, and says why.
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
    expect(target.profileLayoutKnown).toBe(true);
    const ctx = { symbolizer: undefined, outDir: dir, lostEvents: 0, cgroup: null, limitBytes: null, firstSeenMs: undefined };
    const known = reportKill(fixtureCapture(), { ...ctx, target }).event;
    expect(known.profile).not.toBeNull();
    const newer = { ...target, buildInfo: { ...target.buildInfo, goVersion: "go1.27.4" }, profileLayoutKnown: false };
    const e = reportKill(fixtureCapture(), { ...ctx, target: newer }).event;
    expect(e.profile).toBeNull();
    expect(e.complete).toBe(false);
    expect(e.reason).toContain("go1.27.4 stores heap-profile records in a layout this oomprof does not decode");
  });
});
