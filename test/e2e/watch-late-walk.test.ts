import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { copyFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { buildGoProgram } from "../helpers/go.ts";
import type { LineReader } from "../helpers/lines.ts";
import { tempDir } from "../helpers/oomprof.ts";
import { oomKilledUnderWatch, startWatch, type RunningWatch } from "../helpers/watch.ts";

/**
 * A Go program OOM-killed before watch made its walk live has no profile, and its event
 * says so, with how long after its start it died. watch makes a new binary's walk live
 * within milliseconds of reading it (watch-fresh), and reading one is mapping it, so its
 * size no longer slows that down: the walk is held back here on purpose
 * (OOMPROF_NEW_BINARY_DELAY_MS), far longer than the leaker lives.
 */

let watch: RunningWatch;
let events: LineReader;
const dir = tempDir();

beforeAll(async () => {
  await buildGoProgram("leaker");
  watch = await startWatch(dir, [], { OOMPROF_NEW_BINARY_DELAY_MS: "5000" });
  events = watch.events;
}, 120_000);

afterAll(async () => {
  await watch.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe("oomprof watch, a walk that went live too late", () => {
  test("a Go program killed before its walk was live is called that, with the milliseconds", async () => {
    const late = join(dir, "late");
    copyFileSync(await buildGoProgram("leaker"), late);
    Bun.spawnSync(["chmod", "+x", late]);
    // The leaker without pauses fills 64 MiB in a few hundred ms.
    const e = await oomKilledUnderWatch(events, [late], 64 << 20, { STEP_SLEEP_US: "0", LEAK_KIB: "1024" });
    expect(e.profile).toBeNull();
    expect(e.exe).toBe(late);
    expect(e.go_version).toMatch(/^go1\./);
    console.log(`reason: ${e.reason}`);
    expect(e.reason).toMatch(
      new RegExp(
        `^${late}: a Go program \\(go1\\.[0-9.]+\\) killed \\d+ ms after it started, before its walk was live \\((its walk went live \\d+ ms after it started|oomprof was still adding its walk)\\)$`,
      ),
    );
  }, 60_000);
});
