/**
 * What oomprof costs the programs it watches, and what it costs to keep running.
 *
 *   bun scripts/bench-overhead.ts [--rounds K] [--idle-seconds S] [--idle-reps R] [--procs P]
 *       [--bin PATH] [--skip-work] [--skip-idle]
 *
 * 1. Work: test/go/overhead (64 goroutines allocating short- and long-lived objects,
 *    maps, slices, and running call-free loops that only asynchronous preemption, i.e.
 *    SIGURG, can stop; ~4 GB allocated, ~250 GCs, ~1,800 SIGURGs) times a fixed amount of
 *    work itself. Each round runs it plain, under `oomprof run --` (no limit), and under a
 *    background `oomprof watch` started (and waited for) just before and stopped just
 *    after; the order rotates every round. Prints the median time per mode and the
 *    ratios run/plain and watch/plain (of the medians, and the median of the per-round
 *    ratios with their range).
 *    One idle copy of the program (`overhead sleep`) runs throughout, so its binary is
 *    already known when watch starts: the work is timed against watch's steady state,
 *    not against the rebuild of bpftrace that a never-seen Go binary triggers.
 * 2. Idle watch: startup time (spawn → ready event, and ready's armed_ms), then CPU (% of
 *    one core, from utime+stime in /proc/PID/stat of oomprof and its bpftrace) over S
 *    seconds (default 20) of an idle host, and RSS (VmRSS), R times (default 3); first
 *    with the few Go processes there are, then with P (default 200) idle copies running.
 *
 * K defaults to $BENCH_ROUNDS, else 7. oomprof: --bin, $OOMPROF_BIN, dist/oomprof, else bun.
 */
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { join } from "node:path";
import {
  BENCH_DIR,
  CLK_TCK,
  buildHostGo,
  describeArgv,
  exitedWithin,
  fmt,
  fmtStats,
  intFlag,
  killPid,
  median,
  oomprofArgv,
  parseFlags,
  processTree,
  readEvents,
  rssKiB,
  sleep,
  table,
  wallMs,
  type Ev,
} from "./bench-lib.ts";

const { flags } = parseFlags(process.argv.slice(2), ["skip-work", "skip-idle", "keep"]);
if (flags.has("help")) {
  console.log("usage: scripts/bench-overhead [--rounds K] [--idle-seconds S] [--idle-reps R] [--procs P] [--bin PATH] [--skip-work] [--skip-idle] [--keep]");
  process.exit(0);
}
const rounds = intFlag(flags.get("rounds") ?? process.env.BENCH_ROUNDS, 7, "--rounds");
const idleSeconds = intFlag(flags.get("idle-seconds"), 20, "--idle-seconds");
const idleReps = intFlag(flags.get("idle-reps"), 3, "--idle-reps");
const procs = intFlag(flags.get("procs"), 200, "--procs");
const keep = flags.has("keep");
const oomprof = oomprofArgv(flags.get("bin"));
const prog = buildHostGo("overhead");
mkdirSync(BENCH_DIR, { recursive: true });
const scratch = mkdtempSync(join(BENCH_DIR, "overhead-"));
const problems: string[] = [];
const notes: string[] = [];

/** Idle Go processes we started: `timeout` wrappers (killing one forwards SIGTERM). */
const sleepers: Array<ReturnType<typeof Bun.spawn>> = [];
function startSleeper(): void {
  sleepers.push(Bun.spawn(["timeout", "-k", "5", "7200", prog.path, "sleep"], { stdin: "ignore", stdout: "ignore", stderr: "ignore" }));
}
async function stopSleepers(n = sleepers.length): Promise<void> {
  const gone = sleepers.splice(sleepers.length - n, n);
  for (const s of gone) killPid(s.pid, "SIGTERM");
  await Promise.all(gone.map((s) => exitedWithin(s, 10_000)));
  for (const s of gone) if (s.exitCode === null) killPid(s.pid, "SIGKILL");
}
/** Go processes of ours that are up (the child of each timeout wrapper). */
function sleepersRunning(): number {
  let n = 0;
  for (const s of sleepers) if (processTree(s.pid).some((p) => p.comm === "overhead")) n++;
  return n;
}

interface WorkResult {
  elapsedNs: number;
  numGc: number;
  memprofRate: number;
}

function parseWork(stdout: string, what: string): WorkResult | undefined {
  const line = stdout.split("\n").find((l) => l.startsWith("{") && l.includes('"elapsed_ns"'));
  if (!line) {
    problems.push(`${what}: no JSON line from the work program (stdout: ${JSON.stringify(stdout.slice(0, 300))})`);
    return undefined;
  }
  const j = JSON.parse(line) as { elapsed_ns: number; num_gc: number; memprof_rate: number };
  if (j.memprof_rate === 0) problems.push(`${what}: MemProfileRate is 0 (memory profiling not linked in)`);
  return { elapsedNs: j.elapsed_ns, numGc: j.num_gc, memprofRate: j.memprof_rate };
}

async function runCmd(argv: string[], timeoutS: number, what: string): Promise<{ status: number | undefined; stdout: string; stderrPath: string }> {
  const stderrPath = join(scratch, `${what.replace(/\W+/g, "_")}.stderr`);
  const p = Bun.spawn(["timeout", "-k", "5", String(timeoutS), ...argv], { stdin: "ignore", stdout: "pipe", stderr: Bun.file(stderrPath) });
  const stdoutP = new Response(p.stdout as ReadableStream).text();
  const status = (await exitedWithin(p, (timeoutS + 10) * 1000)) ?? (killPid(p.pid, "SIGKILL"), undefined);
  const stdout = await Promise.race([stdoutP, sleep(2000).then(() => "")]);
  if (status !== 0) problems.push(`${what}: exit status ${status ?? "timeout"} (stderr in ${stderrPath})`);
  return { status, stdout, stderrPath };
}

interface Watch {
  proc: ReturnType<typeof Bun.spawn>;
  evPath: string;
  spawnedAt: number;
  /** spawn → ready event seen (polled every 5 ms). */
  readyAfterMs?: number;
  ready?: Ev;
}

async function startWatch(tag: string): Promise<Watch> {
  const dir = mkdtempSync(join(scratch, `watch-${tag}-`));
  const evPath = join(dir, "events.ndjson");
  const spawnedAt = wallMs();
  const proc = Bun.spawn(["timeout", "-k", "5", "900", ...oomprof, "watch", "--quiet", "--out", join(dir, "out"), "--events", evPath], {
    stdin: "ignore",
    stdout: "ignore",
    stderr: Bun.file(join(dir, "stderr.txt")),
  });
  const w: Watch = { proc, evPath, spawnedAt };
  const deadline = spawnedAt + 120_000;
  while (wallMs() < deadline && proc.exitCode === null) {
    const ready = readEvents(evPath).find((e) => e.event === "ready");
    if (ready) {
      w.readyAfterMs = wallMs() - spawnedAt;
      w.ready = ready;
      return w;
    }
    await sleep(5);
  }
  problems.push(`watch ${tag}: no ready event (exit ${proc.exitCode}; see ${dir}/stderr.txt)`);
  return w;
}

/**
 * Stops a watch and checks its events. Kills and warnings about our own program are
 * problems; others come from whatever else runs on this shared host, and are counted.
 */
async function stopWatch(w: Watch, tag: string): Promise<{ foreign: number }> {
  killPid(w.proc.pid, "SIGTERM"); // timeout forwards it to oomprof
  const status = await exitedWithin(w.proc, 15_000);
  if (status === undefined) {
    problems.push(`watch ${tag}: did not stop within 15 s of SIGTERM; killed`);
    killPid(w.proc.pid, "SIGKILL");
    await exitedWithin(w.proc, 5000);
  } else if (status !== 0) problems.push(`watch ${tag}: exit status ${status} after SIGTERM`);
  let foreign = 0;
  for (const e of readEvents(w.evPath)) {
    const ours = e.exe === prog.path || (typeof e.message === "string" && e.message.includes(prog.path));
    if (e.event === "oom_kill" || e.event === "kill") {
      if (ours) problems.push(`watch ${tag}: unexpected ${e.event} event for our pid ${e.pid} (${e.comm}): ${e.reason}`);
      else foreign++;
    }
    if (e.event === "warning") {
      if (ours || /bpftrace|restart|could not/i.test(String(e.message))) problems.push(`watch ${tag}: warning event: ${e.message}`);
      else foreign++;
    }
  }
  if (foreign) notes.push(`watch ${tag}: ${foreign} kill/warning event(s) about other processes on the host (not ours: the host was not idle)`);
  return { foreign };
}

/** oomprof's processes under a timeout wrapper: everything but the wrapper and our Go programs. */
function oomprofTree(rootPid: number): ReturnType<typeof processTree> {
  return processTree(rootPid).filter((p) => p.pid !== rootPid && p.comm !== "overhead");
}

/**
 * CPU ticks of oomprof and everything it runs: each live process's own time plus what
 * it has reaped (a bpftrace replaced by a rebuild moves into oomprof's cutime/cstime),
 * so every tick is counted once however processes come and go.
 */
function treeTicks(rootPid: number): number {
  return oomprofTree(rootPid).reduce((s, p) => s + p.cpuTicks + p.childTicks, 0);
}

function treeRss(rootPid: number): { oomprofKiB: number; bpftraceKiB: number; otherKiB: number } {
  const r = { oomprofKiB: 0, bpftraceKiB: 0, otherKiB: 0 };
  for (const p of oomprofTree(rootPid)) {
    const kib = rssKiB(p.pid);
    if (p.comm === "bpftrace") r.bpftraceKiB += kib;
    else if (p.comm === "oomprof" || p.comm === "bun") r.oomprofKiB += kib;
    else r.otherKiB += kib;
  }
  return r;
}

/** Samples the tree every 250 ms; stop() tells how many distinct bpftrace processes ran. */
function trackBpftrace(rootPid: number): { stop(): number } {
  const pids = new Set<number>();
  const sample = () => {
    for (const p of oomprofTree(rootPid)) if (p.comm === "bpftrace") pids.add(p.pid);
  };
  sample();
  const timer = setInterval(sample, 250);
  return {
    stop() {
      clearInterval(timer);
      sample();
      return pids.size;
    },
  };
}

// --- 1. work ---------------------------------------------------------------------------

type Mode = "plain" | "run" | "watch";
const MODES: Mode[] = ["plain", "run", "watch"];
const times: Record<Mode, number[]> = { plain: [], run: [], watch: [] };
const gcs: Record<Mode, number[]> = { plain: [], run: [], watch: [] };
const watchCpuMs: number[] = [];
const runArmed: number[] = [];
const perRound: Array<Partial<Record<Mode, number>>> = [];

async function work(mode: Mode, round: number): Promise<number | undefined> {
  const what = `round ${round} ${mode}`;
  if (mode === "plain") {
    const r = parseWork((await runCmd([prog.path, "work"], 300, what)).stdout, what);
    if (r) gcs.plain.push(r.numGc);
    return r?.elapsedNs;
  }
  if (mode === "run") {
    const ev = join(scratch, `run-${round}.ndjson`);
    const res = await runCmd([...oomprof, "run", "--quiet", "--out", join(scratch, "out"), "--events", ev, "--", prog.path, "work"], 300, what);
    const events = readEvents(ev);
    const armed = events.find((e) => e.event === "armed");
    if (armed) runArmed.push(armed.armed_ms as number);
    for (const e of events) {
      if (e.event === "oom_kill" || e.event === "kill") problems.push(`${what}: unexpected ${e.event} event (${e.comm}, reason ${e.reason})`);
      if (e.event === "warning") problems.push(`${what}: warning event: ${e.message}`);
    }
    const r = parseWork(res.stdout, what);
    if (r) gcs.run.push(r.numGc);
    return r?.elapsedNs;
  }
  const w = await startWatch(`round${round}`);
  await sleep(1000);
  const ticks0 = treeTicks(w.proc.pid);
  const seen = trackBpftrace(w.proc.pid);
  const res = await runCmd([prog.path, "work"], 300, what);
  const ticks1 = treeTicks(w.proc.pid);
  const sessions = seen.stop();
  if (sessions > 1) notes.push(`${what}: watch ran ${sessions} bpftrace processes during the work (a rebuild: a new Go binary appeared on the host)`);
  watchCpuMs.push(((ticks1 - ticks0) * 1000) / CLK_TCK);
  await stopWatch(w, `round ${round}`);
  const r = parseWork(res.stdout, what);
  if (r) gcs.watch.push(r.numGc);
  return r?.elapsedNs;
}

const out: string[] = [];
try {
  startSleeper();
  await sleep(500);

  if (!flags.has("skip-work")) {
    console.log(`work: ${describeArgv([prog.path])} work (${prog.goVersion}); oomprof: ${describeArgv(oomprof)}; ${rounds} rounds`);
    console.log(`  plain: timeout -k 5 300 ${describeArgv([prog.path])} work`);
    console.log(`  run:   timeout -k 5 300 ${describeArgv(oomprof)} run --quiet --out DIR --events FILE -- ${describeArgv([prog.path])} work`);
    console.log(`  watch: timeout -k 5 900 ${describeArgv(oomprof)} watch --quiet --out DIR --events FILE &  (wait for ready, +1 s), then the plain command, then SIGTERM`);
    for (let round = 1; round <= rounds; round++) {
      const order = MODES.map((_, i) => MODES[(i + round - 1) % MODES.length]!);
      const row: Partial<Record<Mode, number>> = {};
      for (const mode of order) {
        const ns = await work(mode, round);
        if (ns !== undefined) {
          row[mode] = ns / 1e6;
          times[mode].push(ns / 1e6);
        }
        await sleep(500);
      }
      perRound.push(row);
      console.log(`  round ${round} (${order.join(", ")}): plain ${fmt(row.plain)} ms, run ${fmt(row.run)} ms, watch ${fmt(row.watch)} ms`);
    }
    const ratio = (m: Mode) => perRound.map((r) => (r[m] !== undefined && r.plain !== undefined ? r[m]! / r.plain : undefined));
    const t1 = table(
      ["mode", "work ms: median [min–max]", "n", "GCs (median)", "ratio to plain (medians)", "per-round ratio: median [min–max]"],
      MODES.map((m) => [
        m,
        fmtStats(times[m]),
        String(times[m].length),
        fmt(median(gcs[m])),
        m === "plain" ? "1.000" : fmt(median(times[m]) / median(times.plain), 3),
        m === "plain" ? "-" : fmtStats(ratio(m), 3),
      ]),
    );
    out.push(
      `== work: ${prog.goVersion}, 64 goroutines, ${rounds} rounds, order rotated each round\n${t1}\n` +
        `oomprof run's armed_ms (not part of the work time): ${fmtStats(runArmed)}\n` +
        `watch's CPU (oomprof + bpftrace) during one work run: ${fmtStats(watchCpuMs)} ms`,
    );
    console.log(`\n${out[out.length - 1]}\n`);
  }

  if (!flags.has("skip-idle")) {
    const idle = async (label: string) => {
      const rows: Array<{ readyMs?: number; armedMs?: number; goProcs?: number; cpuPct: number; rss: ReturnType<typeof treeRss>; sessions: number; foreign: number }> = [];
      for (let rep = 1; rep <= idleReps; rep++) {
        const w = await startWatch(`${label}-${rep}`);
        const rssAtReady = treeRss(w.proc.pid);
        await sleep(3000);
        const t0 = wallMs();
        const k0 = treeTicks(w.proc.pid);
        const seen = trackBpftrace(w.proc.pid);
        await sleep(idleSeconds * 1000);
        const k1 = treeTicks(w.proc.pid);
        const sessions = seen.stop();
        const cpuPct = (((k1 - k0) / CLK_TCK) * 1000 * 100) / (wallMs() - t0);
        const rss = treeRss(w.proc.pid);
        const { foreign } = await stopWatch(w, `${label} ${rep}`);
        const r = { readyMs: w.readyAfterMs, armedMs: w.ready?.armed_ms as number | undefined, goProcs: w.ready?.go_processes as number | undefined, cpuPct, rss, sessions, foreign };
        rows.push(r);
        console.log(
          `  ${label} rep ${rep}: spawn→ready ${fmt(r.readyMs)} ms, armed_ms ${fmt(r.armedMs)}, go_processes ${r.goProcs ?? "-"}, idle CPU ${fmt(cpuPct, 2)}% of a core, ` +
            `RSS oomprof ${fmt(rss.oomprofKiB / 1024, 1)} MiB + bpftrace ${fmt(rss.bpftraceKiB / 1024, 1)} MiB (at ready: ${fmt(rssAtReady.oomprofKiB / 1024, 1)} + ${fmt(rssAtReady.bpftraceKiB / 1024, 1)}), ` +
            `bpftrace processes in the window ${sessions}, events about other processes ${foreign}`,
        );
        await sleep(500);
      }
      return [
        label,
        fmtStats(rows.map((r) => r.goProcs)),
        fmtStats(rows.map((r) => r.readyMs)),
        fmtStats(rows.map((r) => r.armedMs)),
        fmtStats(rows.map((r) => r.cpuPct), 2),
        fmtStats(rows.map((r) => r.rss.oomprofKiB / 1024), 1),
        fmtStats(rows.map((r) => r.rss.bpftraceKiB / 1024), 1),
        fmtStats(rows.map((r) => (r.rss.oomprofKiB + r.rss.bpftraceKiB + r.rss.otherKiB) / 1024), 1),
        rows.map((r) => `${r.sessions}`).join("/"),
      ];
    };
    console.log(`idle watch: ${idleReps} reps, CPU over ${idleSeconds} s after ready + 3 s`);
    const rows = [await idle("few Go processes")];
    for (let i = sleepers.length; i < procs; i++) startSleeper();
    const deadline = wallMs() + 60_000;
    while (sleepersRunning() < procs && wallMs() < deadline) await sleep(200);
    const up = sleepersRunning();
    if (up < procs) problems.push(`only ${up} of ${procs} idle Go processes came up`);
    await sleep(1000);
    rows.push(await idle(`${up} idle Go processes`));
    await stopSleepers();
    const t2 = table(["host", "go_processes", "spawn→ready ms", "armed_ms", "idle CPU % of a core", "RSS oomprof MiB", "RSS bpftrace MiB", "RSS total MiB", "bpftraces seen"], rows);
    out.push(`== idle oomprof watch (median [min–max] of ${idleReps}; CPU over ${idleSeconds} s; ${prog.goVersion} idle copies of one binary)\n${t2}`);
  }
} finally {
  await stopSleepers();
}

console.log(`\n${out.join("\n\n")}`);
if (notes.length) console.log(`\nnotes (other activity on the host during the measurements):\n${notes.map((n) => `  ${n}`).join("\n")}`);
if (problems.length) {
  console.log(`\nproblems:\n${problems.map((p) => `  ${p}`).join("\n")}`);
  process.exitCode = 1;
} else if (!keep) rmSync(scratch, { recursive: true, force: true });
