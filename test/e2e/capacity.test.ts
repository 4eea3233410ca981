import { describe, expect, setDefaultTimeout, test } from "bun:test";
import { readFileSync } from "node:fs";
import { gunzipSync } from "node:zlib";
import { Profile } from "pprof-format";
import { buildGoProgram } from "../helpers/go.ts";
import { runOomprof, tempDir } from "../helpers/oomprof.ts";

setDefaultTimeout(600_000);

// Thousands of distinct allocation stacks, each ~23 frames deep: the walk must take
// every one, on bpftrace 0.17 (while loops) and on 0.23 (map loops) alike. The Debian 13
// pass of scripts/test (bpftrace 0.23) sets OOMPROF_CAPACITY_STACKS=60000.
const STACKS = Number(process.env.OOMPROF_CAPACITY_STACKS ?? 10_000);

describe(`a Go process with ${STACKS} distinct allocation stacks`, () => {
  test("is captured completely at its OOM kill", async () => {
    const manystacks = await buildGoProgram("manystacks");
    const r = await runOomprof(["run", "--limit", "256M", "--out", tempDir(), "--events", "-", "--", manystacks], {
      // Alive for 2 s first, as a real service would have been: the output buffer is sized
      // from the bucket count oomprof sees while the target lives.
      env: { STACKS: String(STACKS), LIVE_MS: "2000" },
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
});
