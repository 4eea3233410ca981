import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { discoverGoTarget } from "../../src/gobinary/go-target.ts";
import { rehearsalCapture } from "../../src/output/rehearsal.ts";
import { locationTableFor, reportKill } from "../../src/output/report-kill.ts";
import { renderKillSummary, terminalStyle } from "../../src/output/summary.ts";
import { loadSymbolizer } from "../../src/symbolize/load.ts";
import { GoSymbolizer } from "../../src/symbolize/pclntab.ts";
import { buildGoProgram } from "../helpers/go.ts";

const dir = mkdtempSync(join(tmpdir(), "oomprof-rehearsal-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A real Go binary, its symbolizer, and main.main's entry, where the made-up stacks return to. */
async function memstatsProgram() {
  const target = await discoverGoTarget(await buildGoProgram("memstats"));
  const symbolizer = loadSymbolizer(target, (m) => {
    throw new Error(m);
  })!;
  const main = (symbolizer as GoSymbolizer).functionRange("main.main")!;
  return { target, symbolizer, mainEntry: Number(main.entry) };
}

/** KillReporter.rehearse runs a whole report on a living process's stacks: it must leave nothing behind. */
describe("a rehearsed report", () => {
  test("goes through every step of a real one, and writes nothing", async () => {
    const { target, symbolizer, mainEntry } = await memstatsProgram();
    try {
      // Stacks of return PCs inside main.main, as a mirror would have read them.
      const stacks = Array.from({ length: 40 }, (_, i) => ({
        address: 0x10000 + i * 0x100,
        size: 64,
        stack: [mainEntry + 1 + (i % 16), mainEntry + 21],
        counts: [],
      }));
      const locations = locationTableFor(target, symbolizer, 0);
      locations.prepare(stacks.map((b) => b.stack));
      const capture = rehearsalCapture(4242, stacks, 0);
      const out = dir;
      const ctx = { target, symbolizer, outDir: out, lostEvents: 0, where: {}, limitBytes: null, firstSeenMs: performance.now(), locations };

      const rehearsed = reportKill(capture, { ...ctx, rehearsal: true });
      expect(rehearsed.event).toMatchObject({ event: "oom_kill", complete: true, reason: null, buckets: 40 });
      expect(rehearsed.event.profile).toStartWith(out);
      expect(rehearsed.event.inuse_bytes).toBeGreaterThan(0);
      expect(rehearsed.sites?.sites[0]?.function).toBe("main.main");
      expect(renderKillSummary(rehearsed.event, rehearsed.sites, terminalStyle(process.stderr))).toContain("main.main");
      expect(readdirSync(dir)).toEqual([]);

      // The same capture, not rehearsed, is written: the flag is what keeps the rehearsal off disk.
      const real = reportKill(capture, ctx);
      expect(real.event.profile).toStartWith(out);
      expect(readdirSync(out)).toHaveLength(1);
    } finally {
      target.release();
    }
  });
});

/** capture_ms is "kill → profile on disk": the site table is built after the write. */
describe("a reported kill's capture_ms", () => {
  test("ends when the profile is written, before its site table is built", async () => {
    const { target, symbolizer: real, mainEntry } = await memstatsProgram();
    try {
      const stacks = Array.from({ length: 4 }, (_, i) => ({ address: 0x10000 + i * 0x100, size: 64, stack: [mainEntry + 1 + i], counts: [] }));
      // Slow only once the table is prepared: then only the site table asks for frames.
      let slow = false;
      const symbolizer = {
        frames: (pc: bigint) => {
          const until = performance.now() + (slow ? 20 : 0);
          while (performance.now() < until);
          return real.frames(pc);
        },
      };
      const locations = locationTableFor(target, symbolizer, 0);
      locations.prepare(stacks.map((b) => b.stack));
      slow = true;
      const out = mkdtempSync(join(dir, "capture-ms-"));
      const t0 = performance.now();
      const r = reportKill(rehearsalCapture(4242, stacks, 0), {
        target,
        symbolizer,
        outDir: out,
        lostEvents: 0,
        where: {},
        limitBytes: null,
        firstSeenMs: t0,
        locations,
      });
      const sitesMs = r.phases.steps.find(([step]) => step === "sites")![1];
      expect(r.event.profile).toStartWith(out);
      expect(sitesMs).toBeGreaterThanOrEqual(20);
      expect(r.event.capture_ms!).toBeLessThan(Math.round(performance.now() - t0 - sitesMs) + 1);
    } finally {
      target.release();
    }
  });
});
