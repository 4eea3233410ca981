import { describe, expect, setDefaultTimeout, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";
import { Profile } from "pprof-format";
import { buildGoProgram } from "../helpers/go.ts";
import { LineReader } from "../helpers/lines.ts";
import { runOomprof, tempDir } from "../helpers/oomprof.ts";

setDefaultTimeout(300_000);

/**
 * oomprof's live-at-last-GC view is documented as what the program's own runtime/pprof
 * heap profile says. A program that runs a GC, writes its own heap profile and then sleeps
 * without allocating: `oomprof snapshot`'s gc_live_space and gc_live_objects must give the
 * table its own inuse_space and inuse_objects give, row for row, by function and by line,
 * to the byte, for every toolchain in the matrix.
 */
const toolchains = (process.env.OOMPROF_GO_LIST ?? process.env.OOMPROF_GO ?? "go").split(":").filter(Boolean);

/**
 * What `go tool pprof -top` and `-top -lines` tabulate: sums by the leaf frame's function
 * (flat), by function and line, and by every function on the stack, once a sample (cum).
 */
function table(file: string, space: string, objects: string): Map<string, [number, number]> {
  const p = Profile.decode(gunzipSync(readFileSync(file)));
  const str = (i: number | bigint) => String(p.stringTable.strings[Number(i)]);
  const types = p.sampleType.map((t) => str(t.type));
  const [si, oi] = [types.indexOf(space), types.indexOf(objects)];
  if (si < 0 || oi < 0) throw new Error(`${file} has no ${space}/${objects}: ${types.join(", ")}`);
  const fns = new Map(p.function.map((f) => [Number(f.id), str(f.name)]));
  const locs = new Map(p.location.map((l) => [Number(l.id), l]));
  const rows = new Map<string, [number, number]>();
  const add = (key: string, bytes: number, count: number) => {
    const r = rows.get(key) ?? [0, 0];
    rows.set(key, [r[0] + bytes, r[1] + count]);
  };
  for (const s of p.sample) {
    const bytes = Number(s.value[si]);
    const count = Number(s.value[oi]);
    if (bytes === 0 && count === 0) continue;
    const leaf = locs.get(Number(s.locationId[0]))?.line[0];
    const fn = leaf ? fns.get(Number(leaf.functionId))! : "?";
    add(`fn ${fn}`, bytes, count);
    add(`line ${fn}:${leaf ? Number(leaf.line) : 0}`, bytes, count);
    const onStack = new Set(s.locationId.flatMap((id) => locs.get(Number(id))?.line.map((l) => fns.get(Number(l.functionId))!) ?? []));
    for (const f of onStack) add(`cum ${f}`, bytes, count);
  }
  return rows;
}

describe.each(toolchains)("a program's own heap profile, built by %s", (go) => {
  test("equals oomprof snapshot's live-at-last-GC view, by function and by line", async () => {
    const dir = tempDir();
    const own = join(dir, "own.pb.gz");
    const prog = await buildGoProgram("selfprofile", { go });
    const p = Bun.spawn([prog], { env: { ...process.env, HEAPPROF_OUT: own }, stdout: "pipe", stderr: "inherit" });
    try {
      await new LineReader(p.stdout as ReadableStream<Uint8Array>).waitFor((l) => l === "ready", 60_000);
      const r = await runOomprof(["snapshot", String(p.pid), "--out", dir, "--events", "-"]);
      const ev = r.events[0];
      if (ev?.event !== "snapshot" || !ev.profile) throw new Error(`no snapshot profile (status ${r.status}): ${r.stderr}`);
      expect(ev.complete).toBe(true);
      const theirs = table(own, "inuse_space", "inuse_objects");
      const ours = table(ev.profile, "gc_live_space", "gc_live_objects");
      expect([...theirs.keys()].filter((k) => k.includes("main.")).length).toBeGreaterThanOrEqual(6);
      // Two instantiations of one generic function: one name before Go 1.21, two since.
      expect([...theirs.keys()].filter((k) => k.startsWith("fn main.genericSite[")).length).toBeGreaterThanOrEqual(1);
      expect(Object.fromEntries([...ours].sort())).toEqual(Object.fromEntries([...theirs].sort()));
    } finally {
      p.kill();
    }
  });

  test("equals the live-at-last-GC view of its OOM kill's profile when no GC ran in between", async () => {
    const dir = tempDir();
    const own = join(dir, "own.pb.gz");
    const prog = await buildGoProgram("selfprofile", { go });
    const r = await runOomprof(["run", "--limit", "160M", "--out", dir, "--events", "-", "--", prog], { env: { HEAPPROF_OUT: own, LEAK: "1" } });
    const kill = r.events.find((e) => e.event === "oom_kill");
    if (kill?.event !== "oom_kill" || !kill.profile) throw new Error(`no oom_kill profile (status ${r.status}): ${r.stderr.slice(-2000)}`);
    expect(kill.complete).toBe(true);
    const theirs = table(own, "inuse_space", "inuse_objects");
    const ours = table(kill.profile, "gc_live_space", "gc_live_objects");
    expect(Object.fromEntries([...ours].sort())).toEqual(Object.fromEntries([...theirs].sort()));
  });
});
