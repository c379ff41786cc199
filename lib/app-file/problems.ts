/**
 * zod's issues about an app file turned into problems a person can act on: where (file:line:column, from the YAML
 * document's source ranges), which field, and what was expected, with a "did you mean" for unknown keys and values.
 */
import { isMap, isPair, isScalar, isSeq, LineCounter, type Document, type Node } from 'yaml';
import type { z } from 'zod';
import { didYouMean } from './did-you-mean.js';

/** One problem with an app file. */
export interface AppFileProblem {
  readonly line: number;
  readonly column: number;
  /** The field, `apis[0].compute.memorySize` (empty for the file itself). */
  readonly path: string;
  readonly message: string;
}

type Path = readonly PropertyKey[];
type Issue = z.core.$ZodIssue;
type AnySchema = z.core.$ZodType;

/** `apis[0].compute.memorySize` */
export function formatPath(path: Path): string {
  return path
    .map((key, i) => (typeof key === 'number' ? `[${key}]` : i === 0 ? String(key) : `.${String(key)}`))
    .join('');
}

/** Where things are in a parsed document. */
export class Locator {
  constructor(
    private readonly doc: Document,
    private readonly lines: LineCounter,
  ) {}

  /** The position of the value at `path`, or of its nearest ancestor that exists (a missing key's map). */
  at(path: Path): { line: number; column: number } {
    let node: unknown = this.doc.contents;
    let found: unknown = node;
    for (const key of path) {
      node = child(node, key);
      if (node === undefined) break;
      found = node;
    }
    return this.position(found);
  }

  /** The position of `key` in the map at `path` (an unknown key), else of the map. */
  keyAt(path: Path, key: string): { line: number; column: number } {
    let node: unknown = this.doc.contents;
    for (const segment of path) node = child(node, segment);
    if (isMap(node)) {
      const pair = node.items.find((item) => isScalar(item.key) && String(item.key.value) === key);
      if (pair) return this.position(pair.key);
    }
    return this.at(path);
  }

  /** A problem at the value at `path`. */
  problem(path: Path, message: string): AppFileProblem {
    return { ...this.at(path), path: formatPath(path), message };
  }

  position(node: unknown): { line: number; column: number } {
    const offset = (node as Node | undefined)?.range?.[0] ?? 0;
    const { line, col } = this.lines.linePos(offset);
    return { line, column: col };
  }
}

function child(node: unknown, key: PropertyKey): unknown {
  if (isMap(node)) {
    const pair = node.items.find((item) => isPair(item) && isScalar(item.key) && item.key.value === key);
    return pair?.value ?? undefined;
  }
  if (isSeq(node) && typeof key === 'number') return node.items[key];
  return undefined;
}

function valueAt(value: unknown, path: Path): unknown {
  let at = value;
  for (const key of path) {
    if (at === null || typeof at !== 'object') return undefined;
    at = (at as Record<PropertyKey, unknown>)[key];
  }
  return at;
}

/** What a value is, in a message: `a number (20000)`, `a list`, `nothing`. */
function describe(value: unknown): string {
  if (value === undefined) return 'nothing';
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a map';
  if (typeof value === 'string') return `a string ('${value}')`;
  return `a ${typeof value} (${String(value)})`;
}

const TYPE_NAMES: Record<string, string> = {
  string: 'a string',
  number: 'a number',
  int: 'a whole number',
  boolean: 'true or false',
  object: 'a map',
  array: 'a list',
  record: 'a map',
};

/** The problems zod found, each placed in the document. */
export function issueProblems(
  issues: readonly Issue[],
  input: unknown,
  schema: AnySchema,
  at: Locator,
): AppFileProblem[] {
  return issues.flatMap((issue) => describeIssue(issue, [], input, schema, at));
}

function describeIssue(issue: Issue, base: Path, input: unknown, schema: AnySchema, at: Locator): AppFileProblem[] {
  const path = [...base, ...issue.path];
  const value = valueAt(input, path);
  switch (issue.code) {
    case 'unrecognized_keys': {
      const known = objectKeys(schemaAt(schema, path, input));
      return issue.keys.map((key) => {
        const guess = didYouMean(key, known);
        const hint = guess
          ? ` (did you mean '${guess}'?)`
          : known.length > 0
            ? `; expected one of ${known.join(', ')}`
            : '';
        return { ...at.keyAt(path, key), path: formatPath([...path, key]), message: `unknown key '${key}'${hint}` };
      });
    }
    case 'invalid_union': {
      if (issue.errors.length === 0 || 'discriminator' in issue) {
        const options = (issue as { options?: unknown[] }).options?.map(String) ?? [];
        const discriminator = (issue as { discriminator?: string }).discriminator ?? 'kind';
        const kindPath = path.at(-1) === discriminator ? path : [...path, discriminator];
        const kind = valueAt(input, kindPath);
        if (kind === undefined) {
          if (value === undefined || (typeof value === 'object' && value !== null)) {
            return [at.problem(path, `${discriminator} is required: one of ${options.join(', ')}`)];
          }
        }
        const guess = typeof kind === 'string' ? didYouMean(kind, options) : undefined;
        return [
          at.problem(
            kindPath,
            `${describe(kind)} is not one of ${options.join(', ')}${guess ? ` (did you mean '${guess}'?)` : ''}`,
          ),
        ];
      }
      // A union of a shorthand and a map: report the branch the value was meant for (the one whose type matched).
      const rootCode = (branch: readonly Issue[], code: Issue['code']): boolean =>
        branch.some((inner) => inner.code === code && inner.path.length === 0);
      const typed = issue.errors.filter((branch) => !rootCode(branch, 'invalid_type'));
      if (typed.length === 0) {
        return [at.problem(path, unionExpectation(issue.errors, value))];
      }
      const valued = typed.filter((branch) => !rootCode(branch, 'invalid_value'));
      const matching = valued.length > 0 ? valued : typed;
      const best = matching.reduce((a, b) => (b.length < a.length ? b : a));
      return best.flatMap((inner) => describeIssue(inner, path, input, schema, at));
    }
    case 'invalid_type':
      if (value === undefined) return [at.problem(path, 'is required')];
      return [at.problem(path, `expected ${TYPE_NAMES[issue.expected] ?? issue.expected}, got ${describe(value)}`)];
    case 'invalid_value': {
      const options = issue.values.map(String);
      const guess = typeof value === 'string' ? didYouMean(value, options) : undefined;
      const hint = guess ? ` (did you mean '${guess}'?)` : '';
      return [at.problem(path, `${describe(value)} is not one of ${options.join(', ')}${hint}`)];
    }
    case 'too_small':
    case 'too_big':
      return [at.problem(path, boundMessage(issue, value))];
    default:
      return [at.problem(path, issue.message)];
  }
}

function boundMessage(issue: z.core.$ZodIssueTooSmall | z.core.$ZodIssueTooBig, value: unknown): string {
  // Messages written in the schema (with the limit's owner) win over the generic ones.
  if (!/^Too (small|big)/.test(issue.message)) return issue.message;
  const small = issue.code === 'too_small';
  const limit = small ? (issue as z.core.$ZodIssueTooSmall).minimum : (issue as z.core.$ZodIssueTooBig).maximum;
  const inclusive = issue.inclusive !== false;
  if (issue.origin === 'array') return `${small ? 'must list at least' : 'may list at most'} ${String(limit)}`;
  if (issue.origin === 'string') {
    return Number(limit) === 1 && small
      ? 'must not be empty'
      : `must be ${small ? 'at least' : 'at most'} ${String(limit)} characters`;
  }
  const relation = small ? (inclusive ? 'at least' : 'above') : inclusive ? 'at most' : 'below';
  return `${String(value)} must be ${relation} ${String(limit)}`;
}

function unionExpectation(branches: readonly (readonly Issue[])[], value: unknown): string {
  const expected = branches.flatMap((branch) =>
    branch.flatMap((inner) =>
      inner.code === 'invalid_type' && inner.path.length === 0
        ? [TYPE_NAMES[inner.expected] ?? inner.expected]
        : inner.code === 'invalid_value' && inner.path.length === 0
          ? [inner.values.map((v) => `'${String(v)}'`).join(' or ')]
          : [],
    ),
  );
  return `expected ${[...new Set(expected)].join(' or ')}, got ${describe(value)}`;
}

/** The schema that checks the value at `path` (the branch matching the value, through unions). */
function schemaAt(schema: AnySchema, path: Path, input: unknown): AnySchema | undefined {
  let at: AnySchema | undefined = schema;
  let value = input;
  for (const key of [...path, undefined]) {
    at = unwrap(at, value);
    if (key === undefined || at === undefined) break;
    const def = at._zod.def as { type: string; shape?: Record<string, AnySchema>; element?: AnySchema };
    at = def.type === 'object' ? def.shape?.[String(key)] : def.type === 'array' ? def.element : undefined;
    value = value !== null && typeof value === 'object' ? (value as Record<PropertyKey, unknown>)[key] : undefined;
  }
  return at;
}

/** Through optional wrappers and, for unions, to the object branch that matches the value's discriminator. */
function unwrap(schema: AnySchema | undefined, value: unknown): AnySchema | undefined {
  let at = schema;
  for (;;) {
    const def = at?._zod.def as
      { type: string; innerType?: AnySchema; options?: AnySchema[]; discriminator?: string } | undefined;
    if (def === undefined) return undefined;
    if (def.type === 'optional' || def.type === 'default' || def.type === 'nullable') {
      at = def.innerType;
    } else if (def.type === 'union') {
      const objects = (def.options ?? []).filter((option) => option._zod.def.type === 'object');
      const kind =
        def.discriminator && value && typeof value === 'object'
          ? (value as Record<string, unknown>)[def.discriminator]
          : undefined;
      at =
        objects.find((option) => {
          const shape = (option._zod.def as { shape?: Record<string, AnySchema> }).shape;
          const literal = def.discriminator ? shape?.[def.discriminator] : undefined;
          return literal !== undefined && (literal._zod.def as { values?: unknown[] }).values?.includes(kind);
        }) ??
        // A shorthand or a discriminated map (rollout: canary | { kind: canary, ... }): the map's branch.
        unwrap(
          (def.options ?? []).find((option) => option._zod.def.type === 'union'),
          value,
        ) ??
        objects[0] ??
        undefined;
      if (at === undefined) return undefined;
      if (at._zod.def.type !== 'union') return unwrap(at, value);
    } else {
      return at;
    }
  }
}

function objectKeys(schema: AnySchema | undefined): string[] {
  const def = schema?._zod.def as { type: string; shape?: Record<string, unknown> } | undefined;
  return def?.type === 'object' ? Object.keys(def.shape ?? {}) : [];
}

export { LineCounter };
