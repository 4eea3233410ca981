import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CaptureAssembler } from "../../src/capture/walk-capture.ts";
import { reportKill } from "../../src/output/report-kill.ts";
import { parseRecord } from "../../src/stream/records.ts";

/** How a kill is named from the records that came: the event type is what users filter on. */
const dir = mkdtempSync(join(tmpdir(), "oomprof-report-kill-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const PID = 4242;
const ctx = { symbolizer: undefined, outDir: dir, lostEvents: 0, where: {}, limitBytes: null, firstSeenMs: undefined, exe: "/srv/leaker", target: undefined };

function eventOf(...lines: string[]) {
  const a = new CaptureAssembler();
  for (const l of lines) a.add(parseRecord(l));
  return reportKill(a.capture(PID), ctx).event;
}

describe("reportKill names the kill", () => {
  test("mark_victim's record makes it an OOM kill, with its counters", () => {
    const e = eventOf(`V ${PID} ${PID} 713400 65152 1288 0 0 leaker`);
    expect([e.event, e.anon_rss_kb, e.comm]).toEqual(["oom_kill", 65152, "leaker"]);
  });

  test("the OOM killer's kprobe record alone still makes it an OOM kill (mark_victim's record lost or late)", () => {
    const e = eventOf(`K ${PID} ${PID} 1 65536`);
    expect([e.event, e.constraint, e.anon_rss_kb, e.comm]).toEqual(["oom_kill", "memcg", null, "leaker"]);
  });

  test("Go's own fatal error is a runtime_oom, and a SIGKILL with neither is a kill", () => {
    expect(eventOf(`O ${PID} 13 out of memory`).event).toBe("runtime_oom");
    expect(eventOf(`X ${PID}`).event).toBe("kill");
  });
});
