/** Reads a child's stdout line by line, letting a test wait for a line that matches. */
export class LineReader {
  private lines: string[] = [];
  private waiters: Array<() => void> = [];
  private buf = "";

  constructor(stream: ReadableStream<Uint8Array>) {
    void (async () => {
      const dec = new TextDecoder();
      for await (const chunk of stream) {
        this.buf += dec.decode(chunk, { stream: true });
        let nl: number;
        while ((nl = this.buf.indexOf("\n")) >= 0) {
          this.lines.push(this.buf.slice(0, nl));
          this.buf = this.buf.slice(nl + 1);
        }
        for (const w of this.waiters.splice(0)) w();
      }
    })();
  }

  all(): string[] {
    return [...this.lines];
  }

  async waitFor(pred: (line: string) => boolean, timeoutMs: number): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const hit = this.lines.find(pred);
      if (hit !== undefined) return hit;
      if (Date.now() > deadline) throw new Error(`timed out waiting for a line; saw:\n${this.lines.join("\n")}`);
      await new Promise<void>((r) => {
        this.waiters.push(r);
        setTimeout(r, 200);
      });
    }
  }
}
