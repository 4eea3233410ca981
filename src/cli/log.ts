/**
 * Progress and warnings on stderr, one line each, prefixed so they stand out from the
 * child's output; or, with --log-format json, one JSON object a line for machines.
 */
let level: "quiet" | "normal" | "verbose" = "normal";
let json = false;

function write(kind: "info" | "warning" | "debug", msg: string): void {
  if (json) process.stderr.write(`${JSON.stringify({ time: new Date().toISOString(), level: kind, msg })}\n`);
  else process.stderr.write(kind === "warning" ? `oomprof: warning: ${msg}\n` : `oomprof: ${msg}\n`);
}

export const log = {
  setLevel(l: typeof level) {
    level = l;
  },
  setJson(on: boolean) {
    json = on;
  },
  /** JSON logs: multi-line human output (the kill summary) is left to the events. */
  get json(): boolean {
    return json;
  },
  info(msg: string) {
    if (level !== "quiet") write("info", msg);
  },
  warn(msg: string) {
    write("warning", msg);
  },
  verbose(msg: string) {
    if (level === "verbose") write("debug", msg);
  },
};
