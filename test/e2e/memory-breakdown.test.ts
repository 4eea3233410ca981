import { describe, expect, setDefaultTimeout, test } from "bun:test";
import { z } from "zod";
import { readFileSync } from "node:fs";
import { KillEvent, SnapshotEvent } from "../../src/output/events.ts";
import { parseMemoryComment } from "../../src/profile/memory-comment.ts";
import { decodeProfile, foldProfile } from "../../src/report/flame-data.ts";
import { buildGoProgram } from "../helpers/go.ts";
import { LineReader } from "../helpers/lines.ts";
import { runOomprof, tempDir } from "../helpers/oomprof.ts";

setDefaultTimeout(300_000);

/**
 * The `memory` breakdown (heap, stacks, runtime, outside Go) against the runtime's own
 * view and against memory put where each figure must find it.
 */
const toolchains = (process.env.OOMPROF_GO_LIST ?? process.env.OOMPROF_GO ?? "go").split(":").filter(Boolean);

/** What test/go/memstats prints of its own runtime.ReadMemStats. */
const OwnFigures = z.object({
  HeapInuse: z.number(),
  StackInuse: z.number(),
  StackSys: z.number(),
  Sys: z.number(),
  HeapReleased: z.number(),
});

/**
 * Between the program's ReadMemStats and oomprof's read the program only prints its
 * figures (a path warmed up beforehand, so no stack growth) and sleeps, after
 * debug.FreeOSMemory left the scavenger nothing to release: at most a few small
 * allocations, each of which may take a fresh 8 KiB span (and its span struct). The
 * figures are 13 to 50 MiB, so a wrong field or a missed heapStats generation is off by
 * far more.
 */
const HEAP_SLACK = 256 << 10;
const STACK_SLACK = 64 << 10;
const OTHER_SLACK = 512 << 10;

describe.each(toolchains)("snapshot's memory figures, built by %s", (go) => {
  test("equal the program's own runtime.ReadMemStats", async () => {
    const dir = tempDir();
    const prog = await buildGoProgram("memstats", { go });
    const p = Bun.spawn([prog], { stdout: "pipe", stderr: "inherit" });
    try {
      const lines = new LineReader(p.stdout as ReadableStream<Uint8Array>);
      const own = OwnFigures.parse(JSON.parse(await lines.waitFor((l) => l.startsWith("{"), 60_000)));
      await lines.waitFor((l) => l === "ready", 10_000);
      const r = await runOomprof(["snapshot", String(p.pid), "--out", dir, "--events", "-"]);
      const ev = SnapshotEvent.parse(r.events[0]);
      const m = ev.memory;
      const runtimeOther = own.Sys - own.HeapReleased - own.HeapInuse - own.StackSys;
      expect(Math.abs(m.heap_inuse_bytes! - own.HeapInuse)).toBeLessThanOrEqual(HEAP_SLACK);
      expect(Math.abs(m.stacks_bytes! - own.StackSys)).toBeLessThanOrEqual(STACK_SLACK);
      expect(Math.abs(m.runtime_other_bytes! - runtimeOther)).toBeLessThanOrEqual(OTHER_SLACK);
      // 100 goroutines parked on ~100 KiB stacks, and a 48 MiB heap the program wrote to.
      expect(own.StackInuse).toBeGreaterThan(10 << 20);
      expect(own.HeapInuse).toBeGreaterThan(48 << 20);
      // Outside Go: the binary's own pages and little else; a lower bound, so maybe below 0,
      // but not by much once the heap is written.
      expect(Math.abs(m.not_go_bytes!)).toBeLessThan(32 << 20);
    } finally {
      p.kill();
    }
  });
});

async function oomKill(mode: string): Promise<{ kill: KillEvent; stderr: string }> {
  const prog = await buildGoProgram("memstats");
  const r = await runOomprof(["run", "--limit", "128M", "--out", tempDir(), "--events", "-", "--", prog], { env: { MODE: mode } });
  const k = r.events.find((e) => e.event === "oom_kill");
  if (!k) throw new Error(`no oom_kill event; status ${r.status}; stderr:\n${r.stderr.slice(-3000)}`);
  return { kill: KillEvent.parse(k), stderr: r.stderr };
}

const rssOf = (k: KillEvent) => (k.anon_rss_kb! + k.file_rss_kb! + k.shmem_rss_kb!) * 1024;

describe("oomprof run: where the memory went at an OOM kill in a 128M cgroup", () => {
  test("a goroutine leak: stacks are the largest part, and the summary says so", async () => {
    const { kill, stderr } = await oomKill("stacks");
    const m = kill.memory;
    const parts = [m.heap_inuse_bytes!, m.stacks_bytes!, m.runtime_other_bytes!, m.not_go_bytes!];
    expect(Math.max(...parts)).toBe(m.stacks_bytes!);
    expect(m.stacks_bytes!).toBeGreaterThan(rssOf(kill) / 2);
    // The four add up to RSS at death.
    expect(parts.reduce((a, b) => a + b)).toBe(rssOf(kill));
    // The profile carries the same figures, for `oomprof report`.
    const comments = foldProfile(decodeProfile(readFileSync(kill.profile!), kill.profile!)).comments;
    expect(parseMemoryComment(comments)).toEqual({ rss_bytes: rssOf(kill), ...m });
    expect(stderr).toMatch(/RSS [\d.]+ MiB = Go heap [\d.]+ \+ stacks [\d.]+ \+ runtime [\d.]+ (\+ outside Go|- not resident) [\d.]+ \(largest: stacks\)/);
  });

  test("anonymous memory mapped outside the Go heap: not_go_bytes carries it", async () => {
    const { kill, stderr } = await oomKill("mmap");
    const m = kill.memory;
    expect(m.not_go_bytes!).toBeGreaterThan(rssOf(kill) * 0.6);
    expect(m.heap_inuse_bytes!).toBeLessThan(16 << 20);
    expect(stderr).toContain("(largest: outside Go)");
  });
});
