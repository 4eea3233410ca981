#!/usr/bin/env bun
import { cac } from "cac";
import { z } from "zod";
import { UserError } from "../errors.ts";
import { findBpftrace, parseBpftraceVersion } from "../probes/bpftrace-host.ts";
import { VERSION } from "../version.ts";
import { log } from "./log.ts";
import { ProbesFlags, probesCommand } from "./probes-cmd.ts";
import { RunFlags, runCommand } from "./run.ts";
import { SnapshotFlags, snapshotCommand } from "./snapshot.ts";
import { WatchFlags, watchCommand } from "./watch.ts";
import { ReportFlags, reportCommand } from "./report.ts";
import { DoctorFlags, doctorCommand } from "./doctor.ts";

/** Validates flags with zod and turns the first problem into one readable line. */
function flagsOf<T extends z.ZodTypeAny>(schema: T, raw: Record<string, unknown>): z.infer<T> {
  const r = schema.safeParse(raw);
  if (!r.success) {
    const issue = r.error.issues[0]!;
    const flag = issue.path.length ? `--${String(issue.path[0]).replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}: ` : "";
    throw new UserError(`${flag}${issue.message}`, 2);
  }
  return r.data;
}

/** --quiet, --verbose and --log-format mean the same on every command. */
function setLogLevel(opts: Record<string, unknown>): void {
  if (opts.verbose) log.setLevel("verbose");
  if (opts.quiet) log.setLevel("quiet");
  if (opts.logFormat !== undefined && opts.logFormat !== "text" && opts.logFormat !== "json") {
    throw new UserError(`--log-format: use text or json, not ${JSON.stringify(opts.logFormat)}`, 2);
  }
  log.setJson(opts.logFormat === "json");
}

/** `--version` names the bpftrace oomprof would use, since that decides what it can do. */
function versionLine(): string {
  try {
    const path = findBpftrace();
    const out = Bun.spawnSync([path, "--version"], { stdout: "pipe" }).stdout.toString();
    return `oomprof ${VERSION} (bpftrace ${parseBpftraceVersion(out).text} at ${path})`;
  } catch {
    return `oomprof ${VERSION} (no usable bpftrace found)`;
  }
}

/** cac reads a lone "-" as a flag, so `--events -` is passed on as `--events=-`. */
function joinDashValues(argv: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === "--") return out.concat(argv.slice(i));
    if (a.startsWith("--") && !a.includes("=") && argv[i + 1] === "-") {
      out.push(`${a}=-`);
      i++;
    } else out.push(a);
  }
  return out;
}

async function main(): Promise<number> {
  const cli = cac("oomprof");
  let pending: Promise<number> | undefined;

  cli
    .command("run", "Run a program and capture its Go heap profile if it is OOM-killed")
    .option("--limit <size>", "Run it in a fresh memory cgroup with this limit (256M, 1G, ...)")
    .option("--out <dir>", "Directory for profiles (default: $OOMPROF_OUT or .)")
    .option("--events <path>", "Write NDJSON events to this file, or - for stdout (the child's stdout then goes to stderr)")
    .option("--upload <url>", "Also send each profile to Pyroscope (http://host:4040) or Parca (parca+http://host:7070)")
    .option("--rate <size>", "MemProfileRate to turn on in a binary built without memory profiling (default 512K)")
    .option("--quiet", "Only warnings and errors on stderr")
    .option("--verbose", "More detail on stderr")
    .option("--log-format <fmt>", "text (default) or json: one JSON object a line on stderr")
    .example("sudo oomprof run --limit 256M --out /var/tmp/oom --events - -- ./mygoapp --flag")
    .action((opts: Record<string, unknown>) => {
      setLogLevel(opts);
      const argv = ((opts["--"] as string[] | undefined) ?? []).map(String);
      pending = runCommand(argv, flagsOf(RunFlags, { limit: opts.limit, out: opts.out, events: opts.events, quiet: opts.quiet, rate: opts.rate, upload: opts.upload }));
    });

  cli
    .command("probes", "Show the bpftrace script oomprof would load")
    .option("--print", "Print the script")
    .option("--bpftrace-version <x.y.z>", "Generate for this bpftrace version instead of the installed one")
    .option("--kprobes", "Assume the host lists kprobe:oom_kill_process")
    .example("oomprof probes --print -- ./mygoapp")
    .action((opts: Record<string, unknown>) => {
      const argv = ((opts["--"] as string[] | undefined) ?? []).map(String);
      pending = probesCommand(argv, flagsOf(ProbesFlags, { print: opts.print, bpftraceVersion: opts.bpftraceVersion, kprobes: opts.kprobes }));
    });

  cli
    .command("watch", "Profile any Go process on this host that the OOM killer picks, until stopped")
    .option("--out <dir>", "Directory for profiles (default: $OOMPROF_OUT or .)")
    .option("--events <path>", "Write NDJSON events to this file, or - for stdout")
    .option("--quiet", "Only warnings and errors on stderr")
    .option("--verbose", "More detail on stderr")
    .option("--log-format <fmt>", "text (default) or json: one JSON object a line on stderr")
    .option("--upload <url>", "Also send each profile to Pyroscope (http://host:4040) or Parca (parca+http://host:7070)")
    .option("--hold-new-binaries", "Stop the first process of each new executable until it is read (no unprofiled window for new Go binaries)")
    .example("sudo oomprof watch --out /var/lib/oomprof --events /var/log/oomprof.ndjson")
    .action((opts: Record<string, unknown>) => {
      setLogLevel(opts);
      pending = watchCommand(flagsOf(WatchFlags, { out: opts.out, events: opts.events, quiet: opts.quiet, holdNewBinaries: opts.holdNewBinaries, upload: opts.upload }));
    });

  cli
    .command("snapshot <pid>", "Write the heap profile of a live Go process now, without stopping it")
    .option("--out <dir>", "Directory for the profile (default: $OOMPROF_OUT or .)")
    .option("--events <path>", "Write an NDJSON snapshot event to this file, or - for stdout")
    .example("sudo oomprof snapshot 1234 --out /var/tmp/oom")
    .action((pid: string, opts: Record<string, unknown>) => {
      pending = snapshotCommand(flagsOf(SnapshotFlags, { pid, out: opts.out, events: opts.events }));
    });

  cli
    .command("report <file>", "Write a self-contained HTML report (flame graph, top table) of a profile")
    .option("-o, --output <file>", "Where to write it (default: FILE with .pb.gz replaced by .html)")
    .example("oomprof report leaker-1234-20261126T132902Z.pb.gz -o report.html")
    .action((file: string, opts: Record<string, unknown>) => {
      pending = reportCommand(flagsOf(ReportFlags, { file, output: opts.output }));
    });

  cli
    .command("doctor", "Check that this host has what oomprof needs, and how to fix what is missing")
    .option("--json", "Print the checks as one JSON object")
    .example("sudo oomprof doctor")
    .action((opts: Record<string, unknown>) => {
      pending = doctorCommand(flagsOf(DoctorFlags, { json: opts.json }));
    });

  cli.help();
  if (process.argv.includes("--version") || process.argv.includes("-v")) {
    process.stdout.write(`${versionLine()}\n`);
    return 0;
  }
  cli.parse(joinDashValues(process.argv), { run: false });
  if (cli.options.help) {
    cli.runMatchedCommand();
    return 0;
  }
  if (!cli.matchedCommand) {
    if (cli.args.length) throw new UserError(`unknown command: ${cli.args[0]} (see oomprof --help)`, 2);
    cli.outputHelp();
    return 2;
  }
  await cli.runMatchedCommand();
  return pending ? await pending : 0;
}

try {
  process.exitCode = await main();
  // Leftover handles (a stuck pipe, a timer) must not keep oomprof alive once it is done.
  process.exit(process.exitCode);
} catch (e) {
  if (e instanceof Error && e.name === "CACError") {
    process.stderr.write(`oomprof: ${e.message}\n`);
    process.exitCode = 2;
  } else if (e instanceof UserError) {
    process.stderr.write(`oomprof: ${e.message}\n`);
    process.exitCode = e.exitCode;
  } else {
    const msg = e instanceof Error ? e.message : String(e);
    process.stderr.write(`oomprof: internal error: ${msg.split("\n")[0]}${process.env.OOMPROF_DEBUG ? `\n${(e as Error).stack}` : " (set OOMPROF_DEBUG=1 for details)"}\n`);
    process.exitCode = 70;
  }
}
process.exit(process.exitCode ?? 1);
