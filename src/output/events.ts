import { closeSync, constants, openSync, writeSync } from "node:fs";
import { z } from "zod";
import { UserError } from "../errors.ts";
import type { Site } from "../profile/sites.ts";

/**
 * Every event oomprof emits, one JSON object per line (NDJSON). The README documents
 * these; tests validate what the binary prints against the same schemas.
 */
const time = z.string().describe("UTC, RFC 3339 with milliseconds");

/** Which container and Kubernetes pod a process ran in, from its memory cgroup's path and its own files. */
export const ContainerInfo = z
  .object({
    runtime: z.enum(["containerd", "cri-o", "docker", "podman", "unknown"]).describe("unknown: a Kubernetes pod's container whose cgroup name does not say"),
    id: z.string().nullable().describe("the container id (64 hex); null when only the pod is known"),
    pod_uid: z.string().nullable(),
    qos_class: z.enum(["guaranteed", "burstable", "besteffort"]).nullable(),
    pod_name: z.string().nullable().describe("the pod's hostname as its container sees it: the pod name unless the pod sets spec.hostname"),
    pod_namespace: z.string().nullable().describe("from the pod's service-account namespace file, where it mounts one"),
  })
  .nullable()
  .describe("null outside a container");

/** The top allocation sites: one entry per site (function and line), as `go tool pprof -top -lines` lists them. */
const TopSites = z.array(
  z.object({
    function: z.string(),
    file: z.string().nullable().describe("the source file, as the binary names it; null without symbols"),
    line: z.number().int().nullable(),
    inuse_bytes: z.number(),
    share: z.number(),
  }),
);

const bytesOrNull = (what: string) => z.number().int().nullable().describe(what);

/**
 * Where the memory went: RSS split by the Go runtime's own statistics (the figures
 * runtime.ReadMemStats reports; src/gobinary/memstats-layout.ts). heap + stacks + runtime
 * is what the runtime holds from the OS and has not released (MemStats.Sys -
 * HeapReleased), so the four add up to RSS. Every figure is null where the Go release's
 * layout is unknown or the binary has no symbol table; not_go_bytes also where RSS is.
 */
export const MemoryFigures = z
  .object({
    heap_inuse_bytes: bytesOrNull("MemStats.HeapInuse: bytes in the heap's in-use spans (live objects, garbage not yet swept, and the spans' unused tails)"),
    stacks_bytes: bytesOrNull("MemStats.StackSys: goroutine stacks (StackInuse) and stacks the runtime mapped for threads"),
    runtime_other_bytes: bytesOrNull(
      "the rest of what the runtime holds: free heap pages not yet returned to the OS (HeapIdle - HeapReleased), MSpanSys, MCacheSys, BuckHashSys, GCSys, OtherSys",
    ),
    not_go_bytes: bytesOrNull(
      "RSS less the three above: memory the runtime did not map (cgo, syscall.Mmap, mapped files, the binary's own pages); negative when part of what the runtime mapped is not resident",
    ),
  })
  .describe(
    "oom_kill/kill/runtime_oom: read by the probe in the victim's own thread as its SIGKILL (or fatal error) arrived, with RSS from oom:mark_victim just before; snapshot: read together with /proc/PID/statm",
  );

const nsPid = z.number().int().nullable().describe("its pid inside its own pid namespace (a container's entrypoint is 1); pid is the host's");

export const ArmedEvent = z.object({
  event: z.literal("armed"),
  time,
  bpftrace_version: z.string(),
  walk: z.string(),
  probes: z.number().int(),
  targets: z.array(z.object({ exe: z.string(), go_version: z.string() })),
  armed_ms: z.number(),
});

export const ReadyEvent = ArmedEvent.extend({
  event: z.literal("ready"),
  go_processes: z.number().int().describe("Go processes running when watch started"),
});

export const ChildStartEvent = z.object({
  event: z.literal("start"),
  time,
  pid: z.number().int(),
  argv: z.array(z.string()),
  cgroup: z.string().nullable(),
  limit_bytes: z.number().int().nullable(),
});

export const KillEvent = z.object({
  event: z
    .enum(["oom_kill", "runtime_oom", "kill"])
    .describe("oom_kill: chosen by the kernel OOM killer; runtime_oom: Go's own fatal out of memory; kill: SIGKILL from elsewhere"),
  message: z.string().nullable().describe("runtime_oom: the runtime's fatal error message"),
  time,
  pid: z.number().int(),
  comm: z.string(),
  exe: z.string().nullable(),
  go_version: z.string().nullable(),
  module: z.string().nullable(),
  profile: z.string().nullable().describe("absolute path of the .pb.gz, or null"),
  reason: z.string().nullable().describe("why there is no profile, or why it is partial"),
  buckets: z.number().int(),
  complete: z.boolean(),
  lost_events: z.number().int(),
  memprofile_rate: z.number().int().nullable(),
  inuse_bytes: z.number().describe("inuse_space total: everything not known to be freed at death (scaled estimate)"),
  gc_live_bytes: z.number().describe("gc_live_space total: live as of the last completed GC"),
  still_running: z.boolean().describe("the OOM killer picked it, but it was still running when reported (not killed, or not yet)"),
  goroutines: z
    .number()
    .int()
    .nullable()
    .describe(
      "goroutines at death, counted as runtime.NumGoroutine does; null where the Go release's layout is unknown (or, stripped, its runtime variables cannot be found)",
    ),
  goroutines_upper_bound: z.boolean().describe("true when GOMAXPROCS exceeded what the probe sums: goroutines is then an upper bound"),
  memory: MemoryFigures,
  anon_rss_kb: z.number().int().nullable(),
  file_rss_kb: z.number().int().nullable(),
  shmem_rss_kb: z.number().int().nullable(),
  total_vm_kb: z.number().int().nullable(),
  oom_score_adj: z.number().int().nullable(),
  trigger: z.object({ pid: z.number().int(), comm: z.string() }).nullable(),
  constraint: z.enum(["memcg", "global"]).nullable().describe("from kprobe:oom_kill_process where the host has kprobes"),
  cgroup: z.string().nullable().describe("the memory cgroup it ran in, as its own thread read it at the kill (v1: the memory hierarchy)"),
  limit_bytes: z.number().int().nullable(),
  ns_pid: nsPid,
  container: ContainerInfo,
  top: TopSites,
  capture_ms: z.number().nullable().describe("from the kernel's OOM decision to the profile on disk"),
  base_profile: z
    .string()
    .nullable()
    .describe("absolute path of a base profile from about --base-age before death, for go tool pprof -diff_base; null without one"),
  base_age_ms: z.number().int().nullable().describe("how long before death the base profile's counters were read"),
});

export const ExitEvent = z.object({
  event: z.literal("exit"),
  time,
  pid: z.number().int(),
  status: z.number().int().describe("what oomprof exits with: the code, or 128+signal"),
  signal: z.string().nullable(),
});

export const SnapshotEvent = z.object({
  event: z.literal("snapshot"),
  time,
  pid: z.number().int(),
  comm: z.string(),
  exe: z.string(),
  go_version: z.string(),
  profile: z.string().nullable(),
  reason: z.string().nullable(),
  buckets: z.number().int(),
  complete: z.boolean(),
  memprofile_rate: z.number().int(),
  inuse_bytes: z.number(),
  gc_live_bytes: z.number(),
  goroutines: z
    .number()
    .int()
    .nullable()
    .describe("as runtime.NumGoroutine counts them; null where the Go release's layout is unknown (or, stripped, its runtime variables cannot be found)"),
  goroutines_upper_bound: z.boolean(),
  memory: MemoryFigures,
  cgroup: z.string().nullable(),
  ns_pid: nsPid,
  container: ContainerInfo,
  top: TopSites,
});

export const UploadEvent = z.object({
  event: z.literal("upload"),
  time,
  pid: z.number().int(),
  profile: z.string(),
  url: z.string().describe("where it went, credentials removed"),
  ok: z.boolean(),
  attempts: z.number().int(),
  error: z.string().nullable(),
});

export const WarningEvent = z.object({ event: z.literal("warning"), time, message: z.string() });

export const OomprofEvent = z.discriminatedUnion("event", [
  ArmedEvent,
  ReadyEvent,
  ChildStartEvent,
  KillEvent,
  ExitEvent,
  SnapshotEvent,
  UploadEvent,
  WarningEvent,
]);
export type OomprofEvent = z.infer<typeof OomprofEvent>;
export type KillEvent = z.infer<typeof KillEvent>;

export function nowIso(): string {
  return new Date().toISOString();
}

/** Writes validated events as NDJSON to a file, or to stdout for "-". */
export class EventWriter {
  private fd: number | undefined;

  constructor(readonly target: string | undefined) {
    if (target === undefined) return;
    if (target === "-") this.fd = 1;
    else {
      try {
        // Never through a symlink planted where the events file should be.
        this.fd = openSync(target, constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT | constants.O_NOFOLLOW, 0o600);
      } catch (e) {
        throw new UserError(`cannot open --events ${target}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
      }
    }
  }

  emit(event: OomprofEvent): void {
    if (this.fd === undefined) return;
    const checked = OomprofEvent.parse(event);
    try {
      writeSync(this.fd, `${JSON.stringify(checked)}\n`);
    } catch (e) {
      // The reader went away (`--events - | head -1`): the child and the profiles matter
      // more than the stream, so carry on without it.
      if ((e as NodeJS.ErrnoException).code !== "EPIPE") throw e;
      process.stderr.write("oomprof: warning: the events reader closed its end; no more events\n");
      this.fd = undefined;
    }
  }

  close(): void {
    if (this.fd !== undefined && this.fd > 2) closeSync(this.fd);
    this.fd = undefined;
  }
}

/** The event's `top`: the first ten sites of a table, each with its file and line. */
export function topSites(sites: readonly Site[]): z.infer<typeof TopSites> {
  return sites
    .slice(0, 10)
    .map((s) => ({ function: s.function, file: s.file, line: s.line, inuse_bytes: s.bytes.inuse, share: Number(s.share.inuse.toFixed(4)) }));
}
