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
});
