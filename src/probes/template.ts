import preamble from "../../probes/common/preamble.bt" with { type: "text" };
import canary from "../../probes/common/canary.bt" with { type: "text" };
import execHold from "../../probes/common/exec-hold.bt" with { type: "text" };
import execNotify from "../../probes/common/exec-notify.bt" with { type: "text" };
import execWalked from "../../probes/common/exec-walked.bt" with { type: "text" };
import exitMarker from "../../probes/common/exit.bt" with { type: "text" };
import followExec from "../../probes/common/follow-exec.bt" with { type: "text" };
import oomKillProcessKprobe from "../../probes/oom/kprobe-oom-kill-process.bt" with { type: "text" };
import markVictim from "../../probes/oom/mark-victim.bt" with { type: "text" };
import markVictimPidOnly from "../../probes/oom/mark-victim-pid-only.bt" with { type: "text" };
import victimContext from "../../probes/oom/victim-context.bt" with { type: "text" };
import victimSigkill from "../../probes/oom/victim-sigkill.bt" with { type: "text" };
import oomThrow from "../../probes/runtime/oom-throw.bt" with { type: "text" };
import attachExit from "../../probes/walk/attach/exit.bt" with { type: "text" };
import attachSigkill from "../../probes/walk/attach/sigkill.bt" with { type: "text" };
import walkForMap from "../../probes/walk/for-map.bt" with { type: "text" };
import walkForMapCounters from "../../probes/walk/for-map-counters.bt" with { type: "text" };
import walkForMapCounters8 from "../../probes/walk/for-map-counters-8.bt" with { type: "text" };
import walkForMapCountersMap from "../../probes/walk/for-map-counters-map.bt" with { type: "text" };
import counterMap from "../../probes/walk/counter-map.bt" with { type: "text" };
import counterMapCleanup from "../../probes/walk/counter-map-cleanup.bt" with { type: "text" };
import goroutines from "../../probes/walk/goroutines.bt" with { type: "text" };
import goroutinesCleanup from "../../probes/walk/goroutines-cleanup.bt" with { type: "text" };
import walkStart from "../../probes/walk/start.bt" with { type: "text" };
import targetRow from "../../probes/walk/target-row.bt" with { type: "text" };
import targets from "../../probes/walk/targets.bt" with { type: "text" };
import walkWhile from "../../probes/walk/while.bt" with { type: "text" };
import walkWhileCounters from "../../probes/walk/while-counters.bt" with { type: "text" };
import walkMoreCounters from "../../probes/walk/while-more-counters.bt" with { type: "text" };

/*
 * The only way text reaches a generated bpftrace script. Two kinds of placeholder:
 *
 * - `{{NAME}}`, a value: a number, or a Code built by the constructors below, each of
 *   which admits one narrow shape. No constructor takes free text, so nothing a user or a
 *   target controls (a path, a comm, an argument) can reach bpftrace's parser.
 * - `{{> NAME}}` on a line of its own, an include: the line becomes a TrustedFragment,
 *   which only this module makes, from the files in probes/ or by filling and joining
 *   other fragments.
 */

/** oomprof's own script text: a file from probes/, or fragments filled and joined from them. */
class TrustedFragment {
  readonly #text: string;
  constructor(
    /** The probes/ file it came from, for error messages. */
    readonly origin: string,
    text: string,
  ) {
    this.#text = text;
  }
  get text(): string {
    return this.#text;
  }
}
// The type only: no other module can make one.
export type { TrustedFragment };

const probe = (origin: string, text: string) => new TrustedFragment(`probes/${origin}`, text);

/** Every template in probes/. */
export const PROBES = {
  preamble: probe("common/preamble.bt", preamble),
  canary: probe("common/canary.bt", canary),
  execHold: probe("common/exec-hold.bt", execHold),
  execNotify: probe("common/exec-notify.bt", execNotify),
  execWalked: probe("common/exec-walked.bt", execWalked),
  exitMarker: probe("common/exit.bt", exitMarker),
  followExec: probe("common/follow-exec.bt", followExec),
  oomKillProcessKprobe: probe("oom/kprobe-oom-kill-process.bt", oomKillProcessKprobe),
  markVictim: probe("oom/mark-victim.bt", markVictim),
  markVictimPidOnly: probe("oom/mark-victim-pid-only.bt", markVictimPidOnly),
  victimSigkill: probe("oom/victim-sigkill.bt", victimSigkill),
  victimContext: probe("oom/victim-context.bt", victimContext),
  oomThrow: probe("runtime/oom-throw.bt", oomThrow),
  attachExit: probe("walk/attach/exit.bt", attachExit),
  attachSigkill: probe("walk/attach/sigkill.bt", attachSigkill),
  walkForMap: probe("walk/for-map.bt", walkForMap),
  walkForMapCounters: probe("walk/for-map-counters.bt", walkForMapCounters),
  walkForMapCounters8: probe("walk/for-map-counters-8.bt", walkForMapCounters8),
  walkForMapCountersMap: probe("walk/for-map-counters-map.bt", walkForMapCountersMap),
  counterMap: probe("walk/counter-map.bt", counterMap),
  counterMapCleanup: probe("walk/counter-map-cleanup.bt", counterMapCleanup),
  walkWhile: probe("walk/while.bt", walkWhile),
  walkWhileCounters: probe("walk/while-counters.bt", walkWhileCounters),
  walkMoreCounters: probe("walk/while-more-counters.bt", walkMoreCounters),
  walkStart: probe("walk/start.bt", walkStart),
  goroutines: probe("walk/goroutines.bt", goroutines),
  goroutinesCleanup: probe("walk/goroutines-cleanup.bt", goroutinesCleanup),
  targets: probe("walk/targets.bt", targets),
  targetRow: probe("walk/target-row.bt", targetRow),
} as const;

/** Fragments one after another (an empty list is the empty fragment). */
export function joinFragments(parts: readonly TrustedFragment[], origin = "joined"): TrustedFragment {
  for (const p of parts) assertFragment(p, origin);
  return new TrustedFragment(origin, parts.map((p) => p.text).join(""));
}

export const EMPTY_FRAGMENT = joinFragments([], "empty");

type CodeKind = "ident" | "field" | "cmp" | "pred" | "path" | "symbol" | "comment";

/** A piece of bpftrace the generator built, of one narrow kind; see the constructors. */
class Code<K extends CodeKind = CodeKind> {
  readonly #text: string;
  constructor(
    readonly kind: K,
    text: string,
  ) {
    assertNoEscape(kind, text);
    this.#text = text;
  }
  get text(): string {
    return this.#text;
  }
}
export type { Code };

/** What a `{{NAME}}` placeholder may be filled with. */
export type Fill = number | bigint | Code;

/**
 * Whatever the kind: nothing that opens a string, a block, a comment, a statement, a
 * variable or a new line (which would end a `//` comment), and no placeholder syntax.
 */
const NEVER = /[$"'`{}();\\\n\r#]|\/\*|\*\/|\/\//;

function assertNoEscape(kind: string, text: string): void {
  if (text.length === 0 || text.length > 4096 || NEVER.test(text)) throw new Error(`unsafe ${kind} for a probe template: ${JSON.stringify(text.slice(0, 80))}`);
}

const IDENT = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** A bpftrace identifier. */
export function ident(name: string): Code<"ident"> {
  if (!IDENT.test(name)) throw new Error(`unsafe identifier for a probe template: ${JSON.stringify(name)}`);
  return new Code("ident", name);
}

/** A chain of identifiers, `curtask->mm->exe_file`: a field read from a builtin. */
export function fieldPath(...names: string[]): Code<"field"> {
  if (!names.length) throw new Error("an empty field path");
  return new Code("field", names.map((n) => ident(n).text).join("->"));
}

/** `field != n`. */
export function notEqual(lhs: Code<"field">, n: number | bigint): Code<"cmp"> {
  return new Code("cmp", `${lhs.text} != ${numberText("a comparison", n)}`);
}

/** Every comparison holds: `a != 1 && b != 2`, and `1` (true) for none. */
export function allOf(terms: ReadonlyArray<Code<"cmp">>): Code<"pred"> {
  return new Code("pred", terms.length ? terms.map((t) => t.text).join(" && ") : "1");
}

/** An absolute path of plain characters (a uprobe's binary: a symlink oomprof made). */
export function uprobePath(path: string): Code<"path"> {
  if (!/^\/[A-Za-z0-9_./-]+$/.test(path)) throw new Error(`unsafe path for a probe template: ${JSON.stringify(path)}`);
  return new Code("path", path);
}

/** A Go symbol a uprobe names, `runtime.throw`: identifiers joined by dots. */
export function goSymbol(name: string): Code<"symbol"> {
  if (!/^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$/.test(name)) throw new Error(`unsafe symbol for a probe template: ${JSON.stringify(name)}`);
  return new Code("symbol", name);
}

/** Words for a `//` comment (a version, a walk's name); refused anywhere else. */
export function comment(words: string): Code<"comment"> {
  if (!/^[A-Za-z0-9_.+-]+( [A-Za-z0-9_.+-]+)*$/.test(words)) throw new Error(`unsafe comment for a probe template: ${JSON.stringify(words)}`);
  return new Code("comment", words);
}

function numberText(name: string, v: number | bigint): string {
  if (typeof v === "bigint") {
    if (v < 0n) throw new Error(`probe template value for ${name} is negative`);
    return `0x${v.toString(16)}`;
  }
  if (!Number.isSafeInteger(v)) throw new Error(`probe template value for ${name} is not an integer`);
  return String(v);
}

function assertFragment(f: unknown, where: string): asserts f is TrustedFragment {
  if (!(f instanceof TrustedFragment)) throw new Error(`${where}: an include must be a fragment of oomprof's own templates`);
}

/** `{{NAME}}` or `{{> NAME}}`, with the line end after it (an include takes it along). */
const PLACEHOLDER = /\{\{(> )?([A-Z][A-Z0-9_]*)\}\}(\n?)/g;

/**
 * Fills a template: each `{{NAME}}` from `values`, each `{{> NAME}}` line from
 * `includes` (the fragment's own lines, or nothing). Every placeholder must have its
 * fill and every fill its placeholder; included text is not scanned again, so it must
 * already be complete.
 */
export function fill(template: TrustedFragment, values: Record<string, Fill> = {}, includes: Record<string, TrustedFragment> = {}): TrustedFragment {
  assertFragment(template, "fill");
  const src = template.text;
  const where = template.origin;
  const stray = src.replace(PLACEHOLDER, "");
  if (stray.includes("{{") || stray.includes("}}")) throw new Error(`${where}: a malformed placeholder near ${JSON.stringify(stray.slice(Math.max(0, stray.search(/\{\{|\}\}/) - 20)).slice(0, 60))}`);
  const used = new Set<string>();
  const out = src.replace(PLACEHOLDER, (_, include: string | undefined, name: string, eol: string, at: number) => {
    if (include) {
      if (!(at === 0 || src[at - 1] === "\n") || (eol !== "\n" && at + name.length + 6 !== src.length)) throw new Error(`${where}: {{> ${name}}} must be a line of its own`);
      if (!Object.hasOwn(includes, name)) throw new Error(`${where}: include {{> ${name}}} has no fragment`);
      const f = includes[name];
      assertFragment(f, where);
      if (f.text.includes("{{")) throw new Error(`${where}: include ${name} (${f.origin}) is not filled`);
      if (f.text !== "" && !f.text.endsWith("\n")) throw new Error(`${where}: include ${name} (${f.origin}) does not end its line`);
      used.add(`> ${name}`);
      return f.text;
    }
    if (!Object.hasOwn(values, name)) throw new Error(`${where}: placeholder {{${name}}} has no value`);
    const v = values[name];
    used.add(name);
    if (typeof v === "number" || typeof v === "bigint") return numberText(name, v) + eol;
    if (!(v instanceof Code)) throw new Error(`${where}: the value for ${name} is not a number or a generator-built value`);
    if (v.kind === "comment") {
      const line = src.slice(src.lastIndexOf("\n", at - 1) + 1, at);
      if (!/^\s*\/\//.test(line)) throw new Error(`${where}: {{${name}}} takes comment words, and is not in a // comment`);
    }
    return v.text + eol;
  });
  const unused = [...Object.keys(values).filter((k) => !used.has(k)), ...Object.keys(includes).filter((k) => !used.has(`> ${k}`)).map((k) => `> ${k}`)];
  if (unused.length) throw new Error(`${where}: no placeholder for ${unused.map((k) => `{{${k}}}`).join(", ")}`);
  return new TrustedFragment(where, out);
}
