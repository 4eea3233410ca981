import { z } from "zod";

/**
 * Every environment variable oomprof reads, read and checked in one place (the README's
 * "Environment" table lists them). bpftrace's own environment is passed on to it as a
 * whole elsewhere; that is not configuration.
 *
 * Read lazily, on the first `config()` call, and then kept: in-process tests can set
 * `process.env` before first use, or call `loadConfig` with an environment of their own.
 */
export interface Config {
  /** OOMPROF_OUT: default for `--out`. */
  out: string;
  /** OOMPROF_BPFTRACE: the bpftrace to use instead of the one on PATH. */
  bpftrace: string | undefined;
  /** OOMPROF_DEBUG: stack traces with internal errors. */
  debug: boolean;
  /** OOMPROF_PAGEOUT: page out bpftrace's compiler once attached (off only with `0`). */
  pageOut: boolean;
  /** OOMPROF_PRUNE_AFTER_MS: how long a binary may have no process before `watch` drops it. */
  pruneAfterMs: number;
  /** OOMPROF_PRUNE_CHECK_MS: how often `watch` looks for such binaries. */
  pruneCheckMs: number;
  /** OOMPROF_RECORD_STREAM: a file to append bpftrace's raw output to (debugging, test fixtures). */
  recordStream: string | undefined;
  /** OOMPROF_MARK_VICTIM: `pid-only` generates the probe for kernels whose oom:mark_victim has only pid (tests it on newer ones). */
  markVictim: "pid-only" | undefined;
  /** OOMPROF_COUNTER_MAP_ENTRIES: the walk's counter map (bpftrace 0.27+) this size, not the buckets expected (tests its overflow). */
  counterMapEntries: number | undefined;
  /** OOMPROF_NEW_BINARY_DELAY_MS: a new binary's walk goes live this much later (tests the report of a victim killed before it was). */
  newBinaryDelayMs: number | undefined;
  /** NO_COLOR: no colours on a terminal. */
  noColor: boolean;
  /** One line per variable that was set to something unusable and so ignored. */
  warnings: string[];
}

const Millis = z.coerce.number({ error: "not a number" }).positive("must be more than 0");
/** Timers fire at once when given more than 2^31-1 ms, which would turn a check into a busy loop. */
const TimerMillis = Millis.max(2 ** 31 - 1, "too large for a timer");

/** What each variable may hold. Anything may be a string; only the numbers can be wrong. */
const Env = z.object({
  OOMPROF_OUT: z.string().optional(),
  OOMPROF_BPFTRACE: z.string().optional(),
  OOMPROF_DEBUG: z.string().optional(),
  OOMPROF_PAGEOUT: z.string().optional(),
  OOMPROF_PRUNE_AFTER_MS: Millis.optional(),
  OOMPROF_PRUNE_CHECK_MS: TimerMillis.optional(),
  OOMPROF_RECORD_STREAM: z.string().optional(),
  OOMPROF_MARK_VICTIM: z.literal("pid-only", { error: "the only value is pid-only" }).optional(),
  OOMPROF_COUNTER_MAP_ENTRIES: z.coerce.number({ error: "not a number" }).int("must be a whole number").positive("must be more than 0").optional(),
  OOMPROF_NEW_BINARY_DELAY_MS: TimerMillis.optional(),
  NO_COLOR: z.string().optional(),
});

export const DEFAULT_PRUNE_AFTER_MS = 60_000;
export const DEFAULT_PRUNE_CHECK_MS = 30_000;

/**
 * The configuration an environment gives. An unusable value falls back to its default
 * with a warning rather than stopping oomprof: these are tuning knobs, and a typo in one
 * must not cost a capture.
 */
export function loadConfig(env: Record<string, string | undefined>): Config {
  // Set but empty means unset, as for NO_COLOR (and `OOMPROF_OUT=` must not mean `--out ''`).
  const vars: Record<string, string> = {};
  for (const name of Object.keys(Env.shape)) {
    const v = env[name];
    if (v !== undefined && v !== "") vars[name] = v;
  }
  const warnings: string[] = [];
  const first = Env.safeParse(vars);
  if (!first.success) {
    for (const issue of first.error.issues) {
      const name = String(issue.path[0]);
      if (!(name in vars)) continue;
      warnings.push(`ignoring ${name}=${JSON.stringify(vars[name])}: ${issue.message}`);
      delete vars[name];
    }
  }
  const v = first.success ? first.data : Env.parse(vars);
  return {
    out: v.OOMPROF_OUT ?? ".",
    bpftrace: v.OOMPROF_BPFTRACE,
    debug: v.OOMPROF_DEBUG !== undefined,
    pageOut: v.OOMPROF_PAGEOUT !== "0",
    pruneAfterMs: v.OOMPROF_PRUNE_AFTER_MS ?? DEFAULT_PRUNE_AFTER_MS,
    pruneCheckMs: v.OOMPROF_PRUNE_CHECK_MS ?? DEFAULT_PRUNE_CHECK_MS,
    recordStream: v.OOMPROF_RECORD_STREAM,
    markVictim: v.OOMPROF_MARK_VICTIM,
    counterMapEntries: v.OOMPROF_COUNTER_MAP_ENTRIES,
    newBinaryDelayMs: v.OOMPROF_NEW_BINARY_DELAY_MS,
    noColor: v.NO_COLOR !== undefined,
    warnings,
  };
}

let cached: Config | undefined;

/** This process's configuration, from `process.env` as it was at the first call. */
export function config(): Config {
  cached ??= loadConfig(process.env);
  return cached;
}
