import { describe, expect, test } from "bun:test";
import { noWalkReason } from "../../src/capture/no-walk-reason.ts";
import { DISABLED_HINT, type GoTarget } from "../../src/gobinary/go-target.ts";

/** The reason a victim without a walk gets, for each path that yields no profile: exact texts. */

// Only the fields the reasons read; a GoTarget's other fields do not matter here.
const goTarget = (memProfilingDisabled: boolean) => ({ buildInfo: { goVersion: "go1.19.8" }, memProfilingDisabled }) as unknown as GoTarget;
const times = { startedMs: 1000, killedMs: 1012.4 };

describe("noWalkReason", () => {
  test("not a Go program: the reader's own words", () => {
    expect(noWalkReason({ exe: "/bin/sh", info: { why: "not a Go program (no Go build info)" }, ...times })).toBe(
      "/bin/sh: not a Go program (no Go build info)",
    );
  });

  test("a Go program whose walk was not live yet, and when it went live", () => {
    expect(noWalkReason({ exe: "/x/app", info: { target: goTarget(false) }, ...times, liveMs: 1071 })).toBe(
      "/x/app: a Go program (go1.19.8) killed 12 ms after it started, before its walk was live (its walk went live 71 ms after it started)",
    );
    expect(noWalkReason({ exe: "/x/app", info: { target: goTarget(false) }, ...times })).toBe(
      "/x/app: a Go program (go1.19.8) killed 12 ms after it started, before its walk was live (oomprof was still adding its walk)",
    );
  });

  test("a Go program built without memory profiling", () => {
    expect(noWalkReason({ exe: "/x/noprof", info: { target: goTarget(true) }, ...times })).toBe(`/x/noprof: ${DISABLED_HINT}`);
  });

  test("a binary that could not be read in time, or at all", () => {
    expect(noWalkReason({ exe: "/x/app", info: { why: "exited before it could be read" }, ...times })).toBe(
      "/x/app: killed 12 ms after it started, before oomprof could read its binary (exited before it could be read)",
    );
    expect(noWalkReason({ exe: "/x/app", info: undefined, ...times })).toBe("/x/app: killed 12 ms after it started, before oomprof had read its binary");
    expect(noWalkReason({ exe: "/x/odd", info: { why: "cannot find runtime.mbuckets" } })).toBe(
      "/x/odd: oomprof could not read its binary as a Go program (cannot find runtime.mbuckets)",
    );
  });
});
