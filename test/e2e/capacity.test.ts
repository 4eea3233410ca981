import { describe, expect, setDefaultTimeout, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";
import { Profile } from "pprof-format";
import { buildGoProgram } from "../helpers/go.ts";
import { runOomprof, tempDir } from "../helpers/oomprof.ts";
import { bucketsSent } from "../helpers/record-stream.ts";

setDefaultTimeout(600_000);

// Thousands of distinct allocation stacks, each ~23 frames deep: the walk must take
// every one, on bpftrace 0.17 (while loops) and on 0.23 (map loops) alike: 40,000 on the
// host's 0.17; the Debian 13 pass of scripts/test (bpftrace 0.23) sets
// OOMPROF_CAPACITY_STACKS=60000.
const STACKS = Number(process.env.OOMPROF_CAPACITY_STACKS ?? 40_000);

describe(`a Go process with ${STACKS} distinct allocation stacks`, () => {
  test("is captured completely at its OOM kill", async () => {
    const manystacks = await buildGoProgram("manystacks");
    const r = await runOomprof(["run", "--limit", "256M", "--out", tempDir(), "--events", "-", "--", manystacks], {
      // Alive for 2 s first, as a real service would have been: the output buffer is sized
      // from the bucket count oomprof sees while the target lives.
      // Past 16,000 buckets bpftrace 0.17's walk needs counter probes beside it (4,000
      // buckets each per thread's firing), which oomprof adds in a background relaunch
      // once the mirror sees the list: that takes seconds on a busy 2-CPU machine.
      env: { STACKS: String(STACKS), LIVE_MS: STACKS > 16_000 ? "15000" : "2000" },
      timeoutMs: 500_000,
    });
    expect(r.status).toBe(137);
    const present = Number(/manystacks: stacks=\d+ buckets=(\d+)/.exec(r.stderr)?.[1]);
    expect(present).toBeGreaterThanOrEqual(STACKS);
    const kill = r.events.find((e) => e.event === "oom_kill");
    if (kill?.event !== "oom_kill") throw new Error(r.stderr.slice(-3000));
    expect(kill.reason).toBeNull();
    expect(kill.complete).toBe(true);
    expect(kill.buckets).toBeGreaterThanOrEqual(present);
    const profile = Profile.decode(gunzipSync(readFileSync(kill.profile!)));
    expect(profile.sample.length).toBeGreaterThanOrEqual(STACKS);
  });

  test("sends only the stacks the live mirror does not hold", async () => {
    // 3,000 buckets that live 2 s (the mirror reads them within 250 ms), then a leak:
    // only the buckets made after the mirror's last pass need their stacks sent.
    const { kill, sent } = await killWith3000Stacks({ LIVE_MS: "2000" });
    // Every bucket's counters, as C lines or (0.27+) through the walk's map.
    expect(sent.counters.size + sent.inMap).toBe(kill.buckets);
    // At most the few buckets made since the mirror's last pass (the leak's own), not 3,000.
    expect(sent.stacks.size).toBeLessThan(100);
  });

  test("a list longer than the walk's counter map (0.27+) sends the rest as C lines, and arrives whole", async () => {
    const { kill, sent } = await killWith3000Stacks({ OOMPROF_COUNTER_MAP_ENTRIES: "1000" });
    // A bpftrace with the map fills it, then prints; an older one prints every bucket.
    if (sent.inMap) expect(sent.inMap).toBe(1000);
    expect(sent.counters.size + sent.inMap).toBe(kill.buckets);
  });
});

/** `oomprof run` of manystacks with 3,000 stacks, OOM-killed: its complete kill, and what its recorded stream carried. */
async function killWith3000Stacks(env: Record<string, string>) {
  const manystacks = await buildGoProgram("manystacks");
  const dir = tempDir();
  const stream = join(dir, "stream.ndjson");
  const r = await runOomprof(["run", "--limit", "256M", "--out", dir, "--events", "-", "--", manystacks], {
    env: { STACKS: "3000", OOMPROF_RECORD_STREAM: stream, ...env },
    timeoutMs: 300_000,
  });
  expect(r.status).toBe(137);
  const kill = r.events.find((e) => e.event === "oom_kill");
  if (kill?.event !== "oom_kill") throw new Error(r.stderr.slice(-3000));
  expect(kill.complete).toBe(true);
  expect(kill.buckets).toBeGreaterThanOrEqual(3000);
  return { kill, sent: bucketsSent(stream, kill.pid) };
}
