import { readFileSync, readlinkSync } from "node:fs";
import { z } from "zod";
import { readLiveBuckets, readLiveGoroutines, readProfileState } from "../capture/live-buckets.ts";
import { readLiveMemStats, readRssBytes } from "../capture/memstats-reading.ts";
import { memoryBreakdown } from "../gobinary/memstats-layout.ts";
import { BadBinaryError, UserError } from "../errors.ts";
import { EventWriter, nowIso, topSites } from "../output/events.ts";
import { describeContainer, formatBytes, formatGoroutines, formatMemoryBreakdown } from "../output/format.ts";
import { placementFields, readProcessPlacement } from "../cgroup/process-placement.ts";
import { prepareOutDir, writesSynced } from "../output/profile-file.ts";
import { writeHeapProfile } from "../output/report-kill.ts";
import { loadSymbolizer } from "../symbolize/load.ts";
import { discoverGoTarget, DISABLED_HINT, UNKNOWN_LAYOUT_HINT } from "../gobinary/go-target.ts";
import { loadBias, ProcessMemory, readMaps } from "../process/memory.ts";
import { log } from "./log.ts";
import type { SnapshotFlags } from "./options.ts";
import { requireRoot } from "../process/privileges.ts";

/**
 * `oomprof snapshot PID`: the heap profile of a live Go process, read through
 * /proc/PID/mem. The process is neither stopped nor signalled.
 */
export async function snapshotCommand(flags: SnapshotFlags): Promise<number> {
  const pid = flags.pid;
  let exe: string;
  try {
    exe = readlinkSync(`/proc/${pid}/exe`);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "ENOENT") throw new UserError(`pid ${pid}: no such process`);
    requireRoot();
    throw new UserError(`pid ${pid}: cannot see its executable (${code})`);
  }
  requireRoot();
  const comm = z
    .string()
    .parse(readFileSync(`/proc/${pid}/comm`, "utf8"))
    .trim();
  let target;
  try {
    target = await discoverGoTarget(`/proc/${pid}/exe`);
  } catch (e) {
    if (e instanceof BadBinaryError) throw new UserError(`pid ${pid} (${comm}, ${exe}): ${e.message.replace(`/proc/${pid}/exe: `, "")}`);
    throw e;
  }
  target.path = exe.replace(/ \(deleted\)$/, "");
  const outDir = prepareOutDir(flags.out);
  const events = new EventWriter(flags.events);
  const mem = new ProcessMemory(pid);
  try {
    const bias = loadBias(target, readMaps(pid));
    const state = readProfileState(mem, target, bias);
    if (!state) throw new UserError(`pid ${pid}: cannot read its Go runtime state`);
    const goroutines = readLiveGoroutines(mem, target, bias);
    // RSS right after the statistics: the two reads are microseconds apart.
    const rssBytes = readRssBytes(pid);
    const memory = memoryBreakdown(readLiveMemStats(mem, target, bias), rssBytes);
    const base = {
      event: "snapshot" as const,
      time: nowIso(),
      pid,
      comm,
      exe: target.path,
      go_version: target.buildInfo.goVersion,
      memprofile_rate: state.memProfileRate,
      goroutines: goroutines?.count ?? null,
      goroutines_upper_bound: goroutines?.atMost ?? false,
      memory,
      ...placementFields(readProcessPlacement(pid)),
    };
    if (state.memProfileRate === 0) {
      log.warn(`pid ${pid} (${comm}): ${DISABLED_HINT}`);
      events.emit({ ...base, profile: null, reason: DISABLED_HINT, buckets: 0, complete: false, inuse_bytes: 0, gc_live_bytes: 0, top: [] });
      return 1;
    }
    if (target.memRecordWords === undefined) {
      const why = UNKNOWN_LAYOUT_HINT(target.buildInfo.goVersion);
      events.emit({ ...base, profile: null, reason: why, buckets: 0, complete: false, inuse_bytes: 0, gc_live_bytes: 0, top: [] });
      throw new UserError(`pid ${pid} (${comm}): ${why}`);
    }
    const { buckets, complete } = readLiveBuckets(mem, state.head, undefined, target.memRecordWords);
    const gaps = complete ? [] : [`the bucket list could not be read past ${buckets.length} buckets`];
    const { path, sites } = writeHeapProfile({
      target,
      symbolizer: loadSymbolizer(target, (m) => log.warn(m)),
      outDir,
      pid,
      comm,
      when: new Date(),
      buckets,
      memProfileRate: state.memProfileRate,
      cycle: state.cycle,
      bias,
      what: "snapshot",
      gaps,
      recordWords: target.memRecordWords,
      memory: { rssBytes, figures: memory },
      onSyncFailed: (m) => log.warn(m),
    });
    await writesSynced();
    events.emit({
      ...base,
      profile: path,
      reason: gaps.length ? gaps.join("; ") : null,
      buckets: buckets.length,
      complete,
      inuse_bytes: sites.totals.inuse,
      gc_live_bytes: sites.totals.gcLive,
      top: topSites(sites.sites),
    });
    const counted = goroutines ? `, ${formatGoroutines(goroutines.count, goroutines.atMost)}` : "";
    log.info(
      `snapshot of ${comm} (pid ${pid}${describeContainer(base.container, " in ")}): ${buckets.length} buckets, heap in use ${formatBytes(sites.totals.inuse)}${counted}; ${path}`,
    );
    const breakdown = formatMemoryBreakdown(rssBytes, memory);
    if (breakdown) log.info(`  ${breakdown}`);
    return 0;
  } finally {
    mem.close();
    events.close();
  }
}
