/**
 * The module graph of lib/, read with TypeScript's own import scanner (static, type-only and dynamic imports and
 * re-exports all count): no import cycle anywhere, and the layering the design states (constructs never reach the
 * runtime; the runtime never loads aws-cdk-lib).
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const LIB = join(ROOT, 'lib');

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return sourceFiles(path);
    return name.endsWith('.ts') && !name.endsWith('.d.ts') ? [path] : [];
  });
}

/** Every module specifier a file names, as TypeScript's scanner finds them. */
function specifiers(file: string): string[] {
  return ts.preProcessFile(readFileSync(file, 'utf8'), true, true).importedFiles.map((f) => f.fileName);
}

/** A relative specifier resolved to the lib/ file it names (`./x.js` → `./x.ts`), else undefined. */
function resolveLocal(from: string, specifier: string): string | undefined {
  if (!specifier.startsWith('.')) return undefined;
  const target = resolve(dirname(from), specifier);
  for (const candidate of [target.replace(/\.js$/, '.ts'), target, `${target}.ts`, join(target, 'index.ts')]) {
    try {
      if (statSync(candidate).isFile()) return candidate;
    } catch {
      // not this candidate
    }
  }
  return undefined;
}

type Graph = Map<string, string[]>;

function libGraph(): Graph {
  const graph: Graph = new Map();
  for (const file of sourceFiles(LIB)) {
    const local = specifiers(file).flatMap((s) => resolveLocal(file, s) ?? []);
    graph.set(file, [...new Set(local)]);
  }
  return graph;
}

/** Every cycle (as the path of files that closes it), found by depth-first search with an on-stack set. */
function findCycles(graph: Graph): string[][] {
  const cycles: string[][] = [];
  const done = new Set<string>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const visit = (node: string): void => {
    stack.push(node);
    onStack.add(node);
    for (const next of graph.get(node) ?? []) {
      if (onStack.has(next)) cycles.push([...stack.slice(stack.indexOf(next)), next]);
      else if (!done.has(next)) visit(next);
    }
    stack.pop();
    onStack.delete(node);
    done.add(node);
  };
  for (const node of [...graph.keys()].sort()) if (!done.has(node)) visit(node);
  return cycles;
}

const show = (cycle: string[]): string => cycle.map((file) => relative(ROOT, file)).join(' → ');

describe('lib/ module graph', () => {
  const graph = libGraph();

  test('the scanner sees the graph: lib/ has its modules and their edges', () => {
    assert.ok(graph.size > 30, `${graph.size} modules`);
    const realtimeApi = graph.get(join(LIB, 'constructs', 'realtime-api.ts'));
    assert.ok(realtimeApi?.includes(join(LIB, 'constructs', 'compute.ts')), 'realtime-api imports compute');
  });

  test('the cycle finder finds a cycle, type-only imports included', () => {
    const a = '/x/a.ts';
    const b = '/x/b.ts';
    const c = '/x/c.ts';
    assert.deepEqual(
      findCycles(
        new Map([
          [a, [b]],
          [b, [c]],
          [c, [a]],
        ]),
      ),
      [[a, b, c, a]],
    );
    assert.deepEqual(
      findCycles(
        new Map([
          [a, [b]],
          [b, [c]],
          [c, []],
        ]),
      ),
      [],
    );
    const typeOnly = ts.preProcessFile("import type { X } from './b.js';\nexport { Y } from './c.js';", true, true);
    assert.deepEqual(
      typeOnly.importedFiles.map((f) => f.fileName),
      ['./b.js', './c.js'],
    );
  });

  test('no import cycle in lib/', () => {
    const cycles = findCycles(graph);
    assert.deepEqual(cycles.map(show), []);
  });

  test('lib/constructs never imports lib/runtime; lib/runtime never imports aws-cdk-lib', () => {
    const problems: string[] = [];
    for (const file of graph.keys()) {
      const path = relative(LIB, file);
      if (path.startsWith('constructs/')) {
        for (const target of graph.get(file)!) {
          if (relative(LIB, target).startsWith('runtime/')) problems.push(`${path} imports ${relative(LIB, target)}`);
        }
      }
      if (path.startsWith('runtime/')) {
        for (const specifier of specifiers(file)) {
          if (/^(aws-cdk-lib|constructs|cdk-nag)(\/|$)/.test(specifier)) problems.push(`${path} imports ${specifier}`);
        }
      }
    }
    assert.deepEqual(problems, []);
  });
});
