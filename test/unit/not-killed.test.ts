import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CaptureAssembler } from "../../src/capture/walk-capture.ts";
import type { CaptureSource } from "../../src/capture/probe-sessions.ts";
import { EventWriter, KillEvent } from "../../src/output/events.ts";
import { KillReporter } from "../../src/output/kill-reporter.ts";
import { stillRunning } from "../../src/process/liveness.ts";
import { parseRecord } from "../../src/stream/records.ts";
import { LineReader } from "../helpers/lines.ts";

/**
 * A victim the OOM killer picks but that does not die (stuck where a SIGKILL waits, or
 * exempt in ways the kernel allows) must be reported as such, not as a kill, nor
 * waited for forever. The kernel gives no way to make that happen on demand (a frozen
 * cgroup does not do it: mark_oom_victim() thaws the victim, measured here), so this
 * feeds the reporter the records bpftrace prints for a real mark_victim (the shape of
 * test/fixtures/leaker-go1.19-bpftrace0.17.ndjson) naming a real, live process.
 */

const dir = mkdtempSync(join(tmpdir(), "oomprof-notkilled-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function reportVictim(pid: number, pickedMsAgo: number): KillEvent {
  const assembler = new CaptureAssembler();
  assembler.add(parseRecord(`V ${pid} ${process.pid} 713400 65152 1288 0 0 sleep`));
  assembler.add(parseRecord(`T ${pid} bun`));
  const captures: CaptureSource = {
    capture: (p) => (p === pid ? { ...assembler.capture(p), firstSeenMs: performance.now() - pickedMsAgo } : undefined),
    forget: (p) => assembler.forget(p),
    targetById: () => undefined,
    exec: () => undefined,
    lostEvents: 0,
  };
  const eventsFile = join(dir, `events-${pid}-${pickedMsAgo}.ndjson`);
  const events = new EventWriter(eventsFile);
  const reporter = new KillReporter({ captures, events, outDir: dir, warn: () => {}, placement: () => ({ where: {}, limitBytes: null }) });
  expect(reporter.report(pid)).toBeDefined();
  events.close();
  return KillEvent.parse(JSON.parse(readFileSync(eventsFile, "utf8").trim()));
}

describe("a victim picked but never killed", () => {
  test("is reported as still running, with how long since it was picked and its state", async () => {
    const victim = Bun.spawn(["sleep", "30"]);
    try {
      await Bun.sleep(100);
      expect(stillRunning(victim.pid)?.state).toBe("S");
      const e = reportVictim(victim.pid, 5000);
      expect(e.event).toBe("oom_kill");
      expect(e.still_running).toBe(true);
      expect(e.profile).toBeNull();
      expect(e.complete).toBe(false);
      expect(e.reason).toMatch(/^picked by the OOM killer but not killed: still running 50\d\d ms after it was picked \(state S\)/);
    } finally {
      victim.kill("SIGKILL");
      await victim.exited;
    }
  });

  test("once it is gone, the same records read as an ordinary kill without a profile", async () => {
    const victim = Bun.spawn(["sleep", "30"]);
    victim.kill("SIGKILL");
    await victim.exited;
    expect(stillRunning(victim.pid)).toBeUndefined();
    const e = reportVictim(victim.pid, 100);
    expect(e.still_running).toBe(false);
    expect(e.reason).not.toContain("not killed");
  });

  test("a zombie is not running", async () => {
    // The background child exits, and its parent (now `sleep 5`) never reaps it.
    const parent = Bun.spawn(["sh", "-c", "sleep 0.05 & echo $!; exec sleep 5"], { stdout: "pipe" });
    try {
      const pid = Number(await new LineReader(parent.stdout as ReadableStream<Uint8Array>).waitFor((l) => /^\d+$/.test(l), 5000));
      expect(pid).toBeGreaterThan(0);
      const deadline = Date.now() + 5000;
      while (Date.now() < deadline && readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]![0] !== "Z") await Bun.sleep(10);
      expect(readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]![0]).toBe("Z");
      expect(stillRunning(pid)).toBeUndefined();
    } finally {
      parent.kill("SIGKILL");
      await parent.exited;
    }
  });
});
