import { warmCapturePath } from "./warm-up.ts";
import { constants as osConstants } from "node:os";
import { continueStoppedTree, processState } from "../process/liveness.ts";
import { dieWithParent } from "../process/parent-death.ts";
import {
  DRAIN_IDLE_MS,
  DRAIN_MAX_MS,
  EXIT_QUIET_MS,
  mayCompleteCapture,
  onceRecordsHandled,
  readyToReport,
  RUN_READINESS,
  wholeOomDeath,
} from "../capture/readiness.ts";
import { LiveMirror } from "../capture/live-mirror.ts";
import { ProbeSessions } from "../capture/probe-sessions.ts";
import { createMemoryCgroup, type MemoryCgroup } from "../cgroup/memory-cgroup.ts";
import { readProcessPlacement } from "../cgroup/process-placement.ts";
import { UserError } from "../errors.ts";
import { detectBpftrace } from "../probes/bpftrace-host.ts";
import { targetForCommand } from "../gobinary/command-target.ts";
import type { GoTarget } from "../gobinary/go-target.ts";
import { resolveCommand } from "../process/command-path.ts";
import { requireRoot } from "../process/privileges.ts";
import { EventWriter, nowIso } from "../output/events.ts";
import { prepareOutDir } from "../output/profile-file.ts";
import { KillReporter } from "../output/kill-reporter.ts";
import { log } from "./log.ts";
import type { RunFlags } from "./options.ts";

/** Waits until a process is stopped (state T in /proc/PID/stat), or gone. */
async function waitStopped(pid: number, timeoutMs = 5000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (performance.now() < deadline) {
    const state = processState(pid);
    if (state === undefined || state === "T" || state === "t" || state === "Z") return;
    await Bun.sleep(2);
  }
}

function exitStatus(child: { exitCode: number | null; signalCode: string | number | null }): number {
  if (child.signalCode) return 128 + (osConstants.signals[child.signalCode as keyof typeof osConstants.signals] ?? 0);
  return child.exitCode ?? 1;
}

export async function runCommand(argv: string[], flags: RunFlags): Promise<number> {
  const t0 = performance.now();
  if (argv.length === 0) throw new UserError("run: no command given (usage: oomprof run [flags] -- CMD [ARGS...])", 2);
  const cmdPath = resolveCommand(argv[0]!);
  const { target, why } = await targetForCommand(cmdPath);
  requireRoot();
  const outDir = prepareOutDir(flags.out);
  const events = new EventWriter(flags.events);

  const host = await detectBpftrace();
  // After every check that can fail, so an error stays the only line.
  if (!target) log.warn(`${why}: no heap profile unless it runs a Go program (oomprof follows what it execs); kills are reported either way`);
  let cgroup: MemoryCgroup | undefined;
  let sessions: ProbeSessions | undefined;
  let wake: (() => void) | undefined;
  let lastRecordAt = 0;
  try {
    if (flags.limit !== undefined) cgroup = createMemoryCgroup(flags.limit);
    // A tiny shell joins the cgroup, stops itself until the probes are attached, then
    // execs the command: the program keeps its pid, argv, environment, working
    // directory and stdio, is confined from its first instruction, and cannot run
    // before oomprof is watching.
    const join = cgroup ? 'echo $$ > "$0" && ' : "";
    const child = Bun.spawn(dieWithParent(["/bin/sh", "-c", `${join}kill -STOP $$ && exec "$@"`, cgroup?.procsFile ?? "oomprof-run", ...argv]), {
      stdio: ["inherit", flags.events === "-" ? 2 : "inherit", "inherit"],
    });
    const forward = (sig: NodeJS.Signals) => () => {
      try {
        child.kill(sig);
      } catch {
        /* already gone */
      }
    };
    const handlers = (["SIGINT", "SIGTERM", "SIGHUP"] as const).map((sig) => [sig, forward(sig)] as const);
    for (const [sig, h] of handlers) process.on(sig, h);

    const pendingReports: Array<Promise<unknown>> = [];
    /**
     * An OOM-killed program of ours is reported as soon as its capture is whole, as watch
     * does: not after its exit (tearing down a large address space takes a while) and
     * the drain that follows.
     */
    const reportWholeDeaths = () => {
      for (const pid of [child.pid, ...probeSessions.goExecPids()]) {
        if (reporter.hasReported(pid)) continue;
        const c = probeSessions.status(pid, mirror.buckets(pid));
        if (c && wholeOomDeath(c, probeSessions.countsGoroutines(c))) pendingReports.push(Promise.resolve().then(() => reporter.report(pid)));
      }
    };
    const reportWholeDeathsSoon = onceRecordsHandled(reportWholeDeaths);
    // Assigned below, before bpftrace starts: the callbacks only run after that.
    let reporter!: KillReporter;
    const probeSessions = new ProbeSessions(
      host,
      { kind: "run", rootPid: child.pid, memProfileRate: flags.rate },
      {
        onRecord(r, pid) {
          lastRecordAt = performance.now();
          // Its walk has begun: the mirror stops reading the dying process.
          if (r.tag === "H") mirror.freeze(r.pid);
          if (r.tag === "X" || r.tag === "E") wake?.();
          // A record that may complete a kill's capture: report it the moment it is whole.
          // Not on a timer: assembling a capture of 40,000 buckets takes ~12 ms, and
          // checking every 20 ms while its records stream in slowed the stream itself.
          if (pid !== undefined && mayCompleteCapture(r)) reportWholeDeathsSoon();
          // A descendant (not the child itself) killed while the child lives: report it now.
          if (r.tag === "X" && pid !== undefined && pid !== child.pid && probeSessions.exec(pid)) {
            pendingReports.push(Promise.resolve().then(() => reporter.report(pid)));
          }
        },
        onWarning: (m) => log.warn(m),
        onVerbose: (m) => log.verbose(m),
        onSessionLost(whyLost) {
          reporter.bpftraceLost = whyLost;
          log.warn(`bpftrace exited while the program is still running: heap capture is off (${whyLost})`);
          // A program held at exec whose stop bpftrace never reported would wait forever.
          const continued = continueStoppedTree(child.pid);
          if (continued.length) log.verbose(`continued ${continued.length} programs held at exec: ${continued.join(", ")}`);
        },
      },
    );
    sessions = probeSessions;
    // Read while the child is held before its exec: it is in its cgroup and namespaces.
    const childPlacement = { ...readProcessPlacement(child.pid), ...(cgroup && { cgroup: cgroup.name }) };
    const cgroupName = childPlacement.cgroup ?? null;
    // Read bucket stacks ahead while the program lives, so the probes have less to do at death.
    const mirror = new LiveMirror(
      function* () {
        yield [child.pid, probeSessions.targets] as [number, GoTarget[]];
        for (const pid of probeSessions.goExecPids()) yield [pid, probeSessions.targets] as [number, GoTarget[]];
      },
      {
        intervalMs: 250,
        baseAgeMs: flags.baseAge,
        onReading: (pid, buckets, ms) => log.verbose(`pid ${pid}: read ${buckets} buckets' counters for the base profile in ${ms.toFixed(1)} ms`),
        onCount: (n, perFiring) => probeSessions.ensureCapacity(n, perFiring),
        onWhole: (pid, from) => probeSessions.markMirrored(pid, from),
        // The reporter is made next; the mirror's first pass comes after it (start()).
        onFound: (pid, found) => reporter?.prepare(pid, found),
        onForget: (pid) => reporter?.forget(pid),
      },
    );
    reporter = new KillReporter({
      captures: probeSessions,
      events,
      outDir,
      warn: (m) => log.warn(m),
      verbose: (m) => log.verbose(m),
      summary: flags.quiet || log.json ? undefined : (text) => process.stderr.write(text),
      upload: flags.upload,
      mirror,
      baseAgeMs: flags.baseAge,
      prepareMinBuckets: 0,
      placement: (pid) => ({ where: { ...(pid === child.pid && childPlacement), ...readProcessPlacement(pid) }, limitBytes: cgroup?.limitBytes ?? null }),
      fallback: (pid) => (pid === child.pid ? { target, why } : {}),
    });

    let probes: number;
    try {
      probes = await probeSessions.start(target ? [target] : []);
    } catch (e) {
      child.kill("SIGKILL");
      await child.exited;
      throw e;
    }
    const armedMs = Math.round(performance.now() - t0);
    events.emit({
      event: "armed",
      time: nowIso(),
      bpftrace_version: host.version.text,
      walk: probeSessions.walk,
      probes,
      targets: probeSessions.targets.map((t) => ({ exe: t.path, go_version: t.buildInfo.goVersion })),
      armed_ms: armedMs,
    });
    if (!flags.quiet)
      log.info(
        `armed in ${armedMs} ms (bpftrace ${host.version.text}, ${probes} probes)${target ? `, watching ${target.path} (${target.buildInfo.goVersion})` : ""}`,
      );
    events.emit({ event: "start", time: nowIso(), pid: child.pid, argv, cgroup: cgroupName, limit_bytes: cgroup?.limitBytes ?? null });
    await waitStopped(child.pid);
    child.kill("SIGCONT");
    mirror.start();
    // The first capture a process makes runs cold: make a few now, not at the kill.
    warmCapturePath();
    // Its binary's symbol tables too, once the program runs: at a kill they cost 13-15 ms
    // even for a small program (watch keeps them for binaries that have died before).
    if (target) setImmediate(() => reporter.preload(target));

    await child.exited;
    lastRecordAt = Math.max(lastRecordAt, performance.now());
    mirror.stop();
    for (const [sig, h] of handlers) process.off(sig, h);
    const status = exitStatus(child);

    // The walk runs in the dying process's threads; its last lines may still be in
    // flight. Wait for every killed process of ours (the child, or a program it ran)
    // until its capture is ready to report (capture/readiness.ts).
    // A SIGKILLed child's records may still be on their way when its exit is seen (bpftrace
    // reads its buffers on its own schedule): it counts as ours before any arrive.
    const killed = child.signalCode === "SIGKILL";
    const drainStart = performance.now();
    const ours = () => {
      const pids = probeSessions.pids().filter((p) => (p === child.pid || probeSessions.exec(p)) && !reporter.hasReported(p));
      if (killed && !pids.includes(child.pid) && !reporter.hasReported(child.pid)) pids.push(child.pid);
      return pids;
    };
    const ready = (pid: number) => {
      const capture = probeSessions.status(pid, mirror.buckets(pid));
      const victim = {
        capture,
        since: capture?.firstSeenMs ?? drainStart,
        walkExpected: Boolean(probeSessions.exec(pid)?.target || (pid === child.pid && target)),
        countsGoroutines: capture !== undefined && probeSessions.countsGoroutines(capture),
        // The child has exited; a program it ran and that outlived it is not waited for.
        running: false,
      };
      return readyToReport(victim, { now: performance.now(), lastRecordAt }, RUN_READINESS);
    };
    // A Go program the child ran may have died just before it: its records were all
    // written before the child could see that death, but may not be read yet. Wait for
    // the stream to go quiet once, so its report comes before the exit event.
    const descendants = probeSessions.goExecPids().length > 0;
    const quiet = () => performance.now() - lastRecordAt >= EXIT_QUIET_MS;
    if (!reporter.bpftraceLost) {
      const hardDeadline = performance.now() + DRAIN_MAX_MS;
      while (performance.now() < hardDeadline && performance.now() - lastRecordAt < DRAIN_IDLE_MS && (!ours().every(ready) || (descendants && !quiet()))) {
        await new Promise<void>((res) => {
          wake = res;
          setTimeout(res, 50);
        });
      }
    }
    await Promise.all(pendingReports);
    for (const pid of ours()) reporter.report(pid);
    await reporter.flushUploads();
    events.emit({ event: "exit", time: nowIso(), pid: child.pid, status, signal: child.signalCode ? String(child.signalCode) : null });
    return status;
  } finally {
    await sessions?.stop();
    cgroup?.remove();
    events.close();
  }
}
