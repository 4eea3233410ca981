/** Progress and warnings on stderr, one line each, prefixed so they stand out from the child's output. */
let level: "quiet" | "normal" | "verbose" = "normal";

export const log = {
  setLevel(l: typeof level) {
    level = l;
  },
  info(msg: string) {
    if (level !== "quiet") process.stderr.write(`oomprof: ${msg}\n`);
  },
  warn(msg: string) {
    process.stderr.write(`oomprof: warning: ${msg}\n`);
  },
  verbose(msg: string) {
    if (level === "verbose") process.stderr.write(`oomprof: ${msg}\n`);
  },
};
