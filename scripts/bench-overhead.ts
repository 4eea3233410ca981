/**
 * What oomprof costs the programs it watches, and what it costs to keep running.
 *
 *   bun scripts/bench-overhead.ts [--rounds K] [--idle-seconds S] [--idle-settle S] [--idle-reps R] [--procs P]
 *       [--distinct D] [--idle-retries N] [--bin PATH] [--skip-work] [--skip-idle] [--keep]
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
 *    one core, from utime+stime(+cutime+cstime) in /proc/PID/stat of oomprof and its
 *    bpftrace) over S seconds (default 20), starting --idle-settle seconds (default 3)
 *    after ready, and RSS (VmRSS), R times (default 3): with the few Go processes there
 *    are, with P (default 200) idle copies of one binary, and with --distinct D, D idle programs that are each a binary of their own (watch attaches
 *    one walk per binary, not per process). A rep during which watch restarted bpftrace
 *    (another Go binary appeared on this shared host), reported other processes' kills,
 *    or others used > 0.15 cores is noisy: shown but not counted, and retried
 *    (--idle-retries, default 4 extra attempts).
 *
 * K defaults to $BENCH_ROUNDS, else 7. oomprof: --bin, $OOMPROF_BIN, a copy of dist/oomprof
 * (.cache/bench/oomprof-<mtime>/oomprof, so a rebuild meanwhile changes nothing), else bun.
 * A work round is marked noisy when others' load exceeded 0.15 cores during any of its
 * runs or watch restarted bpftrace; the ratios are also given over quiet rounds only.
 */
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import {
  BENCH_DIR,
  CLK_TCK,
  buildHostGo,
  describeArgv,
  exitedWithin,
  within,
  fmt,
  fmtStats,
  intFlag,
  killPid,
  median,
  oomprofArgv,
  parseFlags,
  processTree,
  readEvents,
  pssKiB,
  rssKiB,
  sleep,
  table,
  wallMs,
  type Ev,
} from "./bench-lib.ts";

const { flags } = parseFlags(process.argv.slice(2), ["skip-work", "skip-idle", "keep"]);
if (flags.has("help")) {
  console.log(
    "usage: scripts/bench-overhead [--rounds K] [--idle-seconds S] [--idle-settle S] [--idle-reps R] [--procs P] [--distinct D] [--idle-retries N] [--bin PATH] [--skip-work] [--skip-idle] [--keep]",
  );
  process.exit(0);
}
const rounds = intFlag(flags.get("rounds") ?? process.env.BENCH_ROUNDS, 7, "--rounds");
const idleSeconds = intFlag(flags.get("idle-seconds"), 20, "--idle-seconds");
/** How long after ready the CPU window starts: start-up's after-effects (a GC, say) fall before it. */
const idleSettle = intFlag(flags.get("idle-settle"), 3, "--idle-settle");
const idleReps = intFlag(flags.get("idle-reps"), 3, "--idle-reps");
const idleRetries = flags.has("idle-retries") ? Number(flags.get("idle-retries")) : 4;
const procs = intFlag(flags.get("procs"), 200, "--procs");
const distinct = flags.has("distinct") ? intFlag(flags.get("distinct"), 10, "--distinct") : 0;
const keep = flags.has("keep");
const oomprof = oomprofArgv(flags.get("bin"));
const prog = buildHostGo("overhead");
mkdirSync(BENCH_DIR, { recursive: true });
const scratch = mkdtempSync(join(BENCH_DIR, "overhead-"));
const problems: string[] = [];
const notes: string[] = [];

/** Idle Go processes we started: `timeout` wrappers (killing one forwards SIGTERM). */
const sleepers: Array<ReturnType<typeof Bun.spawn>> = [];
function startSleeper(path = prog.path): void {
  sleepers.push(Bun.spawn(["timeout", "-k", "5", "7200", path, "sleep"], { stdin: "ignore", stdout: "ignore", stderr: "ignore" }));
}
/** D copies of the program, each its own file (inode), so watch sees D Go binaries. Named overhead, in NN/ directories. */
function distinctCopies(d: number): string[] {
  const base = join(BENCH_DIR, "host", "distinct");
  rmSync(base, { recursive: true, force: true });
  const out: string[] = [];
  for (let i = 0; i < d; i++) {
    const dir = join(base, String(i).padStart(3, "0"));
    mkdirSync(dir, { recursive: true });
    copyFileSync(prog.path, join(dir, "overhead"));
    chmodSync(join(dir, "overhead"), 0o755);
    out.push(join(dir, "overhead"));
  }
  return out;
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

interface CmdResult {
  status: number | undefined;
  stdout: string;
  stderrPath: string;
  wallMs: number;
  /** CPU of the command and everything it ran (rusage from wait4), ms. */
  cpuMs: number;
  /** Busy CPU of the whole host over the same interval (/proc/stat), ms. */
  hostBusyMs: number;
}

async function runCmd(argv: string[], timeoutS: number, what: string): Promise<CmdResult> {
  const stderrPath = join(scratch, `${what.replace(/\W+/g, "_")}.stderr`);
  const t0 = wallMs();
  const busy0 = hostBusyMs();
  const p = Bun.spawn(["timeout", "-k", "5", String(timeoutS), ...argv], { stdin: "ignore", stdout: "pipe", stderr: Bun.file(stderrPath) });
  const stdoutP = new Response(p.stdout as ReadableStream).text();
  const status = (await exitedWithin(p, (timeoutS + 10) * 1000)) ?? (killPid(p.pid, "SIGKILL"), undefined);
  const hostBusy = hostBusyMs() - busy0;
  const elapsed = wallMs() - t0;
  const stdout = await within(stdoutP, 2000, "");
  if (status !== 0) problems.push(`${what}: exit status ${status ?? "timeout"} (stderr in ${stderrPath})`);
  const cpu = p.resourceUsage()?.cpuTime.total;
  return { status, stdout, stderrPath, wallMs: elapsed, cpuMs: cpu === undefined ? NaN : Number(cpu) / 1000, hostBusyMs: hostBusy };
}

/** Busy CPU time of the host since boot (all CPUs, everything but idle and iowait), ms. */
function hostBusyMs(): number {
  const f = readFileSync("/proc/stat", "utf8").split("\n")[0]!.trim().split(/\s+/).slice(1).map(Number);
  const total = f.slice(0, 8).reduce((a, b) => a + b, 0);
  return ((total - f[3]! - f[4]!) * 1000) / CLK_TCK;
}

/**
 * Others' load while we measured: host busy CPU not ours, as cores. Above NOISY_CORES
 * the round is marked noisy (the machine is shared).
 */
const NOISY_CORES = 0.15;
function othersCores(r: CmdResult, oursExtraMs = 0): number {
  return Math.max(0, r.hostBusyMs - r.cpuMs - oursExtraMs) / r.wallMs;
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

function treeRss(rootPid: number): { oomprofKiB: number; bpftraceKiB: number; otherKiB: number; pssKiB: number } {
  const r = { oomprofKiB: 0, bpftraceKiB: 0, otherKiB: 0, pssKiB: 0 };
  for (const p of oomprofTree(rootPid)) {
    const kib = rssKiB(p.pid);
    if (p.comm === "bpftrace" || p.comm === "oomprof" || p.comm === "bun") r.pssKiB += pssKiB(p.pid);
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
/** CPU of each timed command and all it ran (rusage), ms: the work itself, plus oomprof in run mode. */
const cmdCpuMs: Record<Mode, number[]> = { plain: [], run: [], watch: [] };
const runArmed: number[] = [];
const perRound: Array<Partial<Record<Mode, number>> & { noisy: string[] }> = [];

/** Work time in ms, and whether something else (load, a watch rebuild) disturbed it. */
async function work(mode: Mode, round: number): Promise<{ ms?: number; noisy: string[] }> {
  const what = `round ${round} ${mode}`;
  const noisy: string[] = [];
  if (mode === "plain") {
    const res = await runCmd([prog.path, "work"], 300, what);
    cmdCpuMs.plain.push(res.cpuMs);
    const others = othersCores(res);
    if (others > NOISY_CORES) noisy.push(`${mode}: others used ${fmt(others, 2)} cores`);
    const r = parseWork(res.stdout, what);
    if (r) gcs.plain.push(r.numGc);
    return { ms: r ? r.elapsedNs / 1e6 : undefined, noisy };
  }
  if (mode === "run") {
    const ev = join(scratch, `run-${round}.ndjson`);
    const res = await runCmd([...oomprof, "run", "--quiet", "--out", join(scratch, "out"), "--events", ev, "--", prog.path, "work"], 300, what);
    cmdCpuMs.run.push(res.cpuMs);
    const others = othersCores(res);
    if (others > NOISY_CORES) noisy.push(`${mode}: others used ${fmt(others, 2)} cores`);
    const events = readEvents(ev);
    const armed = events.find((e) => e.event === "armed");
    if (armed) runArmed.push(armed.armed_ms as number);
    for (const e of events) {
      if (e.event === "oom_kill" || e.event === "kill") problems.push(`${what}: unexpected ${e.event} event (${e.comm}, reason ${e.reason})`);
      if (e.event === "warning") problems.push(`${what}: warning event: ${e.message}`);
    }
    const r = parseWork(res.stdout, what);
    if (r) gcs.run.push(r.numGc);
    return { ms: r ? r.elapsedNs / 1e6 : undefined, noisy };
  }
  const w = await startWatch(`round${round}`);
  await sleep(1000);
  const ticks0 = treeTicks(w.proc.pid);
  const seen = trackBpftrace(w.proc.pid);
  const res = await runCmd([prog.path, "work"], 300, what);
  cmdCpuMs.watch.push(res.cpuMs);
  const ticks1 = treeTicks(w.proc.pid);
  const sessions = seen.stop();
  const watchMs = ((ticks1 - ticks0) * 1000) / CLK_TCK;
  watchCpuMs.push(watchMs);
  if (sessions > 1) noisy.push(`watch: ${sessions} bpftrace processes during the work (a rebuild: another Go binary appeared on the host)`);
  const others = othersCores(res, watchMs);
  if (others > NOISY_CORES) noisy.push(`${mode}: others used ${fmt(others, 2)} cores`);
  const { foreign } = await stopWatch(w, `round ${round}`);
  if (foreign) noisy.push(`watch: ${foreign} events about other processes`);
  const r = parseWork(res.stdout, what);
  if (r) gcs.watch.push(r.numGc);
  return { ms: r ? r.elapsedNs / 1e6 : undefined, noisy };
}

const out: string[] = [];
try {
  startSleeper();
  await sleep(500);

  if (!flags.has("skip-work")) {
    console.log(`work: ${describeArgv([prog.path])} work (${prog.goVersion}); oomprof: ${describeArgv(oomprof)}; ${rounds} rounds`);
    console.log(`  plain: timeout -k 5 300 ${describeArgv([prog.path])} work`);
    console.log(`  run:   timeout -k 5 300 ${describeArgv(oomprof)} run --quiet --out DIR --events FILE -- ${describeArgv([prog.path])} work`);
    console.log(
      `  watch: timeout -k 5 900 ${describeArgv(oomprof)} watch --quiet --out DIR --events FILE &  (wait for ready, +1 s), then the plain command, then SIGTERM`,
    );
    for (let round = 1; round <= rounds; round++) {
      const order = MODES.map((_, i) => MODES[(i + round - 1) % MODES.length]!);
      const row: Partial<Record<Mode, number>> & { noisy: string[] } = { noisy: [] };
      for (const mode of order) {
        const { ms, noisy } = await work(mode, round);
        if (ms !== undefined) {
          row[mode] = ms;
          times[mode].push(ms);
        }
        row.noisy.push(...noisy);
        await sleep(500);
      }
      perRound.push(row);
      console.log(
        `  round ${round} (${order.join(", ")}): plain ${fmt(row.plain)} ms, run ${fmt(row.run)} ms, watch ${fmt(row.watch)} ms${row.noisy.length ? `  [noisy: ${row.noisy.join("; ")}]` : ""}`,
      );
    }
    const ratio = (m: Mode, rows = perRound) => rows.map((r) => (r[m] !== undefined && r.plain !== undefined ? r[m]! / r.plain : undefined));
    const quiet = perRound.filter((r) => r.noisy.length === 0);
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
        `quiet rounds (others' load under ${NOISY_CORES} cores in all three runs, no watch rebuild): ${quiet.length} of ${perRound.length}; ` +
        `their per-round ratios: run/plain ${fmtStats(ratio("run", quiet), 3)}, watch/plain ${fmtStats(ratio("watch", quiet), 3)}\n` +
        `oomprof run's armed_ms (not part of the work time): ${fmtStats(runArmed)}\n` +
        `watch's CPU (oomprof + bpftrace) during one work run: ${fmtStats(watchCpuMs)} ms\n` +
        `CPU of the timed command (rusage, ms): plain ${fmtStats(cmdCpuMs.plain)}; under watch ${fmtStats(cmdCpuMs.watch)}; ` +
        `oomprof run (work + oomprof + bpftrace, arming included) ${fmtStats(cmdCpuMs.run)}`,
    );
    console.log(`\n${out[out.length - 1]}\n`);
  }

  if (!flags.has("skip-idle")) {
    interface IdleRep {
      readyMs?: number;
      armedMs?: number;
      goProcs?: number;
      /** oomprof and its bpftrace (and what they reaped), % of one core. */
      cpuPct: number;
      /** oomprof's own process only (mirror, timers; not bpftrace), % of one core. */
      ownPct: number;
      rss: ReturnType<typeof treeRss>;
      sessions: number;
      foreign: number;
      othersCores: number;
      noisy: boolean;
    }
    const idle = async (label: string) => {
      const quiet: IdleRep[] = [];
      const noisy: IdleRep[] = [];
      for (let attempt = 1; quiet.length < idleReps && attempt <= idleReps + idleRetries; attempt++) {
        const w = await startWatch(`${label}-${attempt}`);
        const rssAtReady = treeRss(w.proc.pid);
        await sleep(idleSettle * 1000);
        const t0 = wallMs();
        const busy0 = hostBusyMs();
        const k0 = treeTicks(w.proc.pid);
        const own = () => oomprofTree(w.proc.pid).find((p) => p.comm === "oomprof" || p.comm === "bun")?.cpuTicks ?? 0;
        const o0 = own();
        const seen = trackBpftrace(w.proc.pid);
        await sleep(idleSeconds * 1000);
        const k1 = treeTicks(w.proc.pid);
        const o1 = own();
        const busy = hostBusyMs() - busy0;
        const sessions = seen.stop();
        const ms = wallMs() - t0;
        const cpuPct = (((k1 - k0) / CLK_TCK) * 1000 * 100) / ms;
        const ownPct = (((o1 - o0) / CLK_TCK) * 1000 * 100) / ms;
        const others = Math.max(0, busy - ((k1 - k0) * 1000) / CLK_TCK) / ms;
        const rss = treeRss(w.proc.pid);
        const { foreign } = await stopWatch(w, `${label} ${attempt}`);
        const isNoisy = sessions > 1 || foreign > 0 || others > NOISY_CORES;
        const r: IdleRep = {
          readyMs: w.readyAfterMs,
          armedMs: w.ready?.armed_ms as number | undefined,
          goProcs: w.ready?.go_processes as number | undefined,
          cpuPct,
          ownPct,
          rss,
          sessions,
          foreign,
          othersCores: others,
          noisy: isNoisy,
        };
        (isNoisy ? noisy : quiet).push(r);
        console.log(
          `  ${label} attempt ${attempt}${isNoisy ? " (noisy, not counted)" : ""}: spawn→ready ${fmt(r.readyMs)} ms, armed_ms ${fmt(r.armedMs)}, go_processes ${r.goProcs ?? "-"}, ` +
            `CPU ${fmt(cpuPct, 2)}% of a core (oomprof itself ${fmt(ownPct, 2)}%), RSS oomprof ${fmt(rss.oomprofKiB / 1024, 1)} MiB + bpftrace ${fmt(rss.bpftraceKiB / 1024, 1)} MiB ` +
            `(at ready: ${fmt(rssAtReady.oomprofKiB / 1024, 1)} + ${fmt(rssAtReady.bpftraceKiB / 1024, 1)}); bpftrace processes in the window ${sessions}, ` +
            `events about other processes ${foreign}, others' load ${fmt(others, 2)} cores`,
        );
        await sleep(500);
      }
      const rows = quiet.length ? quiet : noisy;
      if (!quiet.length) problems.push(`${label}: no quiet measurement in ${idleReps + idleRetries} attempts (the host was busy); the row shows noisy ones`);
      return [
        label + (quiet.length ? "" : " (noisy)"),
        `${rows.length}${noisy.length && quiet.length ? ` (+${noisy.length} noisy)` : ""}`,
        fmtStats(rows.map((r) => r.goProcs)),
        fmtStats(rows.map((r) => r.readyMs)),
        fmtStats(rows.map((r) => r.armedMs)),
        fmtStats(
          rows.map((r) => r.cpuPct),
          2,
        ),
        fmtStats(
          rows.map((r) => r.ownPct),
          2,
        ),
        fmtStats(
          rows.map((r) => r.rss.oomprofKiB / 1024),
          1,
        ),
        fmtStats(
          rows.map((r) => r.rss.bpftraceKiB / 1024),
          1,
        ),
        fmtStats(
          rows.map((r) => (r.rss.oomprofKiB + r.rss.bpftraceKiB + r.rss.otherKiB) / 1024),
          1,
        ),
        fmtStats(
          rows.map((r) => r.rss.pssKiB / 1024),
          1,
        ),
        noisy.length
          ? fmtStats(
              noisy.map((r) => r.cpuPct),
              1,
            )
          : "-",
      ];
    };
    console.log(`idle watch: ${idleReps} reps, CPU over ${idleSeconds} s after ready + ${idleSettle} s`);
    const rows = [await idle("few Go processes")];
    for (let i = sleepers.length; i < procs; i++) startSleeper();
    const deadline = wallMs() + 60_000;
    while (sleepersRunning() < procs && wallMs() < deadline) await sleep(200);
    const up = sleepersRunning();
    if (up < procs) problems.push(`only ${up} of ${procs} idle Go processes came up`);
    await sleep(1000);
    rows.push(await idle(`${up} idle Go processes`));
    await stopSleepers();
    if (distinct > 0) {
      // The idle copy of the work binary stays stopped: only the D distinct binaries run.
      for (const path of distinctCopies(distinct)) startSleeper(path);
      const deadline = wallMs() + 60_000;
      while (sleepersRunning() < distinct && wallMs() < deadline) await sleep(200);
      await sleep(1000);
      rows.push(await idle(`${sleepersRunning()} distinct Go binaries`));
      await stopSleepers();
    }
    const t2 = table(
      [
        "host",
        "reps",
        "go_processes",
        "spawn→ready ms",
        "armed_ms",
        "CPU % of a core",
        "of which oomprof %",
        "RSS oomprof MiB",
        "RSS bpftrace MiB",
        "RSS total MiB",
        "PSS oomprof+bpftrace MiB",
        "noisy reps' CPU %",
      ],
      rows,
    );
    out.push(
      `== idle oomprof watch (median [min–max] over quiet reps; CPU over ${idleSeconds} s starting ${idleSettle} s after ready; ${prog.goVersion} idle programs)\n${t2}\n` +
        `a rep is noisy (retried, up to ${idleRetries} extra) when watch restarted bpftrace, reported other processes, or others used > ${NOISY_CORES} cores\n` +
        "PSS splits pages shared with other processes and counts once a page mapped twice (bpftrace 0.19+ maps its ring buffer's pages twice, so RSS counts them twice)",
    );
    console.log(`\n${out[out.length - 1]}`);
  }
} finally {
  await stopSleepers();
}

// Each table was printed when its part was done; with both parts, all again as a summary.
if (out.length > 1) console.log(`\n== summary\n\n${out.join("\n\n")}`);
if (notes.length) console.log(`\nnotes (other activity on the host during the measurements):\n${notes.map((n) => `  ${n}`).join("\n")}`);
if (problems.length) {
  console.log(`\nproblems:\n${problems.map((p) => `  ${p}`).join("\n")}`);
  process.exitCode = 1;
} else if (!keep) rmSync(scratch, { recursive: true, force: true });

// Nothing of ours is left running; do not wait for stray handles.
process.exit(process.exitCode ?? 0);
