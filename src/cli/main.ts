#!/usr/bin/env bun
import { cac, type Command } from "cac";
import { config } from "../config.ts";
import { UserError } from "../errors.ts";
import { findBpftrace, parseBpftraceVersion } from "../probes/bpftrace-host.ts";
import { VERSION } from "../version.ts";
import { log } from "./log.ts";
import { flagsOf, LogFlags, optionsFor, parseFlags, type CommandName } from "./options.ts";
import { probesCommand } from "./probes-cmd.ts";
import { runCommand } from "./run.ts";
import { snapshotCommand } from "./snapshot.ts";
import { watchCommand } from "./watch.ts";
import { reportCommand } from "./report.ts";
import { doctorCommand } from "./doctor.ts";

type CacOptions = Record<string, unknown>;

/** The command's flags, from the table in options.ts. */
function withOptions(command: Command, name: CommandName): Command {
  for (const o of optionsFor(name)) command.option(o.flag, o.help);
  return command;
}

/**
 * --quiet, --verbose and --log-format mean the same on every command, and are set up
 * before the command's own flags are checked; then the environment's complaints, if any,
 * come out in the format asked for.
 */
function setUpLog(opts: CacOptions): void {
  const flags = flagsOf(LogFlags, opts);
  if (flags.verbose) log.setLevel("verbose");
  if (flags.quiet) log.setLevel("quiet");
  log.setJson(flags.logFormat === "json");
  for (const w of config().warnings) log.warn(w);
}

/** Everything after `--`: the command to run. */
function passthrough(opts: CacOptions): string[] {
  return ((opts["--"] as string[] | undefined) ?? []).map(String);
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

  withOptions(cli.command("run", "Run a program and capture its Go heap profile if it is OOM-killed"), "run")
    .example("sudo oomprof run --limit 256M --out /var/tmp/oom --events - -- ./mygoapp --flag")
    .action((opts: CacOptions) => {
      setUpLog(opts);
      pending = runCommand(passthrough(opts), parseFlags("run", opts));
    });

  withOptions(cli.command("probes", "Show the bpftrace script oomprof would load"), "probes")
    .example("oomprof probes --print -- ./mygoapp")
    .action((opts: CacOptions) => {
      setUpLog(opts);
      pending = probesCommand(passthrough(opts), parseFlags("probes", opts));
    });

  withOptions(cli.command("watch", "Profile any Go process on this host that the OOM killer picks, until stopped"), "watch")
    .example("sudo oomprof watch --out /var/lib/oomprof --events /var/log/oomprof.ndjson")
    .action((opts: CacOptions) => {
      setUpLog(opts);
      pending = watchCommand(parseFlags("watch", opts));
    });

  withOptions(cli.command("snapshot <pid>", "Write the heap profile of a live Go process now, without stopping it"), "snapshot")
    .example("sudo oomprof snapshot 1234 --out /var/tmp/oom")
    .action((pid: string, opts: CacOptions) => {
      setUpLog(opts);
      pending = snapshotCommand(parseFlags("snapshot", opts, { pid }));
    });

  withOptions(cli.command("report <file>", "Write a self-contained HTML report (flame graph, top table) of a profile"), "report")
    .example("oomprof report leaker-1234-20261126T132902Z.pb.gz -o report.html")
    .action((file: string, opts: CacOptions) => {
      setUpLog(opts);
      pending = reportCommand(parseFlags("report", opts, { file }));
    });

  withOptions(cli.command("doctor", "Check that this host has what oomprof needs, and how to fix what is missing"), "doctor")
    .example("sudo oomprof doctor")
    .action((opts: CacOptions) => {
      setUpLog(opts);
      pending = doctorCommand(parseFlags("doctor", opts));
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
    process.stderr.write(
      `oomprof: internal error: ${msg.split("\n")[0]}${config().debug ? `\n${(e as Error).stack}` : " (set OOMPROF_DEBUG=1 for details)"}\n`,
    );
    process.exitCode = 70;
  }
}
process.exit(process.exitCode ?? 1);
