import { warmCapturePath } from "./warm-up.ts";
import { readlinkSync, statSync } from "node:fs";
import { mayCompleteCapture, onceRecordsHandled, readyToReport, WATCH_READINESS } from "../capture/readiness.ts";
import { LiveMirror } from "../capture/live-mirror.ts";
import { ProbeSessions } from "../capture/probe-sessions.ts";
import { readProcessPlacement, type ProcessPlacement } from "../cgroup/process-placement.ts";
import { processExists, stillRunning } from "../process/liveness.ts";
import type { ExecInfo } from "../capture/binary-registry.ts";
import { noWalkReason } from "../capture/no-walk-reason.ts";
import { nsToMs } from "../process/libc.ts";
import type { ProcessCapture } from "../capture/walk-capture.ts";
import { EventWriter, nowIso } from "../output/events.ts";
import { KillReporter } from "../output/kill-reporter.ts";
import type { WalkRecord } from "../stream/records.ts";
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
/**
 * An idle host's mirror passes come this far apart at most (a quiet process is due every
 * 7.5 s at the most): a Bun process woken every second costs 0.1 % of a core by itself.
 */
const MIRROR_IDLE_INTERVAL_MS = 10_000;
/**
 * How often waiting victims are looked at for their time limits. A capture that may have
 * just become whole is looked at once its records say so (mayCompleteCapture), not on
 * this timer: assembling one of 40,000 buckets takes ~12 ms, too much to repeat every
 * 50 ms while its records stream in.
 */
const SETTLE_INTERVAL_MS = 250;
/** How long a victim gone before it could be read waits for oomprof's read of its executable. */
const IDENTIFY_WAIT_MS = 2000;

/** A victim heard of and not reported yet, with what was read of it while it was still there. */
interface PendingVictim {
  since: number;
  /** Read as soon as it was heard of, while it may still be there. */
  where: ProcessPlacement;
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
  /** Processes running a binary oomprof walks: the mirror's candidates. */
  const goPids = new Set<number>();
  /** Set once the mirror exists; until then its first pass finds them all. */
  let wakeMirror = () => {};
  const addGoPid = (pid: number) => {
    if (goPids.has(pid)) return;
    goPids.add(pid);
    wakeMirror();
  };
  const findGoProcesses = (all = scanProcesses()) => {
    for (const p of all) if (sessions.targetByInode(p.inode)) addGoPid(p.pid);
  };
  let settle: ReturnType<typeof setInterval> | undefined;
  /** Set once the reporter exists: a victim heard of while arming waits until then. */
  let settleVictims: (() => void) | undefined;
  const startSettling = () => {
    if (settleVictims && pending.size) settle ??= setInterval(settleVictims, SETTLE_INTERVAL_MS);
  };
  /** Set once the mirror exists: it stops reading a process whose walk has begun. */
  let onWalkRecord: ((r: WalkRecord) => void) | undefined;
  /** Once this batch of records is handled, not at the next tick. */
  const settleSoon = onceRecordsHandled(() => settleVictims?.());
  const sessions: ProbeSessions = new ProbeSessions(
    host,
    { kind: "watch", hold: flags.holdNewBinaries },
    {
      onRecord(r, pid) {
        lastRecordAt = performance.now();
        onWalkRecord?.(r);
        if (r.tag === "A") addGoPid(r.pid);
        if (pid === undefined) return;
        if ((r.tag === "V" || r.tag === "H") && !pending.has(pid)) {
          // The victim is still there (killed, not yet reaped): note what it was.
          const victim: PendingVictim = { since: performance.now(), where: readProcessPlacement(pid) };
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
          startSettling();
        }
        if (mayCompleteCapture(r) && pending.size) settleSoon();
      },
      onWarning: (m) => log.warn(m),
      onVerbose: (m) => log.verbose(m),
      onTargetAdded: (t) => {
        announce(t);
        // Its processes so far (later ones come as A records).
        findGoProcesses();
      },
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
  findGoProcesses(procs);
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
      for (const pid of goPids) yield [pid, targets] as [number, GoTarget[]];
    },
    {
      intervalMs: MIRROR_INTERVAL_MS,
      idleIntervalMs: MIRROR_IDLE_INTERVAL_MS,
      baseAgeMs: flags.baseAge,
      onReading: (pid, buckets, ms) => log.verbose(`pid ${pid}: read ${buckets} buckets' counters for the base profile in ${ms.toFixed(1)} ms`),
      onCount: (n, perFiring) => sessions.ensureCapacity(n, perFiring),
      onWhole: (pid, from) => sessions.markMirrored(pid, from),
      // The reporter is made below, before the mirror's first pass (a timer's).
      onFound: (pid, found) => reporter.prepare(pid, found),
      onForget: (pid) => reporter.forget(pid),
    },
  );
  mirror.start();
  wakeMirror = () => mirror.wake();
  // The first capture a process makes runs cold: make a few now, not at the kill.
  warmCapturePath();
  const reporter = new KillReporter({
    captures: sessions,
    events,
    outDir,
    warn: (m) => log.warn(m),
    verbose: (m) => log.verbose(m),
    summary: flags.quiet || log.json ? undefined : (text) => process.stderr.write(text),
    upload: flags.upload,
    mirror,
    baseAgeMs: flags.baseAge,
    placement: (pid) => ({ where: pending.get(pid)?.where ?? {}, limitBytes: null }),
    fallback: (pid) => {
      const v = pending.get(pid);
      if (!v) return {};
      if (v.target) return { exe: v.exe, target: v.target };
      // Read while it lived, or else known by the inode its own thread reported at the kill.
      const identity = sessions.status(pid)?.identity;
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
  onWalkRecord = (r) => {
    // Its walk has begun: the mirror stops reading the dying process.
    if (r.tag === "H") mirror.freeze(r.pid);
  };

  const described = (c: ProcessCapture | undefined) => c?.identity !== undefined && sessions.describe(c.identity.inode) !== undefined;
  // A read still under way is waited for past IDENTIFY_WAIT_MS (up to DRAIN_MAX_MS): under
  // load, reading a large new binary took longer, and the kill was reported with no exe.
  const reading = (c: ProcessCapture | undefined) => c?.identity !== undefined && sessions.isReading(c.identity.inode);

  // Report each kill once its walk is whole, the process is gone, or time is up: looked at
  // when a record may complete it, and on a timer while a victim waits, not at all while
  // none does (idle watch stays asleep).
  settleVictims = () => {
    const now = performance.now();
    for (const [pid, victim] of pending) {
      const capture = sessions.status(pid, mirror.buckets(pid));
      const state = {
        capture,
        since: victim.since,
        walkExpected: victim.target !== undefined || (capture?.identity !== undefined && sessions.targetByInode(capture.identity.inode) !== undefined),
        countsGoroutines: capture !== undefined && sessions.countsGoroutines(capture),
        running: stillRunning(pid) !== undefined,
        // Gone before it could be read here: what it ran is known once the exec's own read is done.
        identifying:
          victim.reading === true || (!victim.target && !victim.info && !described(capture) && (now - victim.since < IDENTIFY_WAIT_MS || reading(capture))),
      };
      if (!readyToReport(state, { now, lastRecordAt }, WATCH_READINESS)) continue;
      reporter.report(pid);
      pending.delete(pid);
      // A binary read only to say why it had no walk is not kept open.
      const read = victim.info?.target;
      if (read && sessions.targetByInode(read.inode) !== read) read.release();
      mirror.forget(pid);
      goPids.delete(pid);
    }
    if (!pending.size) {
      clearInterval(settle);
      settle = undefined;
    }
  };
  startSettling();

  // Binaries whose processes are all gone stop being walked after a while; the same scan
  // finds any process of a walked binary that no A record named.
  const pruning = setInterval(() => {
    const now = scanProcesses();
    sessions.prune(new Set(now.map((p) => p.inode)));
    // Processes that exited without being killed are forgotten here, at this pace, not
    // every second. Zombies count as existing: a dying victim's mirror must outlast its
    // first records; a victim waiting to be reported keeps its own.
    const alive = new Set(now.map((p) => p.pid));
    for (const pid of goPids) {
      if (alive.has(pid) || pending.has(pid) || processExists(pid)) continue;
      goPids.delete(pid);
      mirror.forget(pid);
    }
    findGoProcesses(now);
  }, config().pruneCheckMs);

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
