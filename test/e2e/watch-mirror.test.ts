import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { copyFileSync } from "node:fs";
import { join } from "node:path";
import { buildGoProgram } from "../helpers/go.ts";
import { LineReader } from "../helpers/lines.ts";
import { oomprofArgv, tempDir } from "../helpers/oomprof.ts";
import { bucketsSent } from "../helpers/record-stream.ts";
import { oomKilledUnderWatch } from "../helpers/watch.ts";

setDefaultTimeout(180_000);

/**
 * watch learns of a new process of a binary it already walks from the probes (an A
 * record at its exec), not from a scan of /proc: the live mirror reads its stacks while
 * it lives, so at its kill the walk sends counters only. The periodic scan is pushed out
 * of the test's reach, so only the A record can have named the process.
 */
describe("oomprof watch's live mirror", () => {
  let watch: ReturnType<typeof Bun.spawn>;
  let idle: ReturnType<typeof Bun.spawn>;
  let lines: LineReader;
  let log: LineReader;
  let stream: string;
  let manystacks: string;

  beforeAll(async () => {
    const dir = tempDir();
    stream = join(dir, "stream.ndjson");
    manystacks = join(dir, "manystacks");
    copyFileSync(await buildGoProgram("manystacks"), manystacks);
    Bun.spawnSync(["chmod", "+x", manystacks]);
    // One idle copy, so the binary is walked from the start.
    idle = Bun.spawn([manystacks], { env: { ...process.env, STACKS: "10", LIVE_MS: "600000" }, stdout: "ignore", stderr: "ignore" });
    watch = Bun.spawn([...oomprofArgv(), "watch", "--verbose", "--out", dir, "--events", "-"], {
      env: { ...process.env, OOMPROF_RECORD_STREAM: stream, OOMPROF_PRUNE_CHECK_MS: "600000" },
      stdout: "pipe",
      stderr: "pipe",
    });
    lines = new LineReader(watch.stdout as ReadableStream<Uint8Array>);
    log = new LineReader(watch.stderr as ReadableStream<Uint8Array>);
    await lines.waitFor((l) => l.includes('"event":"ready"') && l.includes('"go_processes":1'), 60_000);
  });

  afterAll(() => {
    for (const p of [watch, idle]) {
      try {
        p.kill("SIGKILL");
      } catch {
        /* already gone */
      }
    }
  });

  test("a process started after watch was ready sends counters, not stacks, at its kill", async () => {
    const kill = await oomKilledUnderWatch(lines, [manystacks], 256 << 20, { STACKS: "3000", LIVE_MS: "3000" });
    expect(kill.complete).toBe(true);
    expect(kill.buckets).toBeGreaterThanOrEqual(3000);
    const sent = bucketsSent(stream, kill.pid);
    // Every bucket's counters, as C lines or (0.27+) through the walk's map.
    expect(sent.counters.size + sent.inMap).toBe(kill.buckets);
    expect(sent.stacks.size).toBeLessThan(100);
    // Under 5,000 buckets, and the only process with stacks to hold: its stacks were
    // symbolized while it lived (SMALL_PREPARED_STACKS), not at its death.
    const timeline = await log.waitFor((l) => l.includes(`capture of pid ${kill.pid}:`), 10_000);
    const ahead = /; (\d+) stacks symbolized before death/.exec(timeline);
    expect(Number(ahead?.[1])).toBeGreaterThanOrEqual(3000);
  });
});
