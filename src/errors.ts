/**
 * An error meant for the person at the terminal: printed as one line on stderr,
 * never as a stack trace, and mapped to a specific exit status.
 */
export class UserError extends Error {
  constructor(
    message: string,
    readonly exitCode: number = 1,
  ) {
    super(message);
    this.name = "UserError";
  }
}

/** A binary that is not ELF, not Go, truncated, or otherwise unreadable. */
export class BadBinaryError extends UserError {
  constructor(path: string, why: string) {
    super(`${path}: ${why}`, 1);
    this.name = "BadBinaryError";
  }
}
