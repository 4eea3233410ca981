import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { checkTracepoints, type HostView } from "../../src/host/checks.ts";
import { fakeHostView } from "../helpers/host-view.ts";
import { formatFields, markVictimHasCounters } from "../../src/host/tracepoint-format.ts";
import { parseBpftraceVersion, type BpftraceHost } from "../../src/probes/bpftrace-host.ts";
import { generateScript } from "../../src/probes/generate.ts";
import { CaptureAssembler } from "../../src/capture/walk-capture.ts";
import { parseRecord } from "../../src/stream/records.ts";

/**
 * oom:mark_victim's format file decides the probe. Recorded: this VM's 6.18 (pid, comm and
 * the RSS counters), and the format every kernel had before the 2024 change (pid alone, as
 * TRACE_EVENT(mark_victim) declared it up to Linux 6.7).
 */
const FIXTURES = resolve(import.meta.dir, "../fixtures/tracepoints");
const FULL = readFileSync(`${FIXTURES}/mark_victim-6.18.format`, "utf8");
const PID_ONLY = readFileSync(`${FIXTURES}/mark_victim-pid-only.format`, "utf8");

const host = (markVictimCounters: boolean): BpftraceHost => ({
  path: "bpftrace",
  version: parseBpftraceVersion("bpftrace v0.17.0"),
  hasOomKillProcessKprobe: false,
  exitKeepsMm: true,
  markVictimCounters,
});

function fakeHost(format: string): HostView {
  return fakeHostView({
    read: (p) => (p.endsWith("oom/mark_victim/format") ? format : undefined),
    stat: (p) => (p.startsWith("/sys/kernel/tracing/events") ? "present" : "missing"),
    kernelRelease: "6.1.0-1-amd64",
  });
}

describe("oom:mark_victim with and without its counters", () => {
  test("the format file's fields", () => {
    expect([...formatFields(PID_ONLY)]).toEqual(["common_type", "common_flags", "common_preempt_count", "common_pid", "pid"]);
    expect(formatFields(FULL)).toContain("anon_rss");
    expect(markVictimHasCounters(FULL)).toBe(true);
    expect(markVictimHasCounters(PID_ONLY)).toBe(false);
  });

  test("a pid-only kernel gets the probe that reads pid alone; the victim's own SIGKILL probe is the same", () => {
    const full = generateScript({ host: host(true), targets: [] }).text;
    const pidOnly = generateScript({ host: host(false), targets: [] }).text;
    expect(full).toContain("args->anon_rss");
    expect(pidOnly).not.toMatch(/args->(comm|total_vm|anon_rss|file_rss|shmem_rss|oom_score_adj)/);
    expect(pidOnly).toContain('printf("U %d %d\\n", args->pid, pid);');
    const sigkill = (s: string) => s.slice(s.indexOf("tracepoint:signal:signal_deliver"));
    expect(sigkill(pidOnly)).toBe(sigkill(full));
  });

  test("a U record is a victim whose counters are unknown (null), not zero", () => {
    const a = new CaptureAssembler();
    a.add(parseRecord("U 4242 4243"));
    expect(a.capture(4242).victim).toMatchObject({ triggerPid: 4243, anonRssKb: null, comm: null });
  });

  test("doctor: pid-only is a warning, not a failure", () => {
    expect(checkTracepoints(fakeHost(FULL)).status).toBe("ok");
    const r = checkTracepoints(fakeHost(PID_ONLY));
    expect(r.status).toBe("warn");
    expect(r.found).toContain("only pid");
  });
});
