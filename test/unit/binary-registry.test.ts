import { beforeAll, describe, expect, test } from "bun:test";
import { statSync } from "node:fs";
import { BinaryRegistry } from "../../src/capture/binary-registry.ts";
import { discoverGoTarget, type GoTarget } from "../../src/gobinary/go-target.ts";
import { buildGoProgram } from "../helpers/go.ts";

/** The registry of Go binaries a command walks: stable ids, the walkable filter, pruning, the non-Go cache. */

let leaker: GoTarget;
let noprof: GoTarget;
beforeAll(async () => {
  leaker = await discoverGoTarget(await buildGoProgram("leaker"));
  noprof = await discoverGoTarget(await buildGoProgram("noprof"));
});

describe("BinaryRegistry", () => {
  test("adds each walkable binary once and says which were new", () => {
    const r = new BinaryRegistry((t) => !t.memProfilingDisabled);
    expect(noprof.memProfilingDisabled).toBe(true);
    expect(r.add([leaker, noprof, leaker])).toEqual([leaker]);
    expect(r.add([leaker])).toEqual([]);
    expect(r.targets).toEqual([leaker]);
    expect(r.byInode(leaker.inode)).toBe(leaker);
    expect(r.byIdOf(0)).toBe(leaker);
  });

  test("prunes a binary without processes after the delay, leaving a hole so ids stay valid", () => {
    const r = new BinaryRegistry(() => true);
    r.add([leaker, noprof]);
    // First sighting starts the clock for each.
    expect(r.prune(new Set(), 1000, 0)).toEqual([]);
    expect(r.prune(new Set([noprof.inode]), 1000, 900)).toEqual([]);
    expect(r.prune(new Set([noprof.inode]), 1000, 1500)).toEqual([leaker]);
    expect(r.table).toEqual([undefined, noprof]);
    expect(r.byIdOf(1)).toBe(noprof);
    expect(r.byInode(leaker.inode)).toBeUndefined();
  });

  test("reads a live process's executable once, and remembers a non-Go one", async () => {
    const r = new BinaryRegistry(() => true);
    const sleeper = Bun.spawn(["sleep", "5"]);
    try {
      await Bun.sleep(50);
      const { ino } = statSync(`/proc/${sleeper.pid}/exe`);
      const info = await r.inspect(sleeper.pid, ino);
      expect(info.target).toBeUndefined();
      expect(info.why).toBeTruthy();
      expect(r.knownNonGo(ino)).toBe(true);
      expect((await r.inspect(sleeper.pid, ino)).why).toBe(info.why);
      expect((await r.inspect(sleeper.pid, ino + 1)).why).toBe("exec'd again before it could be read");
    } finally {
      sleeper.kill("SIGKILL");
      await sleeper.exited;
    }
    expect((await r.inspect(sleeper.pid, 1)).why).toBe("exited before it could be read");
  });

  test("two reads of one binary at once share one; a second copy added is let go", async () => {
    const r = new BinaryRegistry(() => true);
    const p = Bun.spawn([await buildGoProgram("leaker")], { env: { ...process.env, STEP_SLEEP_US: "100000" }, stdout: "ignore" });
    try {
      await Bun.sleep(100);
      const { ino } = statSync(`/proc/${p.pid}/exe`);
      const [a, b] = await Promise.all([r.inspect(p.pid, ino), r.inspect(p.pid, ino)]);
      expect(a.target).toBeDefined();
      expect(b.target).toBe(a.target!);
      // A copy read apart (by another path) is not kept open when the first is already known.
      const copy = await discoverGoTarget(`/proc/${p.pid}/exe`);
      expect(r.add([a.target!, copy])).toEqual([a.target!]);
      expect(() => copy.readElf()).toThrow("no longer watched");
      expect(() => a.target!.readElf()).not.toThrow();
    } finally {
      p.kill("SIGKILL");
      await p.exited;
    }
  });
});
