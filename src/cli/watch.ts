import { readlinkSync, statSync } from "node:fs";
import { readyToReport, WATCH_READINESS } from "../capture/readiness.ts";
import { LiveMirror } from "../capture/live-mirror.ts";
import { ProbeSessions } from "../capture/probe-sessions.ts";
import { processCgroup } from "../cgroup/memory-cgroup.ts";
import { processExists, stillRunning } from "../process/liveness.ts";
import type { ExecInfo } from "../capture/binary-registry.ts";
import { noWalkReason } from "../capture/no-walk-reason.ts";
import { nsToMs } from "../process/libc.ts";
import type { ProcessCapture } from "../capture/walk-capture.ts";
import { EventWriter, nowIso } from "../output/events.ts";
import { KillReporter } from "../output/kill-reporter.ts";
import { prepareOutDir } from "../output/profile-file.ts";
import { detectBpftrace } from "../probes/bpftrace-host.ts";
import type { GoTarget } from "../gobinary/go-target.ts";
import { scanProcesses } from "../process/scan.ts";
import { config } from "../config.ts";
import { log } from "./log.ts";
import type { WatchFlags } from "./options.ts";
import { requireRoot } from "../process/privileges.ts";
import { DISABLED_HINT } from "../gobinary/go-target.ts";

const MIRROR_INTERVAL_MS = 1000;
/** How long a victim gone before it could be read waits for oomprof's read of its executable. */
const IDENTIFY_WAIT_MS = 2000;

/** A victim heard of and not reported yet, with what was read of it while it was still there. */
interface PendingVictim {
  since: number;
  cgroup: string | null;
  exe?: string;
  /** Its binary, when oomprof walks it: its walk is waited for. */
  target?: GoTarget;
  /** A binary oomprof did not walk when it was killed: what reading it says, once read. */
  info?: ExecInfo;
  reading?: boolean;
}

/**
 * `oomprof watch`: profiles any Go process on the host that the OOM killer picks,
 * including ones started later, and reports every OOM kill.
 */
export async function watchCommand(flags: WatchFlags): Promise<number> {
  const t0 = performance.now();
  // Installed first, so a SIGTERM that arrives while arming still ends watch cleanly.
  let resolveDone!: (code: number) => void;
  const done = new Promise<number>((r) => (resolveDone = r));
  const stop = (code: number) => resolveDone(code);
  process.on("SIGINT", () => stop(0));
  process.on("SIGTERM", () => stop(0));
  requireRoot();
  const outDir = prepareOutDir(flags.out);
  const events = new EventWriter(flags.events);
  const host = await detectBpftrace();

  const procs = scanProcesses();
  let lastRecordAt = 0;
  const sessions: ProbeSessions = new ProbeSessions(
    host,
    { kind: "watch", hold: flags.holdNewBinaries },
    {
      onRecord(r, pid) {
        lastRecordAt = performance.now();
        if (pid === undefined) return;
        if ((r.tag === "V" || r.tag === "H") && !pending.has(pid)) {
          // The victim is still there (killed, not yet reaped): note what it was.
          const victim: PendingVictim = { since: performance.now(), cgroup: processCgroup(pid) ?? null };
          try {
            victim.exe = readlinkSync(`/proc/${pid}/exe`).replace(/ \(deleted\)$/, "");
            const inode = statSync(`/proc/${pid}/exe`).ino;
            victim.target = sessions.targetByInode(inode);
            // Not walked: find out what it is while it can still be read, so the report says why truly.
            if (!victim.target) {
              victim.reading = true;
              void sessions
                .inspect(pid, inode)
                .then((info) => (victim.info = info))
                .finally(() => (victim.reading = false));
            }
          } catch {
            /* already gone */
          }
          pending.set(pid, victim);
        }
      },
      onWarning: (m) => log.warn(m),
      onVerbose: (m) => log.verbose(m),
      onTargetAdded: (t) => announce(t),
      onSessionLost(why) {
        log.warn(`bpftrace exited (${why}); restarting it`);
        events.emit({ event: "warning", time: nowIso(), message: `bpftrace exited (${why}); restarted` });
        sessions.restart().catch((e) => {
          log.warn(`could not restart bpftrace: ${(e as Error).message}`);
          stop(1);
        });
      },
    },
  );
  const announced = new Set<number>();
  const announce = (t: GoTarget) => {
    if (announced.has(t.inode)) return;
    announced.add(t.inode);
    if (t.memProfilingDisabled) {
      const msg = `${t.path}: ${DISABLED_HINT}`;
      log.warn(msg);
      events.emit({ event: "warning", time: nowIso(), message: msg });
    } else log.verbose(`watching ${t.path} (${t.buildInfo.goVersion})`);
  };

  // Read every Go binary running now, once per executable.
  const initial: GoTarget[] = [];
  const seen = new Set<number>();
  let goProcesses = 0;
  for (const p of procs) {
    if (seen.has(p.inode)) {
      if (initial.some((t) => t.inode === p.inode)) goProcesses++;
      continue;
    }
    seen.add(p.inode);
    if (p.pid === process.pid) continue;
    const info = await sessions.inspect(p.pid, p.inode);
    if (info.target) {
      initial.push(info.target);
      goProcesses++;
    }
  }
  const pending = new Map<number, PendingVictim>();
  const probes = await sessions.start(initial);
  initial.forEach(announce);
  const armedMs = Math.round(performance.now() - t0);
  events.emit({
    event: "ready",
    time: nowIso(),
    bpftrace_version: host.version.text,
    walk: sessions.walk,
    probes,
    targets: sessions.targets.map((t) => ({ exe: t.path, go_version: t.buildInfo.goVersion })),
    armed_ms: armedMs,
    go_processes: goProcesses,
  });
  if (!flags.quiet)
    log.info(`watching ${goProcesses} Go processes (${initial.length} binaries) and every new one; armed in ${armedMs} ms (bpftrace ${host.version.text})`);

  // Stacks are read ahead from live Go processes, as in `run`.
  const mirror = new LiveMirror(
    function* () {
      const targets = sessions.targets;
      for (const p of scanProcesses()) {
        if (sessions.targetByInode(p.inode)) yield [p.pid, targets] as [number, GoTarget[]];
      }
    },
    MIRROR_INTERVAL_MS,
    (n) => sessions.ensureCapacity(n),
  );
  mirror.start();
  const reporter = new KillReporter({
    captures: sessions,
    events,
    outDir,
    warn: (m) => log.warn(m),
    summary: flags.quiet || log.json ? undefined : (text) => process.stderr.write(text),
    upload: flags.upload,
    mirror,
    placement: (pid) => ({ cgroup: pending.get(pid)?.cgroup ?? null, limitBytes: null }),
    fallback: (pid) => {
      const v = pending.get(pid);
      if (!v) return {};
      if (v.target) return { exe: v.exe, target: v.target };
      // Read while it lived, or else known by the inode its own thread reported at the kill.
      const identity = sessions.capture(pid)?.identity;
      // What oomprof's own read of the executable said wins over a read that came too late.
      const info = (identity && sessions.describe(identity.inode)) ?? v.info;
      const exe = v.exe ?? info?.path;
      const target = info?.target;
      const why = noWalkReason({
        exe,
        info,
        startedMs: identity && nsToMs(identity.startNs),
        killedMs: identity && nsToMs(identity.killNs),
        liveMs: target && sessions.liveAtMs(target),
      });
      return { exe, target, why };
    },
  });

  const described = (c: ProcessCapture | undefined) => c?.identity !== undefined && sessions.describe(c.identity.inode) !== undefined;

  // Report each kill once its walk is whole, the process is gone, or time is up.
  const settle = setInterval(() => {
    const now = performance.now();
    for (const [pid, victim] of pending) {
      const capture = sessions.capture(pid, mirror.buckets(pid));
      const state = {
        capture,
        since: victim.since,
        walkExpected: victim.target !== undefined || (capture?.identity !== undefined && sessions.targetByInode(capture.identity.inode) !== undefined),
        countsGoroutines: capture !== undefined && sessions.countsGoroutines(capture),
        running: stillRunning(pid) !== undefined,
        // Gone before it could be read here: what it ran is known once the exec's own read is done.
        identifying: victim.reading === true || (!victim.target && !victim.info && !described(capture) && now - victim.since < IDENTIFY_WAIT_MS),
      };
      if (!readyToReport(state, { now, lastRecordAt }, WATCH_READINESS)) continue;
      reporter.report(pid);
      pending.delete(pid);
      // A binary read only to say why it had no walk is not kept open.
      const read = victim.info?.target;
      if (read && sessions.targetByInode(read.inode) !== read) read.release();
      mirror.forget(pid);
    }
    // Forget mirrors of processes that exited without being killed: at the mirror's pace,
    // not every 50 ms (a syscall per mirrored process).
    if (now - lastForgetCheck >= MIRROR_INTERVAL_MS) {
      lastForgetCheck = now;
      for (const pid of mirror.pids()) {
        // Zombies count as existing: a dying victim's mirror must outlast its first records.
        if (!pending.has(pid) && !processExists(pid)) mirror.forget(pid);
      }
    }
  }, 50);
  let lastForgetCheck = 0;

  // Binaries whose processes are all gone stop being walked after a while.
  const pruning = setInterval(() => sessions.prune(new Set(scanProcesses().map((p) => p.inode))), config().pruneCheckMs);

  const code = await done;
  clearInterval(pruning);
  clearInterval(settle);
  mirror.stop();
  for (const pid of pending.keys()) reporter.report(pid);
  await reporter.flushUploads();
  await sessions.stop();
  events.close();
  if (!flags.quiet) log.info("stopped");
  return code;
}
