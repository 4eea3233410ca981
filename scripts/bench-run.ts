/**
 * Benchmarks `oomprof run` end to end on test/go/leaker in a 128 MiB memory cgroup:
 * how long until the child runs, and how long from the OOM kill to the profile on disk.
 *
 *   bun scripts/bench-run.ts [--runs R] [--bin PATH] [--limit 128M] [--timeout S] [--keep]
 *
 * R defaults to $BENCH_RUNS, else 5. The oomprof under test: --bin, $OOMPROF_BIN,
 * a copy of dist/oomprof if present (.cache/bench/oomprof-<mtime>/oomprof, so a rebuild
 * of dist/ by someone else meanwhile changes nothing), else `bun src/cli/main.ts`.
 *
 * Per run, from oomprof's events:
 *   armed_ms     oomprof's own start → probes attached (armed event)
 *   capture_ms   first OOM record → profile on disk (oom_kill event)
 * and measured from outside (this script polls every ~1 ms):
 *   spawn→child  this script spawning oomprof → the leaker's first stdout line
 *                (includes loading the runtime/binary, which armed_ms does not)
 *   kill→file    the cgroup's oom_kill counter going up → the profile's mtime
 *                (mtime is the kernel's coarse clock: a few ms of granularity)
 *   kill→dead    the oom_kill counter going up → the child turning zombie or vanishing
 *                (the walk runs in the dying threads, in between)
 *   dead→event   the child turning zombie or vanishing → the oom_kill event's time
 *   event→exit   oom_kill event time → exit event time (the exit event is written
 *                after the report, so it is not the child's death time)
 * The poller shares the CPUs with the dying child and oomprof: when it stalls, it sees the
 * kill and the death in the same pass (kill→dead 0), so the external figures are
 * approximate (±15 ms on a 2-CPU machine); capture_ms is oomprof's own clock.
 */
import { mkdirSync, mkdtempSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import {
  BENCH_DIR,
  buildHostGo,
  cgroupOomKills,
  describeArgv,
  eventTimeMs,
  exitedWithin,
  within,
  fmt,
  intFlag,
  killPid,
  oomprofArgv,
  parseFlags,
  procStat,
  readEvents,
  sleep,
  stats,
  table,
  wallMs,
  type Ev,
} from "./bench-lib.ts";

const { flags } = parseFlags(process.argv.slice(2), ["keep"]);
if (flags.has("help")) {
  console.log("usage: scripts/bench-run [--runs R] [--bin PATH] [--limit SIZE] [--timeout SECONDS] [--keep]   (env: BENCH_RUNS, OOMPROF_BIN)");
  process.exit(0);
}
const runs = intFlag(flags.get("runs") ?? process.env.BENCH_RUNS, 5, "--runs");
const limit = flags.get("limit") ?? "128M";
const timeoutS = intFlag(flags.get("timeout"), 120, "--timeout");
const keep = flags.has("keep");
const oomprof = oomprofArgv(flags.get("bin"));

const leaker = buildHostGo("leaker");
mkdirSync(BENCH_DIR, { recursive: true });

interface RunResult {
  run: number;
  status: number | undefined;
  armedMs?: number;
  spawnToChildMs?: number;
  captureMs?: number | null;
  killToFileMs?: number;
  killToDeadMs?: number;
  deadToEventMs?: number;
  eventToExitMs?: number;
  totalMs?: number;
  buckets?: number;
  complete?: boolean;
  lost?: number;
  problem?: string;
}

async function oneRun(i: number): Promise<RunResult> {
  const dir = mkdtempSync(join(BENCH_DIR, "run-"));
  const out = join(dir, "out");
  const evPath = join(dir, "events.ndjson");
  const argv = ["timeout", "-k", "5", String(timeoutS), ...oomprof, "run", "--limit", limit, "--out", out, "--events", evPath, "--", leaker.path];
  if (i === 1) console.log(`command: ${describeArgv(argv)}\n`);
  const tSpawn = wallMs();
  const p = Bun.spawn(argv, { stdin: "ignore", stdout: "pipe", stderr: Bun.file(join(dir, "stderr.txt")) });

  let tChild: number | undefined;
  let tOomKill: number | undefined;
  let tDead: number | undefined;
  let done = false;

  // The leaker's stdout: its first line marks "the child is running".
  const readStdout = (async () => {
    const dec = new TextDecoder();
    let buf = "";
    for await (const chunk of p.stdout as ReadableStream<Uint8Array>) {
      buf += dec.decode(chunk);
      if (tChild === undefined && buf.includes("leaker: started")) tChild = wallMs();
    }
  })();

  // Poll the events file for the start event, then the cgroup's OOM-kill counter and the child's state.
  const poll = (async () => {
    let start: Ev | undefined;
    while (!done) {
      if (!start) {
        start = readEvents(evPath).find((e) => e.event === "start");
      } else {
        const now = wallMs();
        if (tOomKill === undefined && typeof start.cgroup === "string") {
          const n = cgroupOomKills(start.cgroup);
          if (n !== undefined && n > 0) tOomKill = now;
        }
        if (tDead === undefined) {
          const st = procStat(start.pid as number);
          if (!st || st.state === "Z" || st.state === "X") tDead = now;
        }
        if (tOomKill !== undefined && tDead !== undefined) return;
      }
      await sleep(1);
    }
  })();

  const status = (await exitedWithin(p, (timeoutS + 10) * 1000)) ?? (killPid(p.pid, "SIGKILL"), undefined);
  const tEnd = wallMs();
  done = true;
  await within(
    Promise.all([readStdout, poll]).then(() => undefined),
    2000,
    undefined,
  );

  const events = readEvents(evPath);
  const armed = events.find((e) => e.event === "armed");
  const kill = events.find((e) => e.event === "oom_kill");
  const exit = events.find((e) => e.event === "exit");
  const r: RunResult = { run: i, status, totalMs: tEnd - tSpawn };
  if (armed) r.armedMs = armed.armed_ms as number;
  if (tChild !== undefined) r.spawnToChildMs = tChild - tSpawn;
  if (kill) {
    r.captureMs = kill.capture_ms as number | null;
    r.buckets = kill.buckets as number;
    r.complete = kill.complete as boolean;
    r.lost = kill.lost_events as number;
    if (typeof kill.profile === "string") {
      const mtime = Number(statSync(kill.profile, { bigint: true }).mtimeNs) / 1e6;
      if (tOomKill !== undefined) r.killToFileMs = mtime - tOomKill;
    }
    if (tDead !== undefined && tOomKill !== undefined) r.killToDeadMs = tDead - tOomKill;
    if (tDead !== undefined) r.deadToEventMs = eventTimeMs(kill)! - tDead;
    if (exit) r.eventToExitMs = eventTimeMs(exit)! - eventTimeMs(kill)!;
  }
  const problems: string[] = [];
  if (status !== 137) problems.push(`exit status ${status ?? "timeout"}`);
  if (!kill) problems.push("no oom_kill event");
  else {
    if (!kill.complete) problems.push(`incomplete: ${kill.reason}`);
    if ((kill.lost_events as number) > 0) problems.push(`${kill.lost_events} lost events`);
    if (!kill.profile) problems.push(`no profile: ${kill.reason}`);
  }
  if (tOomKill === undefined) problems.push("cgroup oom_kill counter not seen");
  for (const w of events.filter((e) => e.event === "warning")) problems.push(`warning: ${w.message}`);
  if (problems.length) {
    r.problem = problems.join("; ");
    console.error(`run ${i}: ${r.problem} (kept ${dir})`);
  } else if (!keep) rmSync(dir, { recursive: true, force: true });
  return r;
}

console.log(`oomprof run on ${leaker.path.replace(BENCH_DIR, ".cache/bench")} (${leaker.goVersion}), --limit ${limit}, ${runs} runs`);
const results: RunResult[] = [];
for (let i = 1; i <= runs; i++) {
  results.push(await oneRun(i));
  await sleep(300);
}

const header = [
  "run",
  "status",
  "armed_ms",
  "spawn→child",
  "capture_ms",
  "kill→file",
  "kill→dead",
  "dead→event",
  "event→exit",
  "total",
  "buckets",
  "complete",
  "lost",
];
const rows = results.map((r) => [
  String(r.run),
  String(r.status ?? "timeout"),
  fmt(r.armedMs),
  fmt(r.spawnToChildMs),
  fmt(r.captureMs),
  fmt(r.killToFileMs, 1),
  fmt(r.killToDeadMs, 1),
  fmt(r.deadToEventMs, 1),
  fmt(r.eventToExitMs),
  fmt(r.totalMs),
  fmt(r.buckets),
  r.complete === undefined ? "-" : String(r.complete),
  fmt(r.lost),
]);
console.log(table(header, rows));
console.log();
console.log(
  table(
    ["measure (ms)", "median", "min", "max", "runs"],
    (
      [
        ["armed (armed_ms: oomprof start → probes attached)", results.map((r) => r.armedMs)],
        ["spawn → child running (external)", results.map((r) => r.spawnToChildMs)],
        ["kill → profile on disk (capture_ms)", results.map((r) => r.captureMs)],
        ["kill → profile mtime (external: cgroup oom_kill counter)", results.map((r) => r.killToFileMs)],
        ["kill → child dead (external: zombie or gone; the walk runs in between)", results.map((r) => r.killToDeadMs)],
        ["child dead → oom_kill event time (event time has ms resolution)", results.map((r) => r.deadToEventMs)],
        ["oom_kill event → exit event", results.map((r) => r.eventToExitMs)],
        ["oomprof wall time, whole run", results.map((r) => r.totalMs)],
      ] as Array<[string, Array<number | null | undefined>]>
    ).map(([name, xs]) => {
      const s = stats(xs);
      return [name, fmt(s.median, 1), fmt(s.min, 1), fmt(s.max, 1), String(s.n)];
    }),
  ),
);
const bad = results.filter((r) => r.problem);
if (bad.length) {
  console.log(`\n${bad.length} run(s) with problems:`);
  for (const r of bad) console.log(`  run ${r.run}: ${r.problem}`);
  process.exitCode = 1;
}

// Nothing of ours is left running; do not wait for stray handles.
process.exit(process.exitCode ?? 0);
