/**
 * How many memory-profile buckets `oomprof run` captures at the OOM kill, per bpftrace.
 * For each environment and each N, test/go/manystacks fills its profile with N distinct
 * ~23-frame stacks, prints how many buckets runtime.MemProfile reports, then leaks until
 * the memory cgroup's limit kills it.
 *
 *   bun scripts/bench-capacity.ts [--env host|debian13|sid|all] [--debian13] [--mode run|watch|both]
 *       [--host-n 500,3000] [--debian13-n LIST] [--sid-n LIST] [--limit 256M] [--live-ms MS]
 *       [--repeat 3] [--gap-ms 300] [--timeout 300] [--bin PATH] [--keep]
 *
 * Environments: host (its bpftrace and `go`, oomprof from --bin/$OOMPROF_BIN/dist/bun),
 * the Debian 13 root (bpftrace 0.23, Go 1.24, dist/oomprof; included with --debian13 or
 * when the root exists) and the Debian unstable root (bpftrace 0.27, Go 1.27; with
 * --env sid or all), both from scripts/debian-root, run through scripts/in-debian.
 * --live-ms (or $LIVE_MS; default 0) is how long manystacks lives with its stacks before it
 * starts leaking: 0 is the worst case (death right after the stacks appear, before the live
 * mirror can grow the output buffer); a service that built its stacks over hours is closer
 * to a large value.
 * Default N: bpftrace < 0.21 (while walk) 500,3000,10000,11000; newer (for-map walk)
 * 500,3000,11000,40000,60000,100000.
 * --gap-ms (default 300) is the pause between victims: watch's first capture after a long
 * quiet spell is the one a real host sees, and a large gap measures it.
 * --mode run|watch|both (default both): `oomprof run --limit` per victim, and/or one
 * `oomprof watch` per environment that sees each victim started in a memory cgroup of
 * --limit. "kill → on disk" is oomprof's --verbose timeline: from the victim's own
 * thread taking its SIGKILL (the kernel's clock) to the profile written. The last lines
 * compare it with the existing eBPF tool's figures that issue 15 measured on this kind
 * of machine (parca-dev/oomprof, kernel kill line to profile mtime, bpftrace 0.17 host).
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { join, resolve } from "node:path";
import {
  BENCH_DIR,
  DEBIAN_ROOTS,
  inDebian,
  bpftraceVersion,
  buildDebianGo,
  buildHostGo,
  describeArgv,
  distBinary,
  exitedWithin,
  fmt,
  fmtStats,
  intFlag,
  intList,
  killPid,
  median,
  oomprofArgv,
  parseFlags,
  readEvents,
  sleep,
  table,
  wallMs,
} from "./bench-lib.ts";

import { createMemoryCgroup } from "../src/cgroup/memory-cgroup.ts";
import { SizeSchema } from "../src/cli/sizes.ts";

const { flags } = parseFlags(process.argv.slice(2), ["debian13", "keep"]);
if (flags.has("help")) {
  console.log(
    "usage: scripts/bench-capacity [--env host|debian13|sid|all] [--debian13] [--mode run|watch|both] [--host-n LIST] [--debian13-n LIST] [--sid-n LIST] [--limit SIZE] [--live-ms MS] [--repeat R] [--gap-ms MS] [--timeout S] [--bin PATH] [--keep]",
  );
  process.exit(0);
}
const limit = flags.get("limit") ?? "256M";
const repeat = intFlag(flags.get("repeat") ?? process.env.BENCH_REPEAT, 3, "--repeat");
const timeoutS = intFlag(flags.get("timeout"), 300, "--timeout");
const keep = flags.has("keep");
const gapMs = intFlag(flags.get("gap-ms"), 300, "--gap-ms");
/** manystacks' LIVE_MS: how long it lives with its stacks before leaking (0: leak at once). */
const liveMs = flags.has("live-ms") ? Number(flags.get("live-ms")) : Number(process.env.LIVE_MS ?? 0);
if (!Number.isInteger(liveMs) || liveMs < 0) throw new Error(`--live-ms: a number of milliseconds, not ${flags.get("live-ms")}`);
const modeFlag = flags.get("mode") ?? "both";
if (!["run", "watch", "both"].includes(modeFlag)) throw new Error(`--mode: run, watch or both, not ${modeFlag}`);
const modes: Array<"run" | "watch"> = modeFlag === "both" ? ["run", "watch"] : [modeFlag as "run" | "watch"];
/** The existing eBPF tool's kill → profile on disk, ms, by bucket count (issue 15's table). */
const EXISTING_TOOL_MS: Record<number, number> = { 500: 24, 3000: 50, 11000: 112, 40000: 286 };
/** Where oomprof runs: the host (its bpftrace and Go), or a Debian root (scripts/debian-root). */
type Env = "host" | "debian13" | "sid";
const RELEASE = { debian13: "trixie", sid: "sid" } as const;
const envFlag = flags.get("env");
if (envFlag && !["host", "debian13", "sid", "all"].includes(envFlag)) throw new Error(`--env: host, debian13, sid or all, not ${envFlag}`);
const rootExists = (env: "debian13" | "sid") => existsSync(join(DEBIAN_ROOTS[RELEASE[env]], "usr/bin/bpftrace"));
const envs: Env[] =
  envFlag === "all"
    ? ["host", "debian13", "sid"]
    : envFlag
      ? [envFlag as Env]
      : ["host", ...(flags.has("debian13") || rootExists("debian13") ? (["debian13"] as const) : [])];
for (const env of envs) {
  if (env !== "host" && !rootExists(env)) {
    console.error(`no ${RELEASE[env]} root at ${DEBIAN_ROOTS[RELEASE[env]]}: run scripts/debian-root ${RELEASE[env]} first`);
    process.exit(1);
  }
}
/** The argv prefix that runs a command in env. */
const inEnv = (env: Env): string[] => (env === "host" ? [] : inDebian(RELEASE[env]));

const OLD_N = [500, 3000, 10000, 11000];
const NEW_N = [500, 3000, 11000, 40000, 60000, 100000];

function isNewWalk(version: string): boolean {
  const [maj, min] = version.split(".").map(Number);
  return maj! > 0 || min! >= 21;
}

interface Sample {
  n: number;
  mode: "run" | "watch";
  present?: number;
  captured?: number;
  complete?: boolean;
  lost?: number;
  armedMs?: number;
  captureMs?: number | null;
  wallMs: number;
  status: number | undefined;
  walk?: string;
  problem?: string;
  /** From oomprof's `--verbose` "capture of pid" line: ms since the kill (or the first record), and each step's own ms. */
  timeline?: Record<string, number>;
}

/** The phases of the timeline, in order: points since the kill, then the steps of building the profile. */
const TIMELINE = ["first record", "last record", "reported", "on disk"];
const STEPS = ["samples", "symbolize+pprof", "encode", "gzip", "write", "sites", "base"];

/** Parses `capture of pid N: kill → first record 3 ms, → last record 40 ms, ... (samples 2.0, ...)`. */
function parseTimeline(stderr: string, pid?: number): Record<string, number> | undefined {
  const line = stderr.split("\n").find((l) => l.includes(pid === undefined ? "capture of pid" : `capture of pid ${pid}:`));
  if (!line) return undefined;
  const t: Record<string, number> = {};
  for (const name of TIMELINE) {
    const m = new RegExp(`${name.replace("+", "\\+")} (\\d+) ms`).exec(line);
    if (m) t[name] = Number(m[1]);
  }
  for (const name of STEPS) {
    const m = new RegExp(`${name.replace("+", "\\+")} ([\\d.]+)`).exec(line.slice(line.indexOf("(")));
    if (m) t[name] = Number(m[1]);
  }
  return t;
}

mkdirSync(BENCH_DIR, { recursive: true });

async function runOne(env: Env, oomprof: string[], bin: string, n: number): Promise<Sample> {
  const dir = mkdtempSync(join(BENCH_DIR, `cap-${env}-${n}-`));
  const evPath = join(dir, "events.ndjson");
  const errPath = join(dir, "stderr.txt");
  const inner = [...oomprof, "run", "--verbose", "--limit", limit, "--out", join(dir, "out"), "--events", evPath, "--", bin];
  // STACKS reaches the program through oomprof (and in-debian, which keeps the environment).
  const argv = ["timeout", "-k", "10", String(timeoutS), ...inEnv(env), ...inner];
  const t0 = wallMs();
  const p = Bun.spawn(argv, {
    stdin: "ignore",
    stdout: Bun.file(join(dir, "stdout.txt")),
    stderr: Bun.file(errPath),
    env: { ...process.env, STACKS: String(n), LIVE_MS: String(liveMs) },
  });
  const status = (await exitedWithin(p, (timeoutS + 20) * 1000)) ?? (killPid(p.pid, "SIGKILL"), undefined);
  const s: Sample = { n, mode: "run", status, wallMs: wallMs() - t0 };
  const stderr = existsSync(errPath) ? readFileSync(errPath, "utf8") : "";
  const events = readEvents(evPath);
  const armed = events.find((e) => e.event === "armed");
  if (armed) {
    s.armedMs = armed.armed_ms as number;
    s.walk = armed.walk as string;
  }
  return judge(s, { victimStderr: stderr, oomprofStderr: stderr, events, dir });
}

/** Fills in what the victim, oomprof's events and its --verbose timeline say of one kill, and what went wrong. */
function judge(s: Sample, r: { victimStderr: string; oomprofStderr: string; events: ReturnType<typeof readEvents>; dir: string; pid?: number }): Sample {
  const m = /manystacks: stacks=(\d+) buckets=(\d+)/.exec(r.victimStderr);
  if (m) s.present = Number(m[2]);
  s.timeline = parseTimeline(r.oomprofStderr, r.pid);
  const { events, dir } = r;
  const kill = events.find((e) => (e.event === "oom_kill" || e.event === "kill") && (r.pid === undefined || e.pid === r.pid));
  const status = s.status;
  const problems: string[] = [];
  if (kill) {
    s.captured = kill.buckets as number;
    s.complete = kill.complete as boolean;
    s.lost = kill.lost_events as number;
    s.captureMs = kill.capture_ms as number | null;
    if (!kill.complete || kill.reason) problems.push(`reason: ${kill.reason}`);
    if ((kill.lost_events as number) > 0) problems.push(`lost_events ${kill.lost_events}`);
  } else problems.push("no oom_kill event");
  if (!m) problems.push(`no "manystacks: ... buckets=" line (OOM before the leak phase? raise --limit)`);
  if (status !== 137) problems.push(`exit status ${status ?? "timeout"}`);
  // watch's warnings may be about any process on the host: only run's count.
  if (r.pid === undefined) for (const w of events.filter((e) => e.event === "warning")) problems.push(`warning event: ${w.message}`);
  // watch's stderr serves every victim: only its lines about this one count.
  const warnLines = r.oomprofStderr
    .split("\n")
    .filter((l) => /^oomprof: (warning|internal error)|^oomprof: .*(could not|error)/i.test(l) && (r.pid === undefined || l.includes(`pid ${r.pid}`)));
  for (const l of warnLines) problems.push(l.trim());
  if (problems.length) {
    s.problem = `${problems.join("; ")} (kept ${dir})`;
  } else if (!keep) rmSync(dir, { recursive: true, force: true });
  return s;
}

/** One `oomprof watch` for an environment's victims, ready when this resolves. */
async function startWatch(env: Env, oomprof: string[]) {
  const dir = mkdtempSync(join(BENCH_DIR, `watch-${env}-`));
  const evPath = join(dir, "events.ndjson");
  const errPath = join(dir, "stderr.txt");
  const inner = [...oomprof, "watch", "--verbose", "--out", join(dir, "out"), "--events", evPath];
  const argv = [...inEnv(env), ...inner];
  const proc = Bun.spawn(argv, { stdin: "ignore", stdout: "ignore", stderr: Bun.file(errPath) });
  const deadline = wallMs() + 120_000;
  while (!readEvents(evPath).some((e) => e.event === "ready")) {
    if (wallMs() > deadline || proc.exitCode !== null) throw new Error(`watch did not get ready (see ${errPath})`);
    await sleep(100);
  }
  return { proc, dir, evPath, errPath };
}

/** One victim under a running watch: started in a memory cgroup of --limit, left to the OOM killer. */
async function watchOne(w: Awaited<ReturnType<typeof startWatch>>, bin: string, n: number): Promise<Sample> {
  const cg = createMemoryCgroup(SizeSchema.parse(limit) as number);
  const dir = mkdtempSync(join(BENCH_DIR, `capw-${n}-`));
  const victimErr = join(dir, "victim-stderr.txt");
  const t0 = wallMs();
  try {
    // The shell joins the cgroup and execs the victim: p.pid is the victim's pid.
    const p = Bun.spawn(["/bin/sh", "-c", 'echo $$ > "$0" && exec "$@"', cg.procsFile, bin], {
      stdin: "ignore",
      stdout: "ignore",
      stderr: Bun.file(victimErr),
      env: { ...process.env, STACKS: String(n), LIVE_MS: String(liveMs) },
    });
    const status = (await exitedWithin(p, (timeoutS + 20) * 1000)) ?? (killPid(p.pid, "SIGKILL"), undefined);
    const s: Sample = { n, mode: "watch", status, wallMs: 0 };
    // watch reports on its own schedule: wait for this victim's event.
    const deadline = wallMs() + 60_000;
    while (wallMs() < deadline && !readEvents(w.evPath).some((e) => (e.event === "oom_kill" || e.event === "kill") && e.pid === p.pid)) await sleep(50);
    await sleep(100);
    s.wallMs = wallMs() - t0;
    return judge(s, {
      victimStderr: existsSync(victimErr) ? readFileSync(victimErr, "utf8") : "",
      oomprofStderr: readFileSync(w.errPath, "utf8"),
      events: readEvents(w.evPath),
      dir,
      pid: p.pid,
    });
  } finally {
    cg.remove();
  }
}

const output: string[] = [];
/** kill → on disk medians, for the comparison with the existing tool. */
const onDisk: Array<{ env: string; bpftrace: string; mode: string; n: number; ms: number }> = [];
for (const env of envs) {
  const inRoot = env !== "host";
  const bt = bpftraceVersion(inRoot ? RELEASE[env] : undefined);
  const lists = { host: flags.get("host-n"), debian13: flags.get("debian13-n"), sid: flags.get("sid-n") };
  const ns = intList(lists[env], isNewWalk(bt) ? NEW_N : OLD_N, `--${env}-n`);
  const prog = inRoot ? buildDebianGo(RELEASE[env], "manystacks") : buildHostGo("manystacks");
  // In the root: a compiled oomprof (bun is not there): --bin/$OOMPROF_BIN if given (it must
  // be under the repository, which is what the root sees), else a copy of dist/oomprof.
  const explicit = flags.get("bin") ?? process.env.OOMPROF_BIN;
  const oomprof = inRoot ? [explicit ? resolve(explicit) : distBinary()] : oomprofArgv(flags.get("bin"));
  for (const mode of modes) {
    const title = `${env}: bpftrace ${bt}, ${prog.goVersion}, oomprof ${mode === "run" ? `run --limit ${limit}` : `watch, victims in memory cgroups of ${limit}`}, LIVE_MS=${liveMs}, ${repeat} run(s) per N`;
    console.log(`== ${title}`);
    console.log(
      mode === "run"
        ? `command: STACKS=N LIVE_MS=${liveMs} timeout -k 10 ${timeoutS} ${inRoot ? `scripts/in-debian --release ${RELEASE[env]} -- ` : ""}${describeArgv(oomprof)} run --limit ${limit} --out DIR/out --events DIR/events.ndjson -- ${describeArgv([prog.path])}`
        : `command: ${inRoot ? `scripts/in-debian --release ${RELEASE[env]} -- ` : ""}${describeArgv(oomprof)} watch --verbose --out DIR/out --events DIR/events.ndjson; victims: STACKS=N LIVE_MS=${liveMs} ${describeArgv([prog.path])} in a memory cgroup`,
    );
    const watch = mode === "watch" ? await startWatch(env, oomprof) : undefined;
    const rows: string[][] = [];
    const problems: string[] = [];
    const allSamples: Sample[] = [];
    for (const n of ns) {
      const samples: Sample[] = [];
      for (let r = 0; r < repeat; r++) {
        const s = watch ? await watchOne(watch, prog.path, n) : await runOne(env, oomprof, prog.path, n);
        samples.push(s);
        allSamples.push(s);
        console.log(
          `  N=${n} run ${r + 1}: present=${s.present ?? "-"} captured=${s.captured ?? "-"} complete=${s.complete ?? "-"} lost=${s.lost ?? "-"} armed_ms=${s.armedMs ?? "-"} capture_ms=${s.captureMs ?? "-"} status=${s.status ?? "timeout"} wall=${fmt(s.wallMs)}ms`,
        );
        if (s.problem) {
          console.log(`    problem: ${s.problem}`);
          problems.push(`N=${n} run ${r + 1}: ${s.problem}`);
        }
        await sleep(gapMs);
      }
      const uniq = (xs: Array<string | number | boolean | undefined>) => [...new Set(xs.map((x) => String(x ?? "-")))].join("/");
      rows.push([
        String(n),
        uniq(samples.map((s) => s.present)),
        uniq(samples.map((s) => s.captured)),
        `${samples.filter((s) => s.complete).length}/${samples.length}`,
        uniq(samples.map((s) => s.lost)),
        fmtStats(samples.map((s) => s.armedMs)),
        fmtStats(samples.map((s) => s.captureMs)),
        fmtStats(samples.map((s) => s.wallMs)),
        uniq(samples.map((s) => s.walk)),
      ]);
    }
    const t = table(["N", "present", "captured", "complete", "lost", "armed_ms", "capture_ms (kill→profile)", "wall ms", "walk"], rows);
    // Where the time goes: the same runs' `--verbose` timelines, medians per N.
    const phaseRows = ns.map((n) => {
      const lines = allSamples.filter((s) => s.n === n && s.timeline).map((s) => s.timeline!);
      const med = (name: string) => fmtStats(lines.map((l) => l[name]));
      return [String(n), ...TIMELINE.map(med), ...STEPS.map(med)];
    });
    const phases = table(["N", ...TIMELINE.map((p) => `kill→${p} ms`), ...STEPS.map((p) => `${p} ms`)], phaseRows);
    for (const n of ns) {
      const times = allSamples.filter((s) => s.n === n && s.complete && s.timeline?.["on disk"] !== undefined).map((s) => s.timeline!["on disk"]!);
      if (times.length) onDisk.push({ env, bpftrace: bt, mode, n, ms: median(times) });
    }
    if (watch) {
      watch.proc.kill("SIGINT");
      await exitedWithin(watch.proc, 15_000);
      if (!keep && !problems.length) rmSync(watch.dir, { recursive: true, force: true });
    }
    output.push(
      `== ${title}\n${t}\n\nwhere the time goes (from oomprof --verbose, same runs):\n${phases}${problems.length ? `\nproblems:\n${problems.map((p) => `  ${p}`).join("\n")}` : ""}`,
    );
  }
}
console.log(`\n${output.join("\n\n")}`);
console.log("\na/b/c: the distinct values over the runs (each run is listed above the tables).");
console.log(
  "present: buckets runtime.MemProfile reported before leaking; captured: the oom_kill event's buckets (also counts the leak's own bucket and any runtime allocation after the count).",
);
console.log("timings: median [min–max] over the runs; armed_ms = oomprof start → probes attached; capture_ms = first OOM record → profile on disk.");
// Last: against the existing tool, as issue 15 asks (its figures, not measured here).
const compared = onDisk.filter((d) => EXISTING_TOOL_MS[d.n] !== undefined);
if (compared.length) {
  console.log("\nkill → profile on disk, median, against the existing eBPF tool (parca-dev/oomprof on bpftrace 0.17, issue 15's figures):");
  for (const d of compared) {
    const theirs = EXISTING_TOOL_MS[d.n]!;
    console.log(`  ${d.env} (bpftrace ${d.bpftrace}) ${d.mode}, N=${d.n}: ${Math.round(d.ms)} ms vs ${theirs} ms = ${(d.ms / theirs).toFixed(2)}×`);
  }
}

// Nothing of ours is left running; do not wait for stray handles.
process.exit(process.exitCode ?? 0);
