import { z } from "zod";
import { config } from "../config.ts";
import { UserError } from "../errors.ts";
import { parseUploadUrl } from "../output/upload/index.ts";
import { SizeSchema, sizeSchema } from "./sizes.ts";
import { DurationSchema } from "./durations.ts";

/**
 * Every flag oomprof takes, declared once: how cac spells it, its --help line, the zod
 * schema of its value, and the commands that take it. main.ts registers each command's
 * flags from this table and parses what cac gives through the schemas derived here.
 */

export type CommandName = "run" | "watch" | "snapshot" | "report" | "doctor" | "probes";

export interface OptionDef {
  /** cac's spelling: `--name <value>` takes a value, `--name` alone is a switch. */
  flag: string;
  /** Its --help line. */
  help: string;
  /** Where one command's --help says it differently. */
  helpFor?: Partial<Record<CommandName, string>>;
  /** The value as cac gives it (camelCase key, `undefined` when absent) to what the command gets. */
  schema: z.ZodType;
  commands: readonly CommandName[];
  /**
   * Who reads it: the command (the default), main's log set-up, or both. Log-only flags
   * stay out of the command's flags so that each command sees just what it uses.
   */
  readBy?: "command" | "log" | "both";
}

/**
 * The table. Its key is the camelCase name cac gives the flag's value under; the order
 * is the order every command's --help lists its flags in.
 */
export const OPTIONS = {
  limit: {
    flag: "--limit <size>",
    help: "Run it in a fresh memory cgroup with this limit (256M, 1G, ...)",
    schema: SizeSchema.optional(),
    commands: ["run"],
  },
  out: {
    flag: "--out <dir>",
    help: "Directory for profiles (default: $OOMPROF_OUT or .)",
    helpFor: { snapshot: "Directory for the profile (default: $OOMPROF_OUT or .)" },
    // A function, so the environment is read when flags are parsed, not at import.
    schema: z
      .string()
      .min(1)
      .default(() => config().out),
    commands: ["run", "watch", "snapshot"],
  },
  events: {
    flag: "--events <path>",
    help: "Write NDJSON events to this file, or - for stdout",
    helpFor: {
      run: "Write NDJSON events to this file, or - for stdout (the child's stdout then goes to stderr)",
      snapshot: "Write an NDJSON snapshot event to this file, or - for stdout",
    },
    schema: z.string().min(1).optional(),
    commands: ["run", "watch", "snapshot"],
  },
  upload: {
    flag: "--upload <url>",
    help: "Also send each profile to Pyroscope (http://host:4040) or Parca (parca+http://host:7070)",
    schema: z
      .string()
      .min(1)
      .transform((u) => parseUploadUrl(u))
      .optional(),
    commands: ["run", "watch"],
  },
  baseAge: {
    flag: "--base-age <duration>",
    help: "Also write a base profile from this long before death, for go tool pprof -diff_base (default 60s; 0: none)",
    schema: DurationSchema.default(60_000),
    commands: ["run", "watch"],
  },
  rate: {
    flag: "--rate <size>",
    help: "MemProfileRate to turn on in a binary built without memory profiling (default 512K)",
    schema: sizeSchema(1, "1").default(512 * 1024),
    commands: ["run"],
  },
  quiet: {
    flag: "--quiet",
    help: "Only warnings and errors on stderr",
    schema: z.boolean().default(false),
    commands: ["run", "watch"],
    readBy: "both",
  },
  verbose: {
    flag: "--verbose",
    help: "More detail on stderr",
    // Any truthy value, as before: a repeated --verbose arrives as [true, true].
    schema: z.unknown().optional().transform(Boolean),
    commands: ["run", "watch"],
    readBy: "log",
  },
  logFormat: {
    flag: "--log-format <fmt>",
    help: "text (default) or json: one JSON object a line on stderr",
    schema: z.enum(["text", "json"], { error: (issue) => `use text or json, not ${JSON.stringify(issue.input)}` }).default("text"),
    commands: ["run", "watch"],
    readBy: "log",
  },
  holdNewBinaries: {
    flag: "--hold-new-binaries",
    help: "Stop the first process of each new executable until it is read (no unprofiled window for new Go binaries)",
    schema: z.boolean().default(false),
    commands: ["watch"],
  },
  output: {
    flag: "-o, --output <file>",
    help: "Where to write it (default: FILE with .pb.gz replaced by .html)",
    schema: z.string().min(1, "needs a file name").optional(),
    commands: ["report"],
  },
  json: {
    flag: "--json",
    help: "Print the checks as one JSON object",
    schema: z.boolean().default(false),
    commands: ["doctor"],
  },
  print: {
    flag: "--print",
    help: "Print the script",
    schema: z.boolean().default(false),
    commands: ["probes"],
  },
  bpftraceVersion: {
    flag: "--bpftrace-version <x.y.z>",
    help: "Generate for this bpftrace version instead of the installed one",
    schema: z.string().optional(),
    commands: ["probes"],
  },
  kprobes: {
    flag: "--kprobes",
    help: "Assume the host lists kprobe:oom_kill_process",
    schema: z.boolean().optional(),
    commands: ["probes"],
  },
} as const satisfies Record<string, OptionDef>;

type Table = typeof OPTIONS;
export type OptionKey = keyof Table;

/** Positional arguments, validated with the flags (an error names them like flags: `--pid: ...`). */
const ARGS = {
  snapshot: {
    pid: z.coerce.number({ message: "PID must be a number" }).int().positive("PID must be a positive integer"),
  },
  report: {
    file: z.string({ message: "a profile file is required" }).min(1, "a profile file is required"),
  },
} as const satisfies Partial<Record<CommandName, z.ZodRawShape>>;

type Args<C extends CommandName> = C extends keyof typeof ARGS ? (typeof ARGS)[C] : Record<never, never>;

/** The table's keys that command C takes and reads. */
type CommandKeys<C extends CommandName> = {
  [K in OptionKey]: C extends Table[K]["commands"][number] ? (Table[K] extends { readBy: "log" } ? never : K) : never;
}[OptionKey];

type FlagShape<C extends CommandName> = Args<C> & { [K in CommandKeys<C>]: Table[K]["schema"] };

const entries = Object.entries(OPTIONS) as [OptionKey, OptionDef][];

/** Command C's flags and arguments: its positional arguments first, then its flags in table order. */
function commandSchema<C extends CommandName>(command: C): z.ZodObject<FlagShape<C>> {
  const args = (ARGS as Partial<Record<CommandName, z.ZodRawShape>>)[command] ?? {};
  const flags = entries.filter(([, o]) => o.commands.includes(command) && o.readBy !== "log").map(([k, o]) => [k, o.schema]);
  return z.object({ ...args, ...Object.fromEntries(flags) }) as unknown as z.ZodObject<FlagShape<C>>;
}

export const RunFlags = commandSchema("run");
export type RunFlags = z.infer<typeof RunFlags>;
export const WatchFlags = commandSchema("watch");
export type WatchFlags = z.infer<typeof WatchFlags>;
export const SnapshotFlags = commandSchema("snapshot");
export type SnapshotFlags = z.infer<typeof SnapshotFlags>;
export const ReportFlags = commandSchema("report");
export type ReportFlags = z.infer<typeof ReportFlags>;
export const DoctorFlags = commandSchema("doctor");
export type DoctorFlags = z.infer<typeof DoctorFlags>;
export const ProbesFlags = commandSchema("probes");
export type ProbesFlags = z.infer<typeof ProbesFlags>;

export const COMMAND_FLAGS = {
  run: RunFlags,
  watch: WatchFlags,
  snapshot: SnapshotFlags,
  report: ReportFlags,
  doctor: DoctorFlags,
  probes: ProbesFlags,
} as const;

export type CommandFlags<C extends CommandName> = z.infer<(typeof COMMAND_FLAGS)[C]>;

/**
 * --quiet, --verbose and --log-format, for main's log set-up. They mean the same on
 * every command that takes them; a command without them gets the defaults.
 */
export const LogFlags = z.object(
  Object.fromEntries(entries.filter(([, o]) => o.readBy === "log" || o.readBy === "both").map(([k, o]) => [k, o.schema])) as {
    [K in OptionKey as Table[K] extends { readBy: "log" | "both" } ? K : never]: Table[K]["schema"];
  },
);
export type LogFlags = z.infer<typeof LogFlags>;

/** Command C's flags, with the help line that command shows for each, in --help order. */
export function optionsFor(command: CommandName): { key: OptionKey; flag: string; help: string }[] {
  return entries.filter(([, o]) => o.commands.includes(command)).map(([key, o]) => ({ key, flag: o.flag, help: o.helpFor?.[command] ?? o.help }));
}

/** `logFormat` -> `--log-format`: how the user spelled what cac handed over in camelCase. */
export function flagName(key: string): string {
  return `--${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
}

/** Validates with zod and turns the first problem into one readable line, exit status 2. */
export function flagsOf<T extends z.ZodType>(schema: T, raw: Record<string, unknown>): z.infer<T> {
  const r = schema.safeParse(raw);
  if (!r.success) {
    const issue = r.error.issues[0]!;
    const flag = issue.path.length ? `${flagName(String(issue.path[0]))}: ` : "";
    throw new UserError(`${flag}${issue.message}`, 2);
  }
  return r.data;
}

/** Command C's flags from cac's parsed options (camelCase keys) plus its positional arguments. */
export function parseFlags<C extends CommandName>(command: C, opts: Record<string, unknown>, args: Record<string, unknown> = {}): CommandFlags<C> {
  return flagsOf(COMMAND_FLAGS[command], { ...opts, ...args }) as CommandFlags<C>;
}
