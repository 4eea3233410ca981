/**
 * A soak of `oomprof watch`: one watch through a long mixed run of OOM kills.
 *
 *   bun scripts/bench-soak.ts [--minutes N] [--kills K] [--concurrency C] [--seed S]
 *       [--sample-seconds S] [--warmup-seconds W] [--victim-timeout S] [--bin PATH] [--keep]
 *
 * Starts `oomprof watch --out DIR --events - --verbose` (--bin, $OOMPROF_BIN, else
 * `bun src/cli/main.ts`), waits for its ready event, then for N minutes (default 10)
 * OOM-kills victims, each in a fresh memory cgroup of 48-128 MiB, at most C (default 3)
 * at a time, paced to start about K (default 300) in all:
 *   fresh Go    a new copy of test/go/leaker at a new path each time (watch has never seen it)
 *   known Go    three paths reused throughout (crash loops), run once each before the soak
 *   wrapped Go  `sh -c 'exec ./leaker'` (same pid) and `sh -c './leaker; true'` (a child)
 *   burst Go    three started together: three fresh binaries, or three replicas of a known one
 *   noprof Go   test/go/noprof, Go without memory profiling: no profile, a reason naming it
 *   non-Go      a shell growing a string (test/helpers/cgroup.ts SHELL_HOG)
 * Go victims die from about 0.1 s to about 30 s after exec (70% of lifetimes drawn
 * log-uniformly from 0.1-3 s, 30% from 3-30 s), set through the leaker's LEAK_KIB and
 * STEP_SLEEP_US and the cgroup's limit; the lifetime printed is measured, spawn to exit.
 *
 * A victim counts as OOM-killed when its cgroup's oom_kill counter went up (for
 * `./leaker; true` the shell exits 0). Watch's oom_kill events are attributed by the
 * event's cgroup, else by pid (the cgroup's members, polled every 100 ms) within the
 * victim's lifetime, else by exe path and time; the rest are other processes on the host.
 * capture_ms is watch's own figure: the kernel's OOM decision to the profile on disk.
 * "profile mtime − exit seen" is the profile file's mtime minus the moment this script
 * saw the victim's exit (negative when the profile was written first).
 *
 * Every S seconds (default 10) it samples watch: oomprof's own process and its bpftrace
 * children, RSS (VmRSS) and PSS (smaps_rollup), and CPU (utime+stime, bpftrace's counted
 * with those oomprof has reaped) as % of one core over the interval. Memory after
 * warm-up (W seconds, default min(60, a quarter of the run)): the medians of the first and
 * last quarter of the later samples, and a least-squares slope.
 * The stderr lines "walked X ms after its exec (heard of after Y ms)" give exec → walk
 * live for each new binary.
 *
 * Figures are printed, never asserted: exit 0 after the report; 1 with one line when
 * watch cannot start (or not root); 130 after an interrupt (the report so far is printed).
 * Cgroups, victims and the scratch directory (.cache/bench/soak-*, kept with --keep) are
 * removed on exit, SIGINT and SIGTERM included.
 */
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, unlinkSync, writeFileSync } from "node:fs";
import { basename, join, resolve } from "node:path";
import { DISABLED_HINT } from "../src/gobinary/go-target.ts";
import { SHELL_HOG, testCgroup } from "../test/helpers/cgroup.ts";
import { buildGoProgram } from "../test/helpers/go.ts";
import { oomprofArgv as sourcesOrEnvArgv } from "../test/helpers/oomprof.ts";
import { prng } from "../test/helpers/prng.ts";
import {
  BENCH_DIR,
  CLK_TCK,
  cgroupOomKills,
  describeArgv,
  exitedWithin,
  fmt,
  fmtStats,
  intFlag,
  killPid,
  parseFlags,
  procStat,
  pssKiB,
  rssKiB,
  sleep,
  table,
  wallMs,
  type Ev,
} from "./bench-lib.ts";

const { flags } = parseFlags(process.argv.slice(2), ["keep"]);
if (flags.has("help")) {
  console.log(
    "usage: scripts/bench-soak [--minutes N] [--kills K] [--concurrency C] [--seed S] [--sample-seconds S] [--warmup-seconds W] [--victim-timeout S] [--bin PATH] [--keep]",
  );
  process.exit(0);
}
const minutes = intFlag(flags.get("minutes"), 10, "--minutes");
const killsTarget = intFlag(flags.get("kills"), 300, "--kills");
const maxConcurrent = intFlag(flags.get("concurrency"), 3, "--concurrency");
const seed = intFlag(flags.get("seed"), 1, "--seed");
const sampleS = intFlag(flags.get("sample-seconds"), 10, "--sample-seconds");
const warmupS = intFlag(flags.get("warmup-seconds"), Math.min(60, Math.max(1, Math.round((minutes * 60) / 4))), "--warmup-seconds");
const victimTimeoutS = intFlag(flags.get("victim-timeout"), 90, "--victim-timeout");
const keep = flags.has("keep");
const oomprof = flags.get("bin") ? [resolve(flags.get("bin")!)] : sourcesOrEnvArgv();

function fail(msg: string): never {
  console.log(`bench-soak: ${msg}`);
  cleanup();
  process.exit(1);
}

if (process.getuid?.() !== 0) {
  console.log("bench-soak: must run as root (bpftrace, memory cgroups)");
  process.exit(1);
}

// --- victims -------------------------------------------------------------------------

type Category = "fresh" | "known" | "wrapped" | "burst" | "noprof" | "nongo";
const CATEGORIES: Category[] = ["fresh", "known", "wrapped", "burst", "noprof", "nongo"];
const LABEL: Record<Category, string> = {
  fresh: "fresh Go",
  known: "known Go",
  wrapped: "wrapped Go",
  burst: "burst Go",
  noprof: "noprof Go",
  nongo: "non-Go",
};
/** Go victims that should get a complete profile (noprof has none to give). */
const wantsProfile = (c: Category) => c !== "nongo" && c !== "noprof";

interface Victim {
  id: number;
  category: Category;
  /** How it was started, for the lists: "fresh-0007", "sh -c 'exec ./known-b'"... */
  label: string;
  /** The Go binary expected to be killed, or null for the shell. */
  exe: string | null;
  /** A copy made for this victim alone: deleted once reported (then false). */
  freshCopy: boolean;
  /** Started from a binary watch had never seen. */
  newBinary: boolean;
  limitMiB: number;
  targetS: number | null;
  env: Record<string, string>;
  cg: ReturnType<typeof testCgroup>;
  cgName: string;
  proc: ReturnType<typeof Bun.spawn>;
  pids: Set<number>;
  spawnedAt: number;
  exitedAt?: number;
  status?: number;
  timedOut: boolean;
  /** Killed by this script when interrupted. */
  stopped: boolean;
  /** The cgroup's OOM-kill counter after the victim ended. */
  oomKills?: number;
  removed: boolean;
  events: Array<Ev & { receivedAt: number }>;
  done: Promise<void>;
}

const victims: Victim[] = [];
const running = new Set<Victim>();
const byCgroup = new Map<string, Victim>();

let scratch = "";
let binDir = "";
let outDir = "";
let watch: ReturnType<typeof Bun.spawn> | undefined;
let interrupted = false;
let cleaned = false;

/** Kills what is left in a victim's cgroup (our own processes, by pid). */
function killCgroup(v: Victim): void {
  try {
    for (const pid of readFileSync(v.cg.procsFile, "utf8").split(/\s+/).filter(Boolean)) killPid(Number(pid), "SIGKILL");
  } catch {
    /* gone */
  }
}

function cleanup(): void {
  if (cleaned) return;
  cleaned = true;
  for (const v of running) killCgroup(v);
  for (const v of victims) {
    if (v.removed) continue;
    killCgroup(v);
    v.cg.remove();
    v.removed = true;
  }
  if (watch && watch.exitCode === null) killPid(watch.pid, "SIGTERM");
  if (scratch && !keep) rmSync(scratch, { recursive: true, force: true });
}

let signals = 0;
for (const sig of ["SIGINT", "SIGTERM"] as const) {
  process.on(sig, () => {
    signals++;
    interrupted = true;
    if (signals === 1) process.stderr.write(`bench-soak: ${sig}: stopping the victims and reporting what was seen (again to quit now)\n`);
    else {
      cleanup();
      process.exit(130);
    }
  });
}
process.on("exit", cleanup);

// --- watch -----------------------------------------------------------------------------

interface WalkLine {
  path: string;
  walkedMs: number;
  heardMs: number;
}
const events: Array<Ev & { receivedAt: number }> = [];
const walkLines: WalkLine[] = [];
const stderrWarnings: string[] = [];
let stderrLines = 0;
/** "watching PATH" lines: binaries watch has read. */
const watchingLines: string[] = [];
const stderrTail: string[] = [];
const WALK_RE = /^oomprof: (.+) \(pid \d+\) walked ([\d.]+) ms after its exec \(heard of after ([\d.]+) ms\)/;

async function readLines(stream: ReadableStream<Uint8Array>, onLine: (line: string) => void): Promise<void> {
  const dec = new TextDecoder();
  let buf = "";
  for await (const chunk of stream) {
    buf += dec.decode(chunk, { stream: true });
    let nl: number;
    while ((nl = buf.indexOf("\n")) >= 0) {
      onLine(buf.slice(0, nl));
      buf = buf.slice(nl + 1);
    }
  }
  if (buf) onLine(buf);
}

function onEventLine(line: string): void {
  if (!line.trim()) return;
  let e: Ev;
  try {
    e = JSON.parse(line) as Ev;
  } catch {
    return;
  }
  const ev = Object.assign(e, { receivedAt: wallMs() });
  events.push(ev);
  if (ev.event === "oom_kill" || ev.event === "kill" || ev.event === "runtime_oom") attribute(ev);
}

function onStderrLine(line: string): void {
  stderrLines++;
  if (line.startsWith("oomprof: watching ")) watchingLines.push(line);
  stderrTail.push(line);
  if (stderrTail.length > 20) stderrTail.shift();
  const m = WALK_RE.exec(line);
  if (m) walkLines.push({ path: m[1]!, walkedMs: Number(m[2]), heardMs: Number(m[3]) });
  if (line.startsWith("oomprof: warning: ")) stderrWarnings.push(line.slice("oomprof: warning: ".length));
}

// --- attributing kill events -------------------------------------------------------------

const unattributed: Array<Ev & { receivedAt: number }> = [];
const foreign: Array<Ev & { receivedAt: number }> = [];

function inWindow(v: Victim, at: number): boolean {
  return at >= v.spawnedAt - 2000 && at <= (v.exitedAt ?? wallMs()) + 60_000;
}

/** By the event's cgroup, else by a pid the victim's cgroup held around that time. */
function attribute(ev: Ev & { receivedAt: number }): void {
  const cg = typeof ev.cgroup === "string" ? basename(ev.cgroup) : undefined;
  let v = cg ? byCgroup.get(cg) : undefined;
  if (!v) v = victims.find((x) => x.pids.has(ev.pid as number) && inWindow(x, ev.receivedAt));
  if (v) v.events.push(ev);
  else unattributed.push(ev);
}

/** What is left, by exe path and time (a binary of ours, a victim without an event yet); else not ours. */
function attributeRest(): void {
  for (const ev of unattributed.splice(0)) {
    const v =
      victims.find((x) => x.pids.has(ev.pid as number) && inWindow(x, ev.receivedAt)) ??
      victims.find((x) => x.exe !== null && x.exe === ev.exe && x.events.length === 0 && inWindow(x, ev.receivedAt));
    if (v) v.events.push(ev);
    else foreign.push(ev);
  }
}

/** The victim's own oom_kill: the one for its Go binary when there are several. */
function primary(v: Victim): (Ev & { receivedAt: number }) | undefined {
  const kills = v.events.filter((e) => e.event === "oom_kill");
  return kills.find((e) => v.exe !== null && e.exe === v.exe) ?? kills[0];
}

// --- sampling watch -------------------------------------------------------------------------

interface Sample {
  t: number;
  ownRss: number;
  ownPss: number;
  bpfRss: number;
  bpfPss: number;
  bpfProcs: number;
  ownTicks: number;
  childTicks: number;
  at: number;
  ownCpuPct?: number;
  childCpuPct?: number;
  started: number;
  kills: number;
}
const samples: Sample[] = [];
const bpftracePids = new Set<number>();
let soakStart = 0;
let oomprofPid: number | undefined;

/** Direct children of a process, from /proc/PID/task/TID/children. */
function childrenOf(pid: number): number[] {
  const out: number[] = [];
  try {
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      try {
        for (const c of readFileSync(`/proc/${pid}/task/${tid}/children`, "utf8").split(/\s+/).filter(Boolean)) out.push(Number(c));
      } catch {
        /* thread gone */
      }
    }
  } catch {
    /* process gone */
  }
  return out;
}

/** oomprof's descendants (bpftrace, and whatever else it runs). */
function descendants(pid: number): number[] {
  const out: number[] = [];
  const queue = childrenOf(pid);
  while (queue.length) {
    const p = queue.shift()!;
    out.push(p);
    queue.push(...childrenOf(p));
  }
  return out;
}

function noteBpftraces(): void {
  if (oomprofPid === undefined) return;
  for (const pid of descendants(oomprofPid)) if (procStat(pid)?.comm === "bpftrace") bpftracePids.add(pid);
}

function takeSample(): Sample | undefined {
  if (oomprofPid === undefined) return undefined;
  const own = procStat(oomprofPid);
  if (!own) return undefined;
  const s: Sample = {
    t: (wallMs() - soakStart) / 1000,
    at: wallMs(),
    ownRss: rssKiB(own.pid),
    ownPss: pssKiB(own.pid),
    bpfRss: 0,
    bpfPss: 0,
    bpfProcs: 0,
    ownTicks: own.cpuTicks,
    // What oomprof has reaped (replaced bpftraces) plus what runs under it now.
    childTicks: own.childTicks,
    started: victims.length,
    kills: victims.filter((v) => primary(v)).length,
  };
  for (const pid of descendants(own.pid)) {
    const st = procStat(pid);
    if (!st) continue;
    s.childTicks += st.cpuTicks + st.childTicks;
    if (st.comm === "bpftrace") {
      bpftracePids.add(pid);
      s.bpfProcs++;
      s.bpfRss += rssKiB(pid);
      s.bpfPss += pssKiB(pid);
    }
  }
  const prev = samples[samples.length - 1];
  if (prev) {
    const secs = (s.at - prev.at) / 1000;
    s.ownCpuPct = ((s.ownTicks - prev.ownTicks) / CLK_TCK / secs) * 100;
    s.childCpuPct = (Math.max(0, s.childTicks - prev.childTicks) / CLK_TCK / secs) * 100;
  }
  samples.push(s);
  return s;
}

// --- the mix -----------------------------------------------------------------------------

const rand = prng(seed);
const pick = <T>(xs: T[]): T => xs[Math.floor(rand() * xs.length)]!;
const logUniform = (lo: number, hi: number) => Math.exp(Math.log(lo) + rand() * (Math.log(hi) - Math.log(lo)));
/** A lifetime to aim at: 70% from 0.1-3 s, 30% from 3-30 s. */
const sampleLifetime = () => (rand() < 0.7 ? logUniform(0.1, 3) : logUniform(3, 30));

/**
 * Leaker settings for a lifetime of about T seconds. Fast deaths use settings measured on
 * a 2-CPU machine; slower ones a rough model: death after about 0.75 × limit / LEAK_KIB
 * steps of STEP_SLEEP_US × 1.1 + 250 µs each, plus 150 ms to start.
 */
function leakerSettings(T: number): { limitMiB: number; env: Record<string, string> } {
  const goroutines = String(pick([0, 0, 20, 200]));
  if (T < 0.25) return { limitMiB: 48, env: { LEAK_KIB: "16384", STEP_SLEEP_US: "0", GOROUTINES: goroutines } };
  if (T < 0.6) return { limitMiB: 64, env: { LEAK_KIB: "1024", STEP_SLEEP_US: "0", GOROUTINES: goroutines } };
  if (T < 1) return { limitMiB: 128, env: { LEAK_KIB: "2048", STEP_SLEEP_US: "0", GOROUTINES: goroutines } };
  const limitMiB = pick([48, 64, 96, 128]);
  const options: Array<{ leak: number; sleepUs: number }> = [];
  for (const leak of [1, 2, 4, 8, 16, 32, 64, 128, 256]) {
    const steps = (0.75 * limitMiB * 1024) / leak;
    const sleepUs = (((T - 0.15) / steps) * 1e6 - 250) / 1.1;
    options.push({ leak, sleepUs: Math.round(sleepUs) });
  }
  const fitting = options.filter((o) => o.sleepUs >= 100 && o.sleepUs <= 4000);
  const o = fitting.length
    ? pick(fitting)
    : options.reduce((a, b) => (Math.abs(Math.log(Math.max(1, b.sleepUs) / 1000)) < Math.abs(Math.log(Math.max(1, a.sleepUs) / 1000)) ? b : a));
  return { limitMiB, env: { LEAK_KIB: String(o.leak), STEP_SLEEP_US: String(Math.max(0, o.sleepUs)), GOROUTINES: goroutines } };
}

let freshCount = 0;
let leakerPath = "";
let noprofPath = "";
const knownPaths: string[] = [];

function copyBinary(from: string, name: string): string {
  const to = join(binDir, name);
  copyFileSync(from, to);
  chmodSync(to, 0o755);
  return to;
}

function freshLeaker(): string {
  return copyBinary(leakerPath, `fresh-${String(++freshCount).padStart(4, "0")}`);
}

/** Cgroup names carry the creation millisecond: never two in the same one. */
let lastCgroupAt = 0;
async function newCgroup(limitMiB: number): Promise<ReturnType<typeof testCgroup>> {
  while (Date.now() <= lastCgroupAt + 1) await sleep(2);
  lastCgroupAt = Date.now();
  return testCgroup(limitMiB << 20);
}

interface Spec {
  category: Category;
  label: string;
  exe: string | null;
  freshCopy: boolean;
  argv: string[];
  cwd: string;
  limitMiB: number;
  targetS: number | null;
  env: Record<string, string>;
}

async function start(spec: Spec): Promise<Victim> {
  const cg = await newCgroup(spec.limitMiB);
  const env = { PATH: process.env.PATH ?? "/usr/sbin:/usr/bin:/sbin:/bin", ...spec.env };
  const proc = Bun.spawn(cg.argv(spec.argv), { cwd: spec.cwd, env, stdin: "ignore", stdout: "ignore", stderr: "ignore" });
  const v: Victim = {
    id: victims.length + 1,
    category: spec.category,
    label: spec.label,
    exe: spec.exe,
    freshCopy: spec.freshCopy,
    newBinary: spec.freshCopy,
    limitMiB: spec.limitMiB,
    targetS: spec.targetS,
    env: spec.env,
    cg,
    cgName: basename(cg.path),
    proc,
    pids: new Set([proc.pid]),
    spawnedAt: wallMs(),
    timedOut: false,
    stopped: false,
    removed: false,
    events: [],
    done: Promise.resolve(),
  };
  victims.push(v);
  running.add(v);
  byCgroup.set(v.cgName, v);
  v.done = (async () => {
    let status = await exitedWithin(proc, victimTimeoutS * 1000);
    if (status === undefined) {
      v.timedOut = true;
      killCgroup(v);
      status = await exitedWithin(proc, 10_000);
    }
    v.exitedAt = wallMs();
    v.status = status;
    // `./leaker; true`: the shell may be gone while its child is not yet reaped.
    for (let i = 0; i < 50 && readCgroupPids(v).length; i++) await sleep(20);
    killCgroup(v);
    v.oomKills = cgroupOomKills(v.cg.path);
    v.cg.remove();
    v.removed = true;
    running.delete(v);
  })();
  return v;
}

function readCgroupPids(v: Victim): number[] {
  try {
    return readFileSync(v.cg.procsFile, "utf8").split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

function goSpec(category: Category, exe: string, freshCopy: boolean, T = sampleLifetime()): Spec {
  const s = leakerSettings(T);
  return { category, label: basename(exe), exe, freshCopy, argv: [exe], cwd: binDir, limitMiB: s.limitMiB, targetS: T, env: s.env };
}

type Kind = Category;
/** Weights per start; a burst starts three, so bursts are about a fifth of the victims. */
const WEIGHTS: Array<[Kind, number]> = [
  ["fresh", 0.25],
  ["known", 0.28],
  ["wrapped", 0.12],
  ["burst", 0.07],
  ["noprof", 0.05],
  ["nongo", 0.09],
];
function pickKind(): Kind {
  const total = WEIGHTS.reduce((s, [, w]) => s + w, 0);
  let r = rand() * total;
  for (const [k, w] of WEIGHTS) if ((r -= w) < 0) return k;
  return "fresh";
}

let burstCount = 0;
async function launch(kind: Kind, n: number): Promise<void> {
  switch (kind) {
    case "fresh": {
      const exe = freshLeaker();
      await start(goSpec("fresh", exe, true));
      return;
    }
    case "known": {
      await start(goSpec("known", pick(knownPaths), false));
      return;
    }
    case "wrapped": {
      const fresh = rand() < 0.5;
      const exe = fresh ? freshLeaker() : pick(knownPaths);
      const name = basename(exe);
      const spec = goSpec("wrapped", exe, fresh);
      const script = rand() < 0.5 ? `exec ./${name}` : `./${name}; true`;
      await start({ ...spec, argv: ["/bin/sh", "-c", script], label: `sh -c '${script}'` });
      return;
    }
    case "burst": {
      // The members die together: one lifetime for all three (under 10 s), each its own limit.
      const T = Math.min(sampleLifetime(), 10);
      const replicas = ++burstCount % 2 === 0;
      const exe = pick(knownPaths);
      for (let i = 0; i < n; i++) {
        const path = replicas ? exe : freshLeaker();
        const spec = goSpec("burst", path, !replicas, T);
        await start({ ...spec, label: `${basename(path)} (burst ${burstCount}, ${replicas ? "replicas" : "fresh"})` });
      }
      return;
    }
    case "noprof": {
      const limitMiB = pick([48, 64, 96, 128]);
      await start({
        category: "noprof",
        label: "noprof",
        exe: noprofPath,
        freshCopy: false,
        argv: [noprofPath],
        cwd: binDir,
        limitMiB,
        targetS: null,
        env: {},
      });
      return;
    }
    case "nongo": {
      const limitMiB = pick([48, 64, 96, 128]);
      await start({ category: "nongo", label: "sh (SHELL_HOG)", exe: null, freshCopy: false, argv: SHELL_HOG, cwd: binDir, limitMiB, targetS: null, env: {} });
      return;
    }
  }
}

/** Fresh copies are deleted once their kill is reported (or a minute after their end). */
function sweepFreshCopies(): void {
  const now = wallMs();
  for (const v of victims) {
    if (!v.freshCopy || v.exe === null || v.exitedAt === undefined) continue;
    if (!primary(v) && now - v.exitedAt < 60_000) continue;
    try {
      unlinkSync(v.exe);
    } catch {
      /* already gone */
    }
    v.freshCopy = false;
  }
}

// --- statistics ----------------------------------------------------------------------------

function percentile(sorted: number[], p: number): number {
  if (!sorted.length) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

/** "n N: min A, p50 B, p90 C, p99 D, max E" */
function distribution(xs: Array<number | null | undefined>, digits = 0): string {
  const s = xs.filter((x): x is number => typeof x === "number" && Number.isFinite(x)).sort((a, b) => a - b);
  if (!s.length) return "n 0";
  return `n ${s.length}: min ${fmt(s[0], digits)}, p50 ${fmt(percentile(s, 50), digits)}, p90 ${fmt(percentile(s, 90), digits)}, p99 ${fmt(percentile(s, 99), digits)}, max ${fmt(s[s.length - 1], digits)}`;
}

function medianOf(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  if (!s.length) return NaN;
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** Least-squares slope of y over x. */
function slope(xs: number[], ys: number[]): number {
  const n = xs.length;
  if (n < 2) return NaN;
  const mx = xs.reduce((a, b) => a + b, 0) / n;
  const my = ys.reduce((a, b) => a + b, 0) / n;
  let num = 0;
  let den = 0;
  for (let i = 0; i < n; i++) {
    num += (xs[i]! - mx) * (ys[i]! - my);
    den += (xs[i]! - mx) ** 2;
  }
  return den ? num / den : NaN;
}

const mib = (kib: number) => kib / 1024;

// --- main ------------------------------------------------------------------------------------

mkdirSync(BENCH_DIR, { recursive: true });
scratch = mkdtempSync(join(BENCH_DIR, "soak-"));
binDir = join(scratch, "bin");
outDir = join(scratch, "out");
mkdirSync(binDir, { recursive: true });

try {
  leakerPath = await buildGoProgram("leaker");
  noprofPath = copyBinary(await buildGoProgram("noprof"), "noprof");
} catch (e) {
  fail(`building the Go test programs failed: ${(e as Error).message.split("\n")[0]}`);
}
for (const name of ["known-a", "known-b", "known-c"]) knownPaths.push(copyBinary(leakerPath, name));
const goVersion =
  Bun.spawnSync([process.env.OOMPROF_GO ?? "go", "env", "GOVERSION"])
    .stdout.toString()
    .trim() || "?";

const watchArgv = [...oomprof, "watch", "--out", outDir, "--events", "-", "--verbose"];
const spawnedAt = wallMs();
try {
  // Under coreutils timeout, as every child of the benchmarks: nothing outlives a killed script.
  watch = Bun.spawn(["timeout", "-k", "5", String(minutes * 60 + 900), ...watchArgv], { stdin: "ignore", stdout: "pipe", stderr: "pipe" });
} catch (e) {
  fail(`watch could not start: ${(e as Error).message}`);
}
const w = watch!;
const eventsDone = readLines(w.stdout as ReadableStream<Uint8Array>, onEventLine);
const stderrDone = readLines(w.stderr as ReadableStream<Uint8Array>, onStderrLine);
let ready: Ev | undefined;
while (!ready && w.exitCode === null && !interrupted && wallMs() - spawnedAt < 120_000) {
  ready = events.find((e) => e.event === "ready");
  if (!ready) await sleep(20);
}
if (!ready) {
  if (w.exitCode === null) killPid(w.pid, "SIGTERM");
  await exitedWithin(w, 10_000);
  const last = stderrTail.filter((l) => l.trim()).pop();
  fail(`watch did not start (${w.exitCode === null ? "no ready event in 120 s" : `exit status ${w.exitCode}`})${last ? `: ${last}` : ""}`);
}
const readyMs = wallMs() - spawnedAt;
oomprofPid = childrenOf(w.pid)[0];

console.log(
  `oomprof watch soak: ${describeArgv(watchArgv)}\n` +
    `bpftrace ${ready.bpftrace_version}, walk ${ready.walk}; ready ${fmt(readyMs)} ms after spawn (armed_ms ${ready.armed_ms}), ` +
    `${ready.go_processes} Go processes on the host at start\n` +
    `victims: test/go/leaker and test/go/noprof built with ${goVersion}; ${minutes} min, about ${killsTarget} victims, at most ${maxConcurrent} at once, ` +
    `seed ${seed}; watch sampled every ${sampleS} s, warm-up ${warmupS} s`,
);

// The known binaries, run once (about a second, leaking next to nothing) so watch has them
// in its table before the soak: its verbose "watching PATH" line says it read each.
const watchingLine = (path: string) => watchingLines.some((l) => l.startsWith(`oomprof: watching ${path} (`));
const primers = knownPaths.map((path) =>
  Bun.spawn([path], {
    env: { PATH: process.env.PATH ?? "", EXIT_AFTER_STEPS: "1000", STEP_SLEEP_US: "1000", LEAK_KIB: "1" },
    stdin: "ignore",
    stdout: "ignore",
    stderr: "ignore",
  }),
);
for (const p of primers) if ((await exitedWithin(p, 30_000)) === undefined) killPid(p.pid, "SIGKILL");
const primeUntil = wallMs() + 30_000;
while (!knownPaths.every(watchingLine) && wallMs() < primeUntil && !interrupted) await sleep(100);
const unprimed = knownPaths.filter((p) => !watchingLine(p));
if (unprimed.length)
  console.log(`(watch did not say it read ${unprimed.map((p) => basename(p)).join(", ")} before the soak: their first kills are a fresh binary's)`);
await sleep(1000);

soakStart = wallMs();
takeSample();
const sampler = setInterval(() => {
  const s = takeSample();
  if (s && Math.round(s.t) % 60 < sampleS)
    process.stderr.write(
      `bench-soak: ${fmt(s.t)} s: ${s.started} victims started, ${s.kills} seen killed by watch; oomprof RSS ${fmt(mib(s.ownRss), 1)} MiB, bpftrace RSS ${fmt(mib(s.bpfRss), 1)} MiB\n`,
    );
}, sampleS * 1000);
const poller = setInterval(() => {
  for (const v of running) for (const pid of readCgroupPids(v)) v.pids.add(pid);
}, 100);
const bpfPoller = setInterval(noteBpftraces, 1000);
const sweeper = setInterval(sweepFreshCopies, 1000);

const soakMs = minutes * 60_000;
let started = 0;
let next: Kind | undefined;
let watchDied: string | undefined;
while (!interrupted) {
  if (w.exitCode !== null) {
    watchDied = `watch exited with status ${w.exitCode} ${fmt((wallMs() - soakStart) / 1000)} s into the soak`;
    break;
  }
  const elapsed = wallMs() - soakStart;
  if (elapsed >= soakMs || started >= killsTarget) break;
  // Paced to spread K starts over the run; behind schedule, a free slot is used at once.
  const allowed = Math.ceil((killsTarget * elapsed) / soakMs) + maxConcurrent;
  if (started >= allowed) {
    await sleep(50);
    continue;
  }
  next ??= pickKind();
  const n = next === "burst" ? Math.min(3, maxConcurrent, killsTarget - started) : 1;
  // A burst waits for the slots to drain, so its members start together.
  if (running.size + n > maxConcurrent) {
    await sleep(20);
    continue;
  }
  await launch(next, n);
  started += n;
  next = undefined;
}
const soakEnd = wallMs();

// The last victims: interrupted, they are killed now; else they die on their own (or time out).
if (interrupted)
  for (const v of running) {
    v.stopped = true;
    killCgroup(v);
  }
await Promise.all(victims.map((v) => v.done));
// Every OOM-killed victim's event, or 30 s.
const waitUntil = wallMs() + 30_000;
while (!interrupted && w.exitCode === null && wallMs() < waitUntil) {
  attributeRest();
  if (victims.every((v) => !v.oomKills || primary(v))) break;
  await sleep(200);
}
takeSample();
clearInterval(sampler);
clearInterval(poller);
clearInterval(bpfPoller);
clearInterval(sweeper);

let watchStatus: number | undefined = w.exitCode ?? undefined;
if (w.exitCode === null) {
  killPid(w.pid, "SIGTERM"); // timeout forwards it to oomprof
  watchStatus = await exitedWithin(w, 20_000);
  if (watchStatus === undefined) {
    killPid(w.pid, "SIGKILL");
    await exitedWithin(w, 5000);
  }
}
await Promise.race([Promise.all([eventsDone, stderrDone]), sleep(5000)]);
attributeRest();

// --- report ---------------------------------------------------------------------------------

const out: string[] = [];
const soakS = (soakEnd - soakStart) / 1000;
out.push(
  `\n== soak: ${victims.length} victims in ${fmt(soakS)} s${interrupted ? " (interrupted)" : ""}${watchDied ? ` (${watchDied})` : ""}; ` +
    `watch stopped with status ${watchStatus ?? "none (killed)"}`,
);

// By category.
const rows = CATEGORIES.map((c) => {
  const vs = victims.filter((v) => v.category === c);
  const seen = vs.filter((v) => primary(v));
  const profiled = seen.filter((v) => typeof primary(v)!.profile === "string");
  const complete = profiled.filter((v) => primary(v)!.complete === true);
  const lived = vs.map((v) => (v.exitedAt !== undefined ? (v.exitedAt - v.spawnedAt) / 1000 : undefined));
  return [
    LABEL[c],
    String(vs.length),
    String(vs.filter((v) => (v.oomKills ?? 0) > 0).length),
    String(seen.length),
    String(profiled.length),
    String(complete.length),
    String(vs.filter((v) => v.timedOut).length),
    fmtStats(lived, 2),
  ];
});
const all = victims;
const allSeen = all.filter((v) => primary(v));
rows.push([
  "all",
  String(all.length),
  String(all.filter((v) => (v.oomKills ?? 0) > 0).length),
  String(allSeen.length),
  String(allSeen.filter((v) => typeof primary(v)!.profile === "string").length),
  String(allSeen.filter((v) => typeof primary(v)!.profile === "string" && primary(v)!.complete === true).length),
  String(all.filter((v) => v.timedOut).length),
  fmtStats(
    all.map((v) => (v.exitedAt !== undefined ? (v.exitedAt - v.spawnedAt) / 1000 : undefined)),
    2,
  ),
]);
out.push(
  table(["victims", "run", "OOM-killed (cgroup)", "kills seen by watch", "profiled", "complete", "timed out", "lived s: median [min–max]"], rows) +
    '\n(noprof and non-Go victims are expected to have no profile; "lived" is spawn → exit seen by this script)',
);

// Go victims that should be profiled, by how long they lived and whether watch knew the binary.
const tally = (vs: Victim[]) => {
  const seen = vs.filter((v) => primary(v));
  const profiled = seen.filter((v) => typeof primary(v)!.profile === "string");
  return `${vs.length} / ${seen.length} / ${profiled.length} / ${profiled.filter((v) => primary(v)!.complete === true).length}`;
};
const lived = (v: Victim) => (v.exitedAt === undefined ? Infinity : (v.exitedAt - v.spawnedAt) / 1000);
const goVictims = victims.filter((v) => wantsProfile(v.category));
const BANDS: Array<[string, number, number]> = [
  ["< 0.3 s", 0, 0.3],
  ["0.3–1 s", 0.3, 1],
  ["1–3 s", 1, 3],
  ["3–10 s", 3, 10],
  ["10–30 s", 10, 30],
  ["≥ 30 s", 30, Infinity],
];
out.push(
  "\n" +
    table(
      ["Go victims (not noprof), lived", "new binary: run / seen / profiled / complete", "known binary: run / seen / profiled / complete"],
      BANDS.map(([name, lo, hi]) => {
        const band = goVictims.filter((v) => lived(v) >= lo && lived(v) < hi);
        return [name, tally(band.filter((v) => v.newBinary)), tally(band.filter((v) => !v.newBinary))];
      }),
    ),
);
const sub = (c: Category, name: string, f: (v: Victim) => boolean) => `${name} ${tally(victims.filter((v) => v.category === c && f(v)))}`;
out.push(
  `run / seen / profiled / complete: wrapped: ${sub("wrapped", "exec", (v) => v.label.includes("exec"))}, ${sub("wrapped", "child", (v) => !v.label.includes("exec"))}; ` +
    `bursts: ${sub("burst", "fresh", (v) => v.newBinary)}, ${sub("burst", "replicas", (v) => !v.newBinary)}`,
);

// kill → profile.
const goKills = victims.filter((v) => wantsProfile(v.category) && primary(v));
const goProfiled = goKills.filter((v) => typeof primary(v)!.profile === "string");
const captureMs = goProfiled.map((v) => primary(v)!.capture_ms as number | null);
out.push(`\n== kill → profile (Go kills with a profile)\ncapture_ms (watch: the kernel's OOM decision → profile on disk): ${distribution(captureMs)}`);
const mtimeLag: number[] = [];
for (const v of goProfiled) {
  const e = primary(v)!;
  if (typeof e.profile !== "string" || v.exitedAt === undefined) continue;
  try {
    mtimeLag.push(statSync(e.profile).mtimeMs - v.exitedAt);
  } catch {
    /* profile gone */
  }
}
out.push(`profile mtime − exit seen by this script (ms): ${distribution(mtimeLag)}`);
out.push(
  table(
    ["victims", "capture_ms n", "min", "p50", "p90", "max"],
    CATEGORIES.filter(wantsProfile).map((c) => {
      const xs = goProfiled
        .filter((v) => v.category === c)
        .map((v) => primary(v)!.capture_ms)
        .filter((x): x is number => typeof x === "number")
        .sort((a, b) => a - b);
      return [LABEL[c], String(xs.length), fmt(xs[0]), fmt(percentile(xs, 50)), fmt(percentile(xs, 90)), fmt(xs[xs.length - 1])];
    }),
  ),
);

// exec → walk live, from the verbose lines.
const ours = walkLines.filter((l) => l.path.startsWith(scratch));
out.push(
  `\n== exec → walk live for new binaries (stderr "walked X ms after its exec"; ${walkLines.length} lines, ${ours.length} for this soak's binaries)\n` +
    `walked ms (ours):   ${distribution(
      ours.map((l) => l.walkedMs),
      1,
    )}\n` +
    `heard of ms (ours): ${distribution(
      ours.map((l) => l.heardMs),
      1,
    )}` +
    (walkLines.length > ours.length
      ? `\nwalked ms (all):    ${distribution(
          walkLines.map((l) => l.walkedMs),
          1,
        )}`
      : ""),
);

// Memory and CPU over time.
const seriesRows = samples.map((s) => [
  fmt(s.t),
  fmt(mib(s.ownRss), 1),
  fmt(mib(s.ownPss), 1),
  fmt(mib(s.bpfRss), 1),
  fmt(mib(s.bpfPss), 1),
  String(s.bpfProcs),
  s.ownCpuPct === undefined ? "-" : fmt(s.ownCpuPct + s.childCpuPct!, 1),
  s.ownCpuPct === undefined ? "-" : fmt(s.ownCpuPct, 1),
  s.childCpuPct === undefined ? "-" : fmt(s.childCpuPct, 1),
  String(s.started),
  String(s.kills),
]);
out.push(
  `\n== watch over time (every ${sampleS} s; CPU as % of one core over the interval; bpftrace CPU includes bpftraces oomprof reaped)\n` +
    table(
      [
        "elapsed s",
        "oomprof RSS MiB",
        "oomprof PSS MiB",
        "bpftrace RSS MiB",
        "bpftrace PSS MiB",
        "bpftraces",
        "CPU %",
        "oomprof CPU %",
        "bpftrace CPU %",
        "victims",
        "kills seen",
      ],
      seriesRows,
    ),
);
const firstS = samples[0];
const lastS = samples[samples.length - 1];
if (firstS && lastS && lastS.at > firstS.at) {
  const secs = (lastS.at - firstS.at) / 1000;
  out.push(
    `CPU over the whole soak: ${fmt(((lastS.ownTicks + lastS.childTicks - firstS.ownTicks - firstS.childTicks) / CLK_TCK / secs) * 100, 1)}% of a core ` +
      `(oomprof ${fmt(((lastS.ownTicks - firstS.ownTicks) / CLK_TCK / secs) * 100, 1)}%, bpftrace ${fmt(((lastS.childTicks - firstS.childTicks) / CLK_TCK / secs) * 100, 1)}%); ` +
      `${bpftracePids.size} bpftrace processes seen over the run (polled every second)`,
  );
}
const later = samples.filter((s) => s.t >= warmupS);
if (later.length >= 2) {
  const q = Math.max(1, Math.floor(later.length / 4));
  // A bpftrace being replaced overlaps its successor: samples with only one are steadier.
  const single = later.filter((s) => s.bpfProcs === 1);
  const memRow = (name: string, f: (s: Sample) => number, from = later) => {
    const k = Math.max(1, Math.floor(from.length / 4));
    const head = from.slice(0, k);
    const tail = from.slice(-k);
    const a = medianOf(head.map(f));
    const b = medianOf(tail.map(f));
    return [
      name,
      fmt(mib(a), 1),
      fmt(mib(b), 1),
      `${b - a >= 0 ? "+" : ""}${fmt(mib(b - a), 1)}`,
      a ? `${b - a >= 0 ? "+" : ""}${fmt(((b - a) / a) * 100, 1)}%` : "-",
      fmt(mib(Math.max(...from.map(f))), 1),
      fmt(
        mib(
          slope(
            from.map((s) => s.t / 60),
            from.map(f),
          ),
        ),
        2,
      ),
    ];
  };
  out.push(
    `\nmemory after warm-up (${later.length} samples from ${warmupS} s; median of the first ${q} vs the last ${q})\n` +
      table(
        ["", "first quarter MiB", "last quarter MiB", "change MiB", "change", "max MiB", "slope MiB/min"],
        [
          memRow("oomprof RSS", (s) => s.ownRss),
          memRow("oomprof PSS", (s) => s.ownPss),
          memRow("bpftrace RSS", (s) => s.bpfRss),
          memRow("bpftrace PSS", (s) => s.bpfPss),
          memRow("total PSS", (s) => s.ownPss + s.bpfPss),
          ...(single.length >= 2 ? [memRow(`bpftrace PSS, one bpftrace (${single.length} samples)`, (s) => s.bpfPss, single)] : []),
        ],
      ),
  );
} else out.push(`\nmemory after warm-up: fewer than 2 samples after ${warmupS} s`);

// What fell short.
const norm = (r: string) =>
  r
    .replaceAll(`${binDir}/`, "")
    .replace(/fresh-\d{4}/g, "fresh-NNNN")
    .replace(/\/tmp\/oomprof-(bin-)?[A-Za-z0-9]+/g, "/tmp/oomprof-$1XXXXXX")
    .replace(/\d+(\.\d+)?/g, "N");
const short = victims.filter((v) => wantsProfile(v.category) && primary(v) && !(typeof primary(v)!.profile === "string" && primary(v)!.complete === true));
out.push(`\n== Go kills not profiled or not complete: ${short.length} of ${goKills.length}`);
if (short.length) {
  const groups = new Map<string, { n: number; cats: Map<Category, number>; example: string }>();
  for (const v of short) {
    const e = primary(v)!;
    const r = typeof e.reason === "string" ? e.reason : typeof e.profile === "string" ? "(incomplete, no reason given)" : "(no profile, no reason given)";
    const key = `${typeof e.profile === "string" ? "incomplete" : "no profile"}: ${norm(r)}`;
    const g = groups.get(key) ?? { n: 0, cats: new Map(), example: r };
    g.n++;
    g.cats.set(v.category, (g.cats.get(v.category) ?? 0) + 1);
    groups.set(key, g);
  }
  for (const [key, g] of [...groups].sort((a, b) => b[1].n - a[1].n)) {
    out.push(
      `  ${g.n}× ${key}\n      (${[...g.cats].map(([c, n]) => `${LABEL[c]} ${n}`).join(", ")}; e.g. "${g.example.replaceAll(`${binDir}/`, "").slice(0, 300)}")`,
    );
  }
  out.push("  each:");
  for (const v of short.slice(0, 40)) {
    const e = primary(v)!;
    out.push(
      `    #${v.id} ${LABEL[v.category]} ${v.label}: lived ${fmt((v.exitedAt! - v.spawnedAt) / 1000, 2)} s (aimed at ${fmt(v.targetS, 2)}), limit ${v.limitMiB} MiB, ` +
        `LEAK_KIB ${v.env.LEAK_KIB ?? "-"}, STEP_SLEEP_US ${v.env.STEP_SLEEP_US ?? "-"}; profile ${e.profile ? "yes" : "no"}, complete ${e.complete}, buckets ${e.buckets}, ` +
        `reason: ${typeof e.reason === "string" ? e.reason.replaceAll(`${binDir}/`, "").slice(0, 200) : "null"}`,
    );
  }
  if (short.length > 40) out.push(`    ... and ${short.length - 40} more`);
}
const unseen = victims.filter((v) => (v.oomKills ?? 0) > 0 && !primary(v));
out.push(`\n== OOM-killed victims with no oom_kill event from watch: ${unseen.length}`);
for (const v of unseen.slice(0, 40))
  out.push(`    #${v.id} ${LABEL[v.category]} ${v.label}: exit ${v.status ?? "?"}, lived ${fmt((v.exitedAt! - v.spawnedAt) / 1000, 2)} s, cgroup ${v.cgName}`);
const notKilled = victims.filter((v) => !(v.oomKills ?? 0));
if (notKilled.length) {
  out.push(`victims not OOM-killed (cgroup counter 0): ${notKilled.length}`);
  for (const v of notKilled.slice(0, 20))
    out.push(
      `    #${v.id} ${LABEL[v.category]} ${v.label}: exit ${v.status ?? "?"}${v.timedOut ? " (timed out)" : ""}${v.stopped ? " (stopped by the interrupt)" : ""}, lived ${fmt((v.exitedAt! - v.spawnedAt) / 1000, 2)} s`,
    );
}

// noprof and non-Go: what the reason says.
const noprofSeen = victims.filter((v) => v.category === "noprof" && primary(v));
const noprofNamed = noprofSeen.filter(
  (v) => primary(v)!.profile === null && typeof primary(v)!.reason === "string" && primary(v)!.reason === `${v.exe}: ${DISABLED_HINT}`,
);
const nongoSeen = victims.filter((v) => v.category === "nongo" && primary(v));
out.push(
  `\nnoprof kills: ${noprofNamed.length} of ${noprofSeen.length} with profile null and the reason naming memory profiling off` +
    `\nnon-Go kills: ${nongoSeen.filter((v) => primary(v)!.profile === null).length} of ${nongoSeen.length} with profile null` +
    (nongoSeen.length ? `; reasons: ${[...new Set(nongoSeen.map((v) => norm(String(primary(v)!.reason))))].slice(0, 3).join(" | ")}` : ""),
);
for (const v of noprofSeen.filter((x) => !noprofNamed.includes(x)).slice(0, 10)) {
  const e = primary(v)!;
  out.push(
    `    #${v.id} noprof: lived ${fmt((v.exitedAt! - v.spawnedAt) / 1000, 2)} s, limit ${v.limitMiB} MiB; profile ${e.profile ? "yes" : "no"}, ` +
      `reason: ${typeof e.reason === "string" ? e.reason.replaceAll(`${binDir}/`, "").slice(0, 300) : "null"}`,
  );
}

// Other events.
const extra = victims.reduce((n, v) => n + v.events.filter((e) => e !== primary(v)).length, 0);
const stillRunning = events.filter((e) => e.event === "oom_kill" && e.still_running === true).length;
const warnings = events.filter((e) => e.event === "warning").map((e) => String(e.message));
// Warnings about binaries elsewhere on the host (another's tests) are counted, not listed.
const elsewhere = (m: string) => !m.includes(scratch) && /(^|\s)\/(?!usr\/bin\/|bin\/)\S+/.test(m);
const warnGroups = new Map<string, number>();
for (const m of warnings) if (!elsewhere(m)) warnGroups.set(norm(m), (warnGroups.get(norm(m)) ?? 0) + 1);
// stderr warnings that are not the text of a warning event.
const eventTexts = new Set(warnings);
const stderrOnly = stderrWarnings.filter((m) => !eventTexts.has(m));
for (const m of stderrOnly) if (!elsewhere(m)) warnGroups.set(`(stderr) ${norm(m)}`, (warnGroups.get(`(stderr) ${norm(m)}`) ?? 0) + 1);
out.push(
  `\nother events: ${foreign.length} kill events for processes not ours (other work on the host); ${extra} further kill events attributed to our victims; ` +
    `${stillRunning} with still_running; ${warnings.length} warning events (${warnings.filter(elsewhere).length} about binaries elsewhere on the host); ` +
    `${stderrLines} lines on watch's stderr, ${stderrWarnings.length} warnings (${stderrOnly.length} not also a warning event, ${stderrOnly.filter(elsewhere).length} of those about binaries elsewhere)`,
);
for (const [m, n] of [...warnGroups].sort((a, b) => b[1] - a[1]).slice(0, 12)) out.push(`  ${n}× ${m.slice(0, 240)}`);
if (watchDied || (watchStatus !== 0 && watchStatus !== undefined)) out.push(`watch's last stderr lines:\n${stderrTail.map((l) => `  ${l}`).join("\n")}`);
if (keep) {
  writeFileSync(join(scratch, "events.ndjson"), events.map((e) => JSON.stringify(e)).join("\n") + "\n");
  out.push(`\nkept: ${scratch} (profiles in out/, events.ndjson)`);
}
console.log(out.join("\n"));

cleanup();
process.exit(interrupted ? 130 : 0);
