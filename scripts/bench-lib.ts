/**
 * Shared helpers for scripts/bench-run.ts, bench-capacity.ts and bench-overhead.ts:
 * finding the oomprof under test, building the Go test programs, bounded process
 * runs (every child runs under coreutils `timeout`), NDJSON events, /proc readings,
 * and small statistics and tables.
 */
import { chmodSync, copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, statSync } from "node:fs";
import { dirname, join, resolve } from "node:path";

export const ROOT = resolve(import.meta.dir, "..");
export const BENCH_DIR = join(ROOT, ".cache", "bench");
export const IN_DEBIAN13 = join(ROOT, "scripts", "in-debian13");
export const TRIXIE_ROOT = process.env.OOMPROF_TRIXIE_ROOT ?? "/var/cache/oomprof/trixie";

/** Wall-clock time in ms with sub-millisecond resolution. */
export function wallMs(): number {
  return performance.timeOrigin + performance.now();
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

// --- flags ------------------------------------------------------------------------

/** Minimal flag parsing: `--name value`, `--name=value`, and boolean `--name`. */
export function parseFlags(argv: string[], booleans: string[] = []): { flags: Map<string, string>; rest: string[] } {
  const flags = new Map<string, string>();
  const rest: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === "--") {
      rest.push(...argv.slice(i + 1));
      break;
    }
    if (a === "-h" || a === "--help") {
      flags.set("help", "1");
      continue;
    }
    if (!a.startsWith("--")) {
      rest.push(a);
      continue;
    }
    const eq = a.indexOf("=");
    if (eq >= 0) flags.set(a.slice(2, eq), a.slice(eq + 1));
    else if (booleans.includes(a.slice(2))) flags.set(a.slice(2), "1");
    else {
      if (i + 1 >= argv.length) die(`${a} needs a value`);
      flags.set(a.slice(2), argv[++i]!);
    }
  }
  return { flags, rest };
}

export function die(msg: string): never {
  process.stderr.write(`${process.argv[1]?.split("/").pop() ?? "bench"}: ${msg}\n`);
  process.exit(2);
}

export function intFlag(v: string | undefined, def: number, name: string): number {
  if (v === undefined || v === "") return def;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) die(`${name}: expected a positive integer, got ${JSON.stringify(v)}`);
  return n;
}

export function intList(v: string | undefined, def: number[], name: string): number[] {
  if (v === undefined || v === "") return def;
  return v.split(",").map((x) => intFlag(x.trim(), 0, name));
}

// --- the oomprof under test ---------------------------------------------------------

/**
 * $OOMPROF_BIN or --bin, else dist/oomprof if present, else the sources under bun.
 * Warns when dist/oomprof is older than a source file (rebuild with `bun run build`).
 */
export function oomprofArgv(bin?: string): string[] {
  const explicit = bin ?? process.env.OOMPROF_BIN;
  if (explicit) return [resolve(explicit)];
  const dist = join(ROOT, "dist", "oomprof");
  if (existsSync(dist)) return [distBinary()];
  return [process.execPath, join(ROOT, "src", "cli", "main.ts")];
}

let snapshot: string | undefined;

/**
 * dist/oomprof, copied once per benchmark to .cache/bench/oomprof-<mtime>/oomprof: others may
 * rebuild dist/ while a benchmark runs, and every run must use the same binary (and
 * never exec a half-written one). Inside the repository, so the Debian 13 root sees it.
 * Warns when dist/oomprof is older than a source file (rebuild with `bun run build`).
 */
export function distBinary(): string {
  if (snapshot) return snapshot;
  const dist = join(ROOT, "dist", "oomprof");
  if (!existsSync(dist)) die(`${dist} is missing: run \`bun run build\` (or pass --build)`);
  const st = statSync(dist);
  if (newestSource() > st.mtimeMs) process.stderr.write(`warning: ${dist} is older than src/ or probes/ (run \`bun run build\`, or pass --build)\n`);
  mkdirSync(BENCH_DIR, { recursive: true });
  // Named oomprof (in a directory named for the build) so its comm stays "oomprof".
  const copy = join(BENCH_DIR, `oomprof-${Math.round(st.mtimeMs)}`, "oomprof");
  mkdirSync(dirname(copy), { recursive: true });
  if (!existsSync(copy) || statSync(copy).size !== st.size) {
    copyFileSync(dist, `${copy}.tmp`);
    chmodSync(`${copy}.tmp`, 0o755);
    renameSync(`${copy}.tmp`, copy);
  }
  process.stderr.write(`oomprof under test: ${copy} (copy of dist/oomprof built ${new Date(st.mtimeMs).toISOString()})\n`);
  return (snapshot = copy);
}

function newestSource(): number {
  let newest = 0;
  const walk = (dir: string) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else newest = Math.max(newest, statSync(p).mtimeMs);
    }
  };
  for (const d of ["src", "probes"]) if (existsSync(join(ROOT, d))) walk(join(ROOT, d));
  return newest;
}

export function describeArgv(argv: string[]): string {
  return argv.map((a) => a.replace(ROOT + "/", "")).join(" ");
}

// --- Go programs ---------------------------------------------------------------------

/** Builds test/go/<name> with the host's Go (or $OOMPROF_GO) into .cache/bench/host/<name>. */
export function buildHostGo(name: string, go = process.env.OOMPROF_GO ?? "go"): { path: string; goVersion: string } {
  const outDir = join(BENCH_DIR, "host");
  mkdirSync(outDir, { recursive: true });
  const out = join(outDir, name);
  const p = Bun.spawnSync(["timeout", "-k", "5", "300", go, "build", "-o", out, "."], {
    cwd: join(ROOT, "test", "go", name),
    env: {
      ...process.env,
      GOFLAGS: "-mod=mod -buildvcs=false",
      GOCACHE: join(ROOT, ".cache", "gocache"),
      GOPATH: join(ROOT, ".cache", "gopath"),
      CGO_ENABLED: "0",
    },
    stderr: "pipe",
  });
  if (p.exitCode !== 0) die(`go build ${name} failed: ${p.stderr.toString()}`);
  const v = Bun.spawnSync(["timeout", "30", go, "version"]).stdout.toString().trim().split(" ")[2] ?? "?";
  return { path: out, goVersion: v };
}

/** The Debian roots scripts/debian-root builds: trixie (Debian 13) and sid (unstable). */
export type DebianRelease = "trixie" | "sid";
export const SID_ROOT = process.env.OOMPROF_SID_ROOT ?? "/var/cache/oomprof/sid";
export const DEBIAN_ROOTS: Record<DebianRelease, string> = { trixie: TRIXIE_ROOT, sid: SID_ROOT };

/** Runs the rest of an argv inside a Debian root (scripts/in-debian). */
export function inDebian(release: DebianRelease): string[] {
  return [join(ROOT, "scripts", "in-debian"), "--release", release, "--"];
}

/** Builds test/go/<name> with a Debian root's Go into .cache/bench/<dir>/<name>. */
export function buildDebianGo(release: DebianRelease, name: string): { path: string; goVersion: string } {
  // trixie's builds keep the directory they always had.
  const tag = release === "trixie" ? "debian13" : release;
  const outDir = join(BENCH_DIR, tag);
  mkdirSync(outDir, { recursive: true });
  const out = join(outDir, name);
  const p = Bun.spawnSync(
    [
      "timeout",
      "-k",
      "5",
      "600",
      ...inDebian(release),
      "env",
      `GOCACHE=${join(ROOT, ".cache", `gocache-${tag}`)}`,
      `GOPATH=${join(ROOT, ".cache", `gopath-${tag}`)}`,
      "CGO_ENABLED=0",
      "go",
      "build",
      "-o",
      out,
      ".",
    ],
    { cwd: join(ROOT, "test", "go", name), stderr: "pipe", stdout: "pipe" },
  );
  if (p.exitCode !== 0) die(`go build ${name} in the ${release} root failed: ${p.stderr.toString()}${p.stdout.toString()}`);
  const v =
    Bun.spawnSync(["timeout", "60", ...inDebian(release), "go", "version"], { stderr: "pipe" })
      .stdout.toString()
      .trim()
      .split(" ")[2] ?? "?";
  return { path: out, goVersion: v };
}

/** Builds test/go/<name> with the Debian 13 root's Go into .cache/bench/debian13/<name>. */
export function buildDebian13Go(name: string): { path: string; goVersion: string } {
  return buildDebianGo("trixie", name);
}

/** bpftrace's version on the host, or in a Debian root. */
export function bpftraceVersion(release?: DebianRelease): string {
  const argv = release
    ? ["timeout", "60", ...inDebian(release), "bpftrace", "--version"]
    : ["timeout", "30", process.env.OOMPROF_BPFTRACE ?? "bpftrace", "--version"];
  const out = Bun.spawnSync(argv, { stderr: "pipe" }).stdout.toString().trim();
  return out.replace(/^bpftrace v?/, "") || "?";
}

// --- events --------------------------------------------------------------------------

export type Ev = Record<string, unknown> & { event: string; time: string };

/** Every complete NDJSON line of an events file (a line still being written is skipped). */
export function readEvents(path: string): Ev[] {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch {
    return [];
  }
  const out: Ev[] = [];
  for (const line of text.split("\n")) {
    if (!line.trim()) continue;
    try {
      out.push(JSON.parse(line) as Ev);
    } catch {
      /* partial line */
    }
  }
  return out;
}

export function eventTimeMs(e: Ev | undefined): number | undefined {
  return e ? Date.parse(e.time) : undefined;
}

// --- /proc -----------------------------------------------------------------------------

export const CLK_TCK = Number(Bun.spawnSync(["getconf", "CLK_TCK"]).stdout.toString().trim()) || 100;

export interface ProcStat {
  pid: number;
  comm: string;
  state: string;
  ppid: number;
  /** utime + stime, clock ticks. */
  cpuTicks: number;
  /** cutime + cstime: CPU of children it has waited for, clock ticks. */
  childTicks: number;
}

export function procStat(pid: number): ProcStat | undefined {
  let s: string;
  try {
    s = readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    return undefined;
  }
  const close = s.lastIndexOf(")");
  const comm = s.slice(s.indexOf("(") + 1, close);
  const f = s.slice(close + 2).split(" ");
  // f[0] is field 3 (state); utime, stime, cutime, cstime are fields 14-17.
  return { pid, comm, state: f[0]!, ppid: Number(f[1]), cpuTicks: Number(f[11]) + Number(f[12]), childTicks: Number(f[13]) + Number(f[14]) };
}

/** VmRSS in KiB, or 0 when the process is gone. */
/** Proportional set size: shared pages split among their users, and a page mapped twice counted once. */
export function pssKiB(pid: number): number {
  try {
    const m = /^Pss:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, "utf8"));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

export function rssKiB(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

/** pid and every descendant of it, from a scan of /proc. */
export function processTree(root: number): ProcStat[] {
  const all: ProcStat[] = [];
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    const st = procStat(Number(name));
    if (st) all.push(st);
  }
  const byParent = new Map<number, ProcStat[]>();
  for (const p of all) byParent.set(p.ppid, [...(byParent.get(p.ppid) ?? []), p]);
  const out: ProcStat[] = [];
  const rootStat = all.find((p) => p.pid === root);
  if (rootStat) out.push(rootStat);
  const queue = [root];
  while (queue.length) {
    for (const c of byParent.get(queue.shift()!) ?? []) {
      out.push(c);
      queue.push(c.pid);
    }
  }
  return out;
}

/** Cgroup memory OOM-kill counter (v2 memory.events, v1 memory.oom_control), or undefined. */
export function cgroupOomKills(cgroupDir: string): number | undefined {
  for (const [file, re] of [
    ["memory.events", /^oom_kill (\d+)$/m],
    ["memory.oom_control", /^oom_kill (\d+)$/m],
  ] as const) {
    try {
      const m = re.exec(readFileSync(join(cgroupDir, file), "utf8"));
      if (m) return Number(m[1]);
    } catch {
      /* not this version */
    }
  }
  return undefined;
}

// --- statistics and tables ---------------------------------------------------------------

export function median(xs: number[]): number {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (!s.length) return NaN;
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

export function stats(xs: Array<number | undefined | null>): { n: number; median: number; min: number; max: number } {
  const v = xs.filter((x): x is number => typeof x === "number" && Number.isFinite(x));
  return { n: v.length, median: median(v), min: v.length ? Math.min(...v) : NaN, max: v.length ? Math.max(...v) : NaN };
}

export function fmt(x: number | undefined | null, digits = 0): string {
  if (x === undefined || x === null || !Number.isFinite(x)) return "-";
  return x.toFixed(digits);
}

/** "median [min–max]" */
export function fmtStats(xs: Array<number | undefined | null>, digits = 0): string {
  const s = stats(xs);
  if (!s.n) return "-";
  if (s.n === 1) return fmt(s.median, digits);
  return `${fmt(s.median, digits)} [${fmt(s.min, digits)}–${fmt(s.max, digits)}]`;
}

/** A plain-text table; numbers right-aligned. */
export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const numeric = header.map((_, i) => rows.every((r) => /^[-\d.,%×x \[\]–]*$/.test(r[i] ?? "")));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (numeric[i] ? c.padStart(widths[i]!) : c.padEnd(widths[i]!)))
      .join("  ")
      .trimEnd();
  return [line(header), widths.map((w) => "-".repeat(w)).join("  "), ...rows.map(line)].join("\n");
}

// --- processes ----------------------------------------------------------------------------

/** Kills a process we started (by pid), ignoring "already gone". */
export function killPid(pid: number, sig: NodeJS.Signals | number = "SIGTERM"): void {
  try {
    process.kill(pid, sig);
  } catch {
    /* gone */
  }
}

/** Resolves with the exit code, or undefined if it did not exit within ms. */
export async function exitedWithin(p: { exited: Promise<number> }, ms: number): Promise<number | undefined> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<undefined>((r) => (timer = setTimeout(() => r(undefined), ms)));
  try {
    return await Promise.race([p.exited, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Like Promise.race with a timeout, without leaving the timer to keep the process alive. */
export async function within<T>(p: Promise<T>, ms: number, fallback: T): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<T>((r) => (timer = setTimeout(() => r(fallback), ms)));
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
