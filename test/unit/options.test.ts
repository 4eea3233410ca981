import { describe, expect, test } from "bun:test";
import { join, resolve } from "node:path";
import { cac } from "cac";
import { config, DEFAULT_PRUNE_AFTER_MS, DEFAULT_PRUNE_CHECK_MS, loadConfig } from "../../src/config.ts";
import { UserError } from "../../src/errors.ts";
import { flagName, flagsOf, LogFlags, OPTIONS, optionsFor, parseFlags, type CommandName } from "../../src/cli/options.ts";

const MAIN = join(resolve(import.meta.dir, "../.."), "src/cli/main.ts");

/** What main.ts does: register the command's flags from the table, let cac parse argv. */
function cacParse(command: CommandName, usage: string, argv: string[]): { args: string[]; opts: Record<string, unknown> } {
  const cli = cac("oomprof");
  const cmd = cli.command(usage, "");
  for (const o of optionsFor(command)) cmd.option(o.flag, o.help);
  const parsed = cli.parse(["bun", "oomprof", command, ...argv], { run: false });
  return { args: parsed.args.map(String), opts: parsed.options };
}

/** The one line and exit status a bad flag gives. */
function failure(f: () => unknown): { message: string; exitCode: number } {
  try {
    f();
  } catch (e) {
    if (e instanceof UserError) return { message: e.message, exitCode: e.exitCode };
    throw e;
  }
  throw new Error("no error");
}

describe("the option table", () => {
  test("each key is the camelCase name cac gives its flag's value under", () => {
    for (const [key, o] of Object.entries(OPTIONS)) {
      const long = /--([a-z-]+)/.exec(o.flag)![1]!;
      expect(flagName(key)).toBe(`--${long}`);
    }
  });

  test("each command lists its flags in table order, with its own help lines", () => {
    expect(optionsFor("run").map((o) => o.flag)).toEqual([
      "--limit <size>",
      "--out <dir>",
      "--events <path>",
      "--upload <url>",
      "--base-age <duration>",
      "--rate <size>",
      "--quiet",
      "--verbose",
      "--log-format <fmt>",
    ]);
    expect(optionsFor("watch").map((o) => o.key)).toEqual(["out", "events", "upload", "baseAge", "quiet", "verbose", "logFormat", "holdNewBinaries"]);
    expect(optionsFor("snapshot").map((o) => o.key)).toEqual(["out", "events"]);
    expect(optionsFor("report").map((o) => o.flag)).toEqual(["-o, --output <file>"]);
    expect(optionsFor("doctor").map((o) => o.key)).toEqual(["json"]);
    expect(optionsFor("probes").map((o) => o.key)).toEqual(["print", "bpftraceVersion", "kprobes"]);
    const events = (c: CommandName) => optionsFor(c).find((o) => o.key === "events")!.help;
    expect(events("run")).toEndWith("(the child's stdout then goes to stderr)");
    expect(events("watch")).toBe("Write NDJSON events to this file, or - for stdout");
    expect(events("snapshot")).toBe("Write an NDJSON snapshot event to this file, or - for stdout");
    expect(optionsFor("snapshot")[0]!.help).toStartWith("Directory for the profile ");
  });
});

describe("every command's flags parse from the table", () => {
  test("run", () => {
    const { opts } = cacParse("run", "run", [
      "--limit",
      "256M",
      "--out",
      "/o",
      "--events=-",
      "--upload",
      "http://h:4040",
      "--rate",
      "1K",
      "--base-age",
      "2m",
      "--quiet",
      "--",
      "./app",
      "-x",
    ]);
    expect(opts["--"]).toEqual(["./app", "-x"]);
    const f = parseFlags("run", opts);
    expect(f).toMatchObject({ limit: 256 << 20, out: "/o", events: "-", rate: 1024, baseAge: 120_000, quiet: true });
    expect(f.upload?.kind).toBe("pyroscope");
    // Log-only flags are main's business, not run's.
    expect(Object.keys(f).sort()).toEqual(["baseAge", "events", "limit", "out", "quiet", "rate", "upload"]);
  });

  test("run: defaults", () => {
    expect(parseFlags("run", cacParse("run", "run", []).opts)).toEqual({ out: config().out, quiet: false, rate: 512 * 1024, baseAge: 60_000 });
  });

  test("durations: a unit, or a bare 0", () => {
    const age = (v: unknown) => parseFlags("watch", { baseAge: v }).baseAge;
    expect([age("500ms"), age("1.5s"), age("2m"), age("1h"), age("0"), age(0), age(undefined)]).toEqual([500, 1500, 120_000, 3_600_000, 0, 0, 60_000]);
  });

  test("watch", () => {
    const { opts } = cacParse("watch", "watch", ["--out", "/o", "--events", "/e", "--hold-new-binaries", "--upload", "parca+http://h:7070", "--base-age", "0"]);
    const f = parseFlags("watch", opts);
    expect(f).toMatchObject({ out: "/o", events: "/e", quiet: false, holdNewBinaries: true, baseAge: 0 });
    expect(f.upload?.kind).toBe("parca");
  });

  test("snapshot: the PID is checked with the flags", () => {
    const { args, opts } = cacParse("snapshot", "snapshot <pid>", ["1234", "--out", "/o"]);
    expect(parseFlags("snapshot", opts, { pid: args[0] })).toEqual({ pid: 1234, out: "/o" });
    expect(failure(() => parseFlags("snapshot", opts, { pid: "abc" }))).toEqual({ message: "--pid: PID must be a number", exitCode: 2 });
    expect(failure(() => parseFlags("snapshot", opts, { pid: "0" }))).toEqual({ message: "--pid: PID must be a positive integer", exitCode: 2 });
  });

  test("report: -o is --output", () => {
    const { args, opts } = cacParse("report", "report <file>", ["a.pb.gz", "-o", "r.html"]);
    expect(parseFlags("report", opts, { file: args[0] })).toEqual({ file: "a.pb.gz", output: "r.html" });
    expect(parseFlags("report", {}, { file: "a.pb.gz" })).toEqual({ file: "a.pb.gz" });
  });

  test("doctor", () => {
    expect(parseFlags("doctor", cacParse("doctor", "doctor", ["--json"]).opts)).toEqual({ json: true });
    expect(parseFlags("doctor", {})).toEqual({ json: false });
  });

  test("probes", () => {
    const { opts } = cacParse("probes", "probes", ["--print", "--bpftrace-version", "0.23.2", "--kprobes", "--", "./app"]);
    expect(parseFlags("probes", opts)).toEqual({ print: true, bpftraceVersion: "0.23.2", kprobes: true });
    expect(parseFlags("probes", {})).toEqual({ print: false });
  });

  test("log flags: defaults, and a repeated --verbose still counts", () => {
    expect(flagsOf(LogFlags, {})).toEqual({ quiet: false, verbose: false, logFormat: "text" });
    expect(flagsOf(LogFlags, cacParse("watch", "watch", ["--verbose", "--verbose", "--log-format", "json"]).opts)).toEqual({
      quiet: false,
      verbose: true,
      logFormat: "json",
    });
  });
});

describe("a bad value is one line naming the flag, exit status 2", () => {
  test.each([
    ["run", { limit: "abc" }, '--limit: not a size: "abc" (use e.g. 256M, 1G)'],
    ["run", { limit: 10 }, "--limit: size 10 is too small (at least 1M)"],
    ["run", { rate: "0" }, '--rate: size "0" is too small (at least 1)'],
    ["run", { baseAge: "60" }, '--base-age: not a duration: "60" (use e.g. 60s, 2m, 500ms; 0 for none)'],
    ["watch", { baseAge: "soon" }, '--base-age: not a duration: "soon" (use e.g. 60s, 2m, 500ms; 0 for none)'],
    ["run", { out: 123 }, "--out: Invalid input: expected string, received number"],
    ["watch", { holdNewBinaries: "x" }, "--hold-new-binaries: Invalid input: expected boolean, received string"],
    ["probes", { bpftraceVersion: 1 }, "--bpftrace-version: Invalid input: expected string, received number"],
  ] as [CommandName, Record<string, unknown>, string][])("%s %o", (command, opts, message) => {
    expect(failure(() => parseFlags(command, opts))).toEqual({ message, exitCode: 2 });
  });

  test("--log-format", () => {
    expect(failure(() => flagsOf(LogFlags, { logFormat: "xml" }))).toEqual({ message: '--log-format: use text or json, not "xml"', exitCode: 2 });
  });

  test("--upload: parseUploadUrl's own message", () => {
    const f = failure(() => parseFlags("run", { upload: "ftp://x" }));
    expect(f.exitCode).toBe(2);
    expect(f.message).toStartWith('--upload "ftp://x": unsupported scheme');
  });

  test("the real CLI: `run --limit abc -- true`", () => {
    const r = Bun.spawnSync([process.execPath, MAIN, "run", "--limit", "abc", "--", "true"], { stdout: "pipe", stderr: "pipe" });
    expect(r.exitCode).toBe(2);
    expect(r.stderr.toString()).toBe('oomprof: --limit: not a size: "abc" (use e.g. 256M, 1G)\n');
    expect(r.stdout.toString()).toBe("");
  });
});

describe("config", () => {
  test("defaults", () => {
    expect(loadConfig({})).toEqual({
      out: ".",
      bpftrace: undefined,
      debug: false,
      pageOut: true,
      pruneAfterMs: DEFAULT_PRUNE_AFTER_MS,
      pruneCheckMs: DEFAULT_PRUNE_CHECK_MS,
      recordStream: undefined,
      markVictim: undefined,
      counterMapEntries: undefined,
      newBinaryDelayMs: undefined,
      noColor: false,
      warnings: [],
    });
  });

  test("overrides", () => {
    const c = loadConfig({
      OOMPROF_OUT: "/var/tmp/oom",
      OOMPROF_BPFTRACE: "/opt/bpftrace",
      OOMPROF_DEBUG: "1",
      OOMPROF_PAGEOUT: "0",
      OOMPROF_PRUNE_AFTER_MS: "1500",
      OOMPROF_PRUNE_CHECK_MS: "300",
      OOMPROF_RECORD_STREAM: "/tmp/stream.ndjson",
      OOMPROF_MARK_VICTIM: "pid-only",
      OOMPROF_COUNTER_MAP_ENTRIES: "1000",
      OOMPROF_NEW_BINARY_DELAY_MS: "2500",
      NO_COLOR: "1",
    });
    expect(c).toEqual({
      out: "/var/tmp/oom",
      bpftrace: "/opt/bpftrace",
      debug: true,
      pageOut: false,
      pruneAfterMs: 1500,
      pruneCheckMs: 300,
      recordStream: "/tmp/stream.ndjson",
      markVictim: "pid-only",
      counterMapEntries: 1000,
      newBinaryDelayMs: 2500,
      noColor: true,
      warnings: [],
    });
  });

  test("empty means unset", () => {
    const c = loadConfig({ OOMPROF_OUT: "", OOMPROF_BPFTRACE: "", OOMPROF_DEBUG: "", OOMPROF_PAGEOUT: "", OOMPROF_PRUNE_AFTER_MS: "", NO_COLOR: "" });
    expect(c).toEqual(loadConfig({}));
  });

  test("only 0 turns page-out off", () => {
    expect(loadConfig({ OOMPROF_PAGEOUT: "1" }).pageOut).toBe(true);
    expect(loadConfig({ OOMPROF_PAGEOUT: "0" }).pageOut).toBe(false);
  });

  test("an unusable number falls back to its default, with one warning each", () => {
    const c = loadConfig({ OOMPROF_PRUNE_AFTER_MS: "abc", OOMPROF_PRUNE_CHECK_MS: "-5", OOMPROF_OUT: "/o" });
    expect(c.pruneAfterMs).toBe(DEFAULT_PRUNE_AFTER_MS);
    expect(c.pruneCheckMs).toBe(DEFAULT_PRUNE_CHECK_MS);
    expect(c.out).toBe("/o");
    expect(c.warnings).toEqual(['ignoring OOMPROF_PRUNE_AFTER_MS="abc": not a number', 'ignoring OOMPROF_PRUNE_CHECK_MS="-5": must be more than 0']);
    expect(loadConfig({ OOMPROF_PRUNE_CHECK_MS: "1e12" }).warnings).toEqual(['ignoring OOMPROF_PRUNE_CHECK_MS="1e12": too large for a timer']);
    expect(loadConfig({ OOMPROF_COUNTER_MAP_ENTRIES: "2.5" }).warnings).toEqual(['ignoring OOMPROF_COUNTER_MAP_ENTRIES="2.5": must be a whole number']);
    // Waiting long before pruning is fine: it is compared with a clock, not given to a timer.
    expect(loadConfig({ OOMPROF_PRUNE_AFTER_MS: "1e12" }).pruneAfterMs).toBe(1e12);
  });

  test("config() reads the environment once", () => {
    expect(config()).toBe(config());
  });

  test("the real CLI says what it ignored, then carries on", () => {
    const r = Bun.spawnSync([process.execPath, MAIN, "report", "/nonexistent/x.pb.gz"], {
      stdout: "pipe",
      stderr: "pipe",
      env: { ...process.env, OOMPROF_PRUNE_CHECK_MS: "soon" },
    });
    expect(r.exitCode).toBe(1);
    expect(r.stderr.toString()).toBe(
      'oomprof: warning: ignoring OOMPROF_PRUNE_CHECK_MS="soon": not a number\noomprof: /nonexistent/x.pb.gz: no such file or directory\n',
    );
  });
});
