/**
 * How many memory-profile buckets `oomprof run` captures at the OOM kill, per bpftrace.
 * For each environment and each N, test/go/manystacks fills its profile with N distinct
 * ~23-frame stacks, prints how many buckets runtime.MemProfile reports, then leaks until
 * the memory cgroup's limit kills it.
 *
 *   bun scripts/bench-capacity.ts [--env host|debian13|all] [--debian13] [--host-n 500,3000]
 *       [--debian13-n 500,3000] [--limit 256M] [--live-ms MS] [--repeat 3] [--timeout 300] [--bin PATH] [--keep]
 *
 * Environments: host (its bpftrace and `go`, oomprof from --bin/$OOMPROF_BIN/dist/bun),
 * and the Debian 13 root (scripts/in-debian13: bpftrace 0.23, Go 1.24, dist/oomprof),
 * included with --debian13 or when the root exists; --env picks explicitly.
 * --live-ms (or $LIVE_MS; default 0) is how long manystacks lives with its stacks before it
 * starts leaking: 0 is the worst case (death right after the stacks appear, before the live
 * mirror can grow the output buffer); a service that built its stacks over hours is closer
 * to a large value.
 * Default N: bpftrace < 0.21 (while walk) 500,3000,10000,11000; newer (for-map walk)
 * 500,3000,11000,40000,60000,100000.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { join, resolve } from "node:path";
import {
  BENCH_DIR,
  IN_DEBIAN13,
  TRIXIE_ROOT,
  bpftraceVersion,
  buildDebian13Go,
  buildHostGo,
  describeArgv,
  distBinary,
  exitedWithin,
  fmt,
  fmtStats,
  intFlag,
  intList,
  killPid,
  oomprofArgv,
  parseFlags,
  readEvents,
  sleep,
  table,
  wallMs,
} from "./bench-lib.ts";

const { flags } = parseFlags(process.argv.slice(2), ["debian13", "keep"]);
if (flags.has("help")) {
  console.log(
    "usage: scripts/bench-capacity [--env host|debian13|all] [--debian13] [--host-n LIST] [--debian13-n LIST] [--limit SIZE] [--live-ms MS] [--repeat R] [--timeout S] [--bin PATH] [--keep]",
  );
  process.exit(0);
}
const limit = flags.get("limit") ?? "256M";
const repeat = intFlag(flags.get("repeat") ?? process.env.BENCH_REPEAT, 3, "--repeat");
const timeoutS = intFlag(flags.get("timeout"), 300, "--timeout");
const keep = flags.has("keep");
/** manystacks' LIVE_MS: how long it lives with its stacks before leaking (0: leak at once). */
const liveMs = flags.has("live-ms") ? Number(flags.get("live-ms")) : Number(process.env.LIVE_MS ?? 0);
if (!Number.isInteger(liveMs) || liveMs < 0) throw new Error(`--live-ms: a number of milliseconds, not ${flags.get("live-ms")}`);
const envFlag = flags.get("env");
if (envFlag && !["host", "debian13", "all"].includes(envFlag)) throw new Error(`--env: host, debian13 or all, not ${envFlag}`);
const rootExists = existsSync(join(TRIXIE_ROOT, "usr/bin/bpftrace"));
const envs: Array<"host" | "debian13"> =
  envFlag === "host"
    ? ["host"]
    : envFlag === "debian13"
      ? ["debian13"]
      : envFlag === "all" || flags.has("debian13") || rootExists
        ? ["host", "debian13"]
        : ["host"];
if (envs.includes("debian13") && !rootExists) {
  console.error(`no Debian 13 root at ${TRIXIE_ROOT}: run scripts/debian13-root first`);
  process.exit(1);
}

const OLD_N = [500, 3000, 10000, 11000];
const NEW_N = [500, 3000, 11000, 40000, 60000, 100000];

function isNewWalk(version: string): boolean {
  const [maj, min] = version.split(".").map(Number);
  return maj! > 0 || min! >= 21;
}

interface Sample {
  n: number;
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
}

mkdirSync(BENCH_DIR, { recursive: true });

async function runOne(env: "host" | "debian13", oomprof: string[], bin: string, n: number): Promise<Sample> {
  const dir = mkdtempSync(join(BENCH_DIR, `cap-${env}-${n}-`));
  const evPath = join(dir, "events.ndjson");
  const errPath = join(dir, "stderr.txt");
  const inner = [...oomprof, "run", "--limit", limit, "--out", join(dir, "out"), "--events", evPath, "--", bin];
  // STACKS reaches the program through oomprof (and in-debian13, which keeps the environment).
  const argv = ["timeout", "-k", "10", String(timeoutS), ...(env === "debian13" ? [IN_DEBIAN13, "--"] : []), ...inner];
  const t0 = wallMs();
  const p = Bun.spawn(argv, {
    stdin: "ignore",
    stdout: Bun.file(join(dir, "stdout.txt")),
    stderr: Bun.file(errPath),
    env: { ...process.env, STACKS: String(n), LIVE_MS: String(liveMs) },
  });
  const status = (await exitedWithin(p, (timeoutS + 20) * 1000)) ?? (killPid(p.pid, "SIGKILL"), undefined);
  const s: Sample = { n, status, wallMs: wallMs() - t0 };
  const stderr = existsSync(errPath) ? readFileSync(errPath, "utf8") : "";
  const m = /manystacks: stacks=(\d+) buckets=(\d+)/.exec(stderr);
  if (m) s.present = Number(m[2]);
  const events = readEvents(evPath);
  const armed = events.find((e) => e.event === "armed");
  const kill = events.find((e) => e.event === "oom_kill" || e.event === "kill");
  if (armed) {
    s.armedMs = armed.armed_ms as number;
    s.walk = armed.walk as string;
  }
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
  for (const w of events.filter((e) => e.event === "warning")) problems.push(`warning event: ${w.message}`);
  const warnLines = stderr.split("\n").filter((l) => /^oomprof: (warning|internal error)|^oomprof: .*(could not|error)/i.test(l));
  for (const l of warnLines) problems.push(l.trim());
  if (problems.length) {
    s.problem = `${problems.join("; ")} (kept ${dir})`;
  } else if (!keep) rmSync(dir, { recursive: true, force: true });
  return s;
}

const output: string[] = [];
for (const env of envs) {
  const inRoot = env === "debian13";
  const bt = bpftraceVersion(inRoot);
  const lists = { host: flags.get("host-n"), debian13: flags.get("debian13-n") };
  const ns = intList(lists[env], isNewWalk(bt) ? NEW_N : OLD_N, `--${env}-n`);
  const prog = inRoot ? buildDebian13Go("manystacks") : buildHostGo("manystacks");
  // In the root: a compiled oomprof (bun is not there): --bin/$OOMPROF_BIN if given (it must
  // be under the repository, which is what the root sees), else a copy of dist/oomprof.
  const explicit = flags.get("bin") ?? process.env.OOMPROF_BIN;
  const oomprof = inRoot ? [explicit ? resolve(explicit) : distBinary()] : oomprofArgv(flags.get("bin"));
  const title = `${env}: bpftrace ${bt}, ${prog.goVersion}, oomprof run --limit ${limit}, LIVE_MS=${liveMs}, ${repeat} run(s) per N`;
  console.log(`== ${title}`);
  console.log(
    `command: STACKS=N LIVE_MS=${liveMs} timeout -k 10 ${timeoutS} ${inRoot ? "scripts/in-debian13 -- " : ""}${describeArgv(oomprof)} run --limit ${limit} --out DIR/out --events DIR/events.ndjson -- ${describeArgv([prog.path])}`,
  );
  const rows: string[][] = [];
  const problems: string[] = [];
  for (const n of ns) {
    const samples: Sample[] = [];
    for (let r = 0; r < repeat; r++) {
      const s = await runOne(env, oomprof, prog.path, n);
      samples.push(s);
      console.log(
        `  N=${n} run ${r + 1}: present=${s.present ?? "-"} captured=${s.captured ?? "-"} complete=${s.complete ?? "-"} lost=${s.lost ?? "-"} armed_ms=${s.armedMs ?? "-"} capture_ms=${s.captureMs ?? "-"} status=${s.status ?? "timeout"} wall=${fmt(s.wallMs)}ms`,
      );
      if (s.problem) {
        console.log(`    problem: ${s.problem}`);
        problems.push(`N=${n} run ${r + 1}: ${s.problem}`);
      }
      await sleep(300);
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
  output.push(`== ${title}\n${t}${problems.length ? `\nproblems:\n${problems.map((p) => `  ${p}`).join("\n")}` : ""}`);
}
console.log(`\n${output.join("\n\n")}`);
console.log("\na/b/c: the distinct values over the runs (each run is listed above the tables).");
console.log(
  "present: buckets runtime.MemProfile reported before leaking; captured: the oom_kill event's buckets (also counts the leak's own bucket and any runtime allocation after the count).",
);
console.log("timings: median [min–max] over the runs; armed_ms = oomprof start → probes attached; capture_ms = first OOM record → profile on disk.");

// Nothing of ours is left running; do not wait for stray handles.
process.exit(process.exitCode ?? 0);
