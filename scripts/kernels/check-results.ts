// Judges one scripts/test-kernels guest from the "KT <tag> <payload>" lines its init
// (scripts/kernels/guest-init) wrote on the second serial port.
//
//   bun scripts/kernels/check-results.ts RESULTS_LOG LABEL HOST_BOOT_MS HOST_TOTAL_MS OUT_DIR
//
// Prints one PASS/FAIL line per check, the doctor output, and last a line
// "timing LABEL: ..." that scripts/test-kernels repeats in its summary. Profiles are
// decoded into OUT_DIR and read back with go tool pprof ($OOMPROF_KT_GO, else go on PATH).
// Exits 0 only when every check passed.
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";

const [resultsPath, label, hostBootMs, hostTotalMs, outArg] = process.argv.slice(2);
if (!resultsPath || !label || !outArg) {
  console.error("usage: check-results.ts RESULTS_LOG LABEL HOST_BOOT_MS HOST_TOTAL_MS OUT_DIR");
  process.exit(2);
}
const outDir: string = outArg;

type Ev = Record<string, unknown> & { event?: string };
const tags = new Map<string, string[]>();
let text = "";
try {
  text = readFileSync(resultsPath, "utf8");
} catch {
  /* no results at all: every check fails below */
}
for (const raw of text.split("\n")) {
  const line = raw.replace(/\r$/, "");
  const m = /^KT (\S+)(?: (.*))?$/.exec(line);
  if (!m) continue;
  const tag = m[1]!;
  const list = tags.get(tag) ?? [];
  list.push(m[2] ?? "");
  tags.set(tag, list);
}
const one = (tag: string): string | undefined => tags.get(tag)?.[0];
const num = (tag: string): number | undefined => {
  const v = one(tag);
  return v !== undefined && v !== "" && Number.isFinite(Number(v)) ? Number(v) : undefined;
};
const events = (tag: string): Ev[] =>
  (tags.get(tag) ?? []).flatMap((l) => {
    try {
      return [JSON.parse(l) as Ev];
    } catch {
      return [];
    }
  });

let failed = 0;
function check(name: string, ok: boolean, detail: string): void {
  if (!ok) failed++;
  console.log(`  ${ok ? "PASS" : "FAIL"}  ${label}: ${name}${detail ? ` (${detail})` : ""}`);
}
const short = (e: Ev | undefined): string =>
  e
    ? JSON.stringify({
        pid: e.pid,
        profile: e.profile,
        complete: e.complete,
        reason: e.reason,
        buckets: e.buckets,
        cgroup: e.cgroup,
        capture_ms: e.capture_ms,
        lost_events: e.lost_events,
      })
    : "no event";

// A profile sent back from the guest: decode it and, where go is on PATH, make sure
// go tool pprof reads it and names the leaking function.
function profileCheck(tag: string, ev: Ev | undefined): [boolean, string] {
  const name = typeof ev?.profile === "string" ? ev.profile.split("/").pop() : undefined;
  const sent = (tags.get(tag) ?? []).map((l) => l.split(" ")).find(([n]) => n === name);
  if (!name || !sent || !sent[1]) return [false, `profile ${name ?? "null"} not sent back`];
  mkdirSync(outDir, { recursive: true });
  const path = join(outDir, `${tag}-${name}`);
  const bytes = Buffer.from(sent[1], "base64");
  writeFileSync(path, bytes);
  const go = process.env.OOMPROF_KT_GO || Bun.which("go");
  if (!go) return [bytes.length > 0, `${bytes.length} bytes, not read (no Go toolchain)`];
  const r = Bun.spawnSync([go, "tool", "pprof", "-top", "-symbolize=none", "-sample_index=inuse_space", path], {
    stdout: "pipe",
    stderr: "pipe",
    timeout: 60_000,
  });
  const out = r.stdout.toString();
  const ok = r.exitCode === 0 && out.includes("main.leakStep");
  return [ok, ok ? `${bytes.length} bytes, go tool pprof names main.leakStep` : `go tool pprof: ${(r.stderr.toString() || out).trim().slice(0, 300)}`];
}

console.log(
  `${label}: kernel ${one("kernel") ?? "?"}, bpftrace ${one("bpftrace") ?? "?"}, cgroup2 controllers "${one("cgroup_controllers") ?? "?"}", subtree_control "${one("cgroup_subtree_control") ?? "?"}"`,
);
check(
  "guest booted and finished",
  tags.has("kernel") && tags.has("end"),
  tags.has("kernel") ? (tags.has("end") ? "" : "no end marker") : "no result line at all",
);
check("cgroup v2 with memory in subtree_control", (one("cgroup_subtree_control") ?? "").split(/\s+/).includes("memory"), one("cgroup_subtree_control") ?? "");

const doctor = tags.get("doctor") ?? [];
console.log(`  doctor (status ${one("doctor_status") ?? "?"}, ${one("doctor_ms") ?? "?"} ms):`);
for (const l of doctor) console.log(`    ${l}`);

// run --limit
const run = events("run_event");
const armed = run.find((e) => e.event === "armed");
const start = run.find((e) => e.event === "start");
const runKill = run.find((e) => e.event === "oom_kill");
check("run: exit status 137", one("run_status") === "137", `status ${one("run_status") ?? "none"}`);
check("run: armed event", !!armed, armed ? `armed_ms ${armed.armed_ms}, walk ${armed.walk}` : "none");
check("run: oom_kill with a complete profile", !!runKill && typeof runKill.profile === "string" && runKill.complete === true, short(runKill));
const startCg = typeof start?.cgroup === "string" ? start.cgroup : "";
check(
  "run: cgroup is the run's v2 cgroup",
  !!runKill && /^\/oomprof-\d+-[a-z0-9]+$/.test(String(runKill.cgroup)) && runKill.cgroup === startCg,
  `oom_kill ${JSON.stringify(runKill?.cgroup)}, start ${JSON.stringify(start?.cgroup)}`,
);
check("run: profile reads back", ...profileCheck("run_profile", runKill));
if (!runKill) for (const l of (tags.get("run_stderr") ?? []).slice(-15)) console.log(`    run stderr: ${l}`);

// watch
const watch = events("watch_event");
const ready = watch.find((e) => e.event === "ready");
const watchKill = watch.find((e) => e.event === "oom_kill");
check("watch: ready event", !!ready, ready ? `armed_ms ${ready.armed_ms}` : `none (ready=${one("watch_ready") ?? "?"})`);
check(
  "watch: leaker in /t1 OOM-killed (137)",
  one("watch_leaker_status") === "137",
  `status ${one("watch_leaker_status") ?? "none"}; memory.events ${one("watch_memory_events") ?? "?"}`,
);
check("watch: oom_kill with a complete profile", !!watchKill && typeof watchKill.profile === "string" && watchKill.complete === true, short(watchKill));
check("watch: cgroup /t1", watchKill?.cgroup === "/t1", JSON.stringify(watchKill?.cgroup));
check("watch: profile reads back", ...profileCheck("watch_profile", watchKill));
check("watch: exits 0 on SIGINT", one("watch_exit") === "0", `status ${one("watch_exit") ?? "none"}`);
if (!watchKill) for (const l of (tags.get("watch_stderr") ?? []).slice(-15)) console.log(`    watch stderr: ${l}`);

const warnings = [...run, ...watch].filter((e) => e.event === "warning").map((e) => String(e.message));
for (const w of warnings) console.log(`    warning event: ${w}`);

const s = (ms: unknown): string => (typeof ms === "number" && Number.isFinite(ms) && ms >= 0 ? `${(ms / 1000).toFixed(1)} s` : "?");
const ms = (v: unknown): string => (typeof v === "number" && Number.isFinite(v) ? `${Math.round(v)} ms` : "?");
console.log(
  `timing ${label} (${one("kernel") ?? "?"}): ${failed === 0 ? "PASS" : "FAIL"}; boot ${s(Number(hostBootMs))} to init (kernel uptime ${one("boot_uptime_s") ?? "?"} s); ` +
    `run: armed ${ms(armed?.armed_ms)}, capture ${ms(runKill?.capture_ms)}, wall ${s(num("run_wall_ms"))}; ` +
    `watch: ready ${ms(ready?.armed_ms)} (wall ${s(num("watch_ready_wall_ms"))}), capture ${ms(watchKill?.capture_ms)}; total ${s(Number(hostTotalMs))}`,
);
process.exit(failed === 0 ? 0 : 1);
