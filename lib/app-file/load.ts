/**
 * Reads an app file (`arclight.yaml`, `.yml` or `.json`: YAML 1.2 reads JSON too, keeping positions), checks it
 * against the schema and against what the constructs would refuse (each compute's own problems(), the predictor's
 * and the model's files), and reports every problem at once, each at its file:line:column.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { parseDocument } from 'yaml';
import { lambdaMemoryProblems } from '../constructs/async/async-api.js';
import { LAMBDA_MAX_TIMEOUT } from '../constructs/async/async-lambda-worker.js';
import { PRIMARY_VARIANT } from '../variant-split.js';
import { Compute, LambdaCompute } from '../constructs/compute.js';
import { fileSize, ortFormatFormatProblem, sha256OfFile } from '../constructs/model-source.js';
import { Predictor } from '../constructs/predictor.js';
import { modelFileFormat } from '../model-format.js';
import type { ModelFormat } from '../predictor.js';
import { StartupError } from '../runtime/startup-error.js';
import { apiStackName, computeOf, isS3Uri, modelOptions, rolloutOf, type LoadedAppFile } from './build-app.js';
import { issueProblems, LineCounter, Locator, type AppFileProblem } from './problems.js';
import {
  apiSchema,
  APP_FILE_DEFAULTS,
  APP_FILE_NAMES,
  appFileSchema,
  type AppFileApi,
  type AppFileModel,
} from './schema.js';

export type { AppFileProblem, LoadedAppFile };

/** An app file with problems: every one of them, one per line. */
export class AppFileError extends StartupError {
  constructor(
    /** The file, as the user named it (relative to the working directory when under it). */
    readonly file: string,
    readonly problems: readonly AppFileProblem[],
  ) {
    super(
      `${file} has ${problems.length} problem${problems.length === 1 ? '' : 's'}:\n${problems.map((p) => `  ${formatProblem(file, p)}`).join('\n')}`,
    );
  }
}

/** `arclight.yaml:7:17 apis[0].compute.memorySize: 20000 is above Lambda's 10240 MB` */
export function formatProblem(file: string, problem: AppFileProblem): string {
  return `${file}:${problem.line}:${problem.column} ${problem.path ? `${problem.path}: ` : ''}${problem.message}`;
}

/** The app file in `dir`, if there is one. */
export function findAppFile(dir: string): string | undefined {
  return APP_FILE_NAMES.map((name) => join(dir, name)).find((file) => existsSync(file));
}

/** Reads and checks an app file; throws an AppFileError listing every problem. */
export function loadAppFile(file: string, shownAs: string = displayName(file)): LoadedAppFile {
  const path = resolve(file);
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new StartupError(`cannot read ${shownAs}: ${(error as Error).message}`);
  }
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
  if (doc.errors.length > 0) {
    throw new AppFileError(
      shownAs,
      doc.errors.map((error) => {
        const { line, col } = lines.linePos(error.pos[0]);
        return { line, column: col, path: '', message: error.message.split('\n')[0]! };
      }),
    );
  }
  const input: unknown = doc.toJS();
  const at = new Locator(doc, lines);
  if (input === null || input === undefined) {
    throw new AppFileError(shownAs, [at.problem([], 'the file is empty; it needs at least apis: with one API')]);
  }
  const parsed = appFileSchema.safeParse(input);
  if (parsed.success) {
    const loaded: LoadedAppFile = { file: path, dir: dirname(path), app: parsed.data };
    const problems = constructProblems(loaded, validApis(parsed.data.apis), at);
    if (problems.length > 0) throw new AppFileError(shownAs, sorted(problems));
    return loaded;
  }
  // Every problem at once: the schema's, and the constructs' for each API that passes the schema by itself.
  const stackName = appFileSchema.shape.stackName.safeParse((input as Record<string, unknown>)['stackName']);
  const partial: LoadedAppFile = {
    file: path,
    dir: dirname(path),
    app: { apis: [], ...(stackName.success && stackName.data ? { stackName: stackName.data } : {}) },
  };
  const apis = (input as Record<string, unknown>)['apis'];
  const checked = Array.isArray(apis)
    ? apis.flatMap((api: unknown, i) => {
        const one = apiSchema.safeParse(api);
        return one.success ? [[i, one.data] as const] : [];
      })
    : [];
  throw new AppFileError(
    shownAs,
    sorted([
      ...issueProblems(parsed.error.issues, input, appFileSchema, at),
      ...constructProblems(partial, checked, at),
    ]),
  );
}

function validApis(apis: readonly AppFileApi[]): (readonly [number, AppFileApi])[] {
  return apis.map((api, i) => [i, api] as const);
}

function displayName(file: string): string {
  const path = resolve(file);
  return path.startsWith(`${process.cwd()}/`) ? path.slice(process.cwd().length + 1) : path;
}

function sorted(problems: AppFileProblem[]): AppFileProblem[] {
  return problems.sort((a, b) => a.line - b.line || a.column - b.column);
}

/**
 * What the constructs would refuse at synth, placed in the file: names that collide, files that are missing, a local
 * model whose sha256 differs, and each compute's own problems() (its limits and the model's fit), mapped to the field
 * they name.
 */
function constructProblems(
  loaded: LoadedAppFile,
  apis: readonly (readonly [number, AppFileApi])[],
  at: Locator,
): AppFileProblem[] {
  const problems: AppFileProblem[] = [];
  const names = new Map<string, number>();
  const stacks = new Map<string, string>();
  for (const [i, api] of apis) {
    const previous = names.get(api.name);
    if (previous !== undefined) {
      problems.push(at.problem(['apis', i, 'name'], `'${api.name}' is also the name of apis[${previous}]`));
    }
    names.set(api.name, i);
    const stack = apiStackName(loaded, api.name);
    const clash = stacks.get(stack);
    if (clash !== undefined && clash !== api.name) {
      problems.push(at.problem(['apis', i, 'name'], `deploys as stack ${stack}, as '${clash}' does`));
    }
    stacks.set(stack, api.name);
    problems.push(...apiProblems(loaded, api, i, at));
  }
  return problems;
}

function apiProblems(loaded: LoadedAppFile, api: AppFileApi, i: number, at: Locator): AppFileProblem[] {
  const problems: AppFileProblem[] = [];
  const base = ['apis', i] as const;
  if (api.predictor !== undefined) {
    for (const problem of Predictor.fromEntry(resolve(loaded.dir, api.predictor)).bind().problems) {
      problems.push(
        at.problem([...base, 'predictor'], problem.replace(resolve(loaded.dir, api.predictor), api.predictor)),
      );
    }
  }
  const model = modelOptions(api.model);
  const modelPath = typeof api.model === 'string' ? [...base, 'model'] : [...base, 'model', 'path'];
  let modelBytes: number | undefined;
  let format: ModelFormat | undefined = model.format;
  /** The local file's format, once it is known to exist. */
  let fileFormat: ModelFormat | undefined;
  if (isS3Uri(model.path)) {
    if (!/^s3:\/\/([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])\/(.+)$/.test(model.path)) {
      problems.push(at.problem(modelPath, `'${model.path}' is not an S3 URI (s3://bucket/key)`));
    }
    modelBytes = model.sizeBytes;
  } else {
    const file = resolve(loaded.dir, model.path);
    const size = fileSize(file);
    if (size === undefined) {
      problems.push(
        at.problem(modelPath, `model file ${model.path} does not exist (paths are relative to the app file)`),
      );
    } else {
      modelBytes = size;
      format = fileFormat = modelFileFormat(file, size, model.format);
      if (model.sha256 !== undefined) {
        const actual = sha256OfFile(file);
        if (actual !== model.sha256.toLowerCase()) {
          problems.push(at.problem([...base, 'model', 'sha256'], `${model.path} has sha256 ${actual}, not this one`));
        }
      }
    }
    if (model.sizeBytes !== undefined) {
      problems.push(
        at.problem([...base, 'model', 'sizeBytes'], "applies to s3:// models; a local file's size is read from it"),
      );
    }
  }
  problems.push(...ortFormatProblems(model, () => fileFormat, [...base, 'model'], at));
  if (model.module !== undefined && fileSize(resolve(loaded.dir, model.module)) === undefined) {
    problems.push(at.problem([...base, 'model', 'module'], `module file ${model.module} does not exist`));
  }
  problems.push(...operationsProblems(api, base, at, { sizeBytes: modelBytes, format: format ?? 'onnx' }, loaded.dir));
  if (api.compute !== undefined) {
    const compute = computeOf(api.compute);
    const keys = Object.keys(api.compute);
    const isAsync = api.async !== undefined && api.async !== false;
    for (const problem of compute.problems(modelBytes, format ?? 'onnx')) {
      // An async API on ECS may have no task: its queue's alarm scales it out from zero (AsyncApi's own check).
      if (isAsync && api.compute.kind === 'ecs' && /^minTasks must be an integer of at least 1/.test(problem)) continue;
      // A compute problem starts with, or names, the prop it is about; placed there when the file sets it.
      const key =
        keys.find((k) => problem.startsWith(`${k} `)) ?? keys.find((k) => k !== 'kind' && problem.includes(k));
      problems.push(at.problem([...base, 'compute', ...(key ? [key] : [])], problem));
    }
    if (api.batching !== undefined && api.compute.kind === 'lambda') {
      problems.push(
        at.problem(
          [...base, 'batching'],
          'applies to the container computes (sagemaker, ecs); Lambda serves one request at a time',
        ),
      );
    }
  } else if (api.batching !== undefined) {
    problems.push(
      at.problem(
        [...base, 'batching'],
        'applies to the container computes (sagemaker, ecs); the default compute, Lambda, serves one request at a time',
      ),
    );
  }
  return problems;
}

/**
 * `ortFormat: true` where ModelSource cannot honour it: on an s3:// model (only `fromAsset` converts; `fromBucket`
 * serves the object as it is) and on a model that is not ONNX (the construct's own problem). `modelPath` is where the
 * model's map is in the file; `fileFormat` gives the local file's format (read only when asked), undefined when the
 * file is missing.
 */
function ortFormatProblems(
  model: AppFileModel,
  fileFormat: () => ModelFormat | undefined,
  modelPath: readonly (string | number)[],
  at: Locator,
): AppFileProblem[] {
  if (model.ortFormat !== true) return [];
  const path = [...modelPath, 'ortFormat'];
  if (isS3Uri(model.path)) {
    return [
      at.problem(
        path,
        'converts a local ONNX file at synth; an s3:// model is served as it is (upload the .ort file itself instead)',
      ),
    ];
  }
  const format = fileFormat();
  // A missing file is reported at its path already.
  const problem = format === undefined ? undefined : ortFormatFormatProblem(format);
  return problem !== undefined ? [at.problem(path, problem)] : [];
}

/** The realtime options AsyncApi has none of yet. */
const REALTIME_ONLY = ['batching', 'docs', 'rollout', 'monitoring', 'tracing', 'dataCapture', 'variants'] as const;

/** An async API on Lambda: its timeout within Lambda's 15 minutes, and none of the SageMaker-only options. */
function lambdaAsyncProblems(
  options: Exclude<AppFileApi['async'], boolean | undefined>,
  path: readonly (string | number)[],
  at: Locator,
): AppFileProblem[] {
  const problems: AppFileProblem[] = [];
  const max = LAMBDA_MAX_TIMEOUT.toSeconds();
  if (options.timeout !== undefined && options.timeout > max) {
    problems.push(
      at.problem([...path, 'timeout'], `${options.timeout} is above Lambda's ${max} s (sagemaker takes 3600)`),
    );
  }
  for (const key of ['maxConcurrentInvocationsPerInstance', 'targetBacklogPerInstance', 'minInstances'] as const) {
    if (options[key] !== undefined) problems.push(at.problem([...path, key], 'applies to the sagemaker compute only'));
  }
  return problems;
}

/**
 * What the constructs refuse of the async, rollout and data-capture options: an async API with realtime-only
 * options; a rollout its compute cannot run (the rollout's own problems()); data capture
 * on Lambda.
 */
function operationsProblems(
  api: AppFileApi,
  base: readonly [string, number],
  at: Locator,
  model: { readonly sizeBytes: number | undefined; readonly format: ModelFormat },
  dir: string,
): AppFileProblem[] {
  const problems: AppFileProblem[] = [];
  const kind = api.compute?.kind ?? 'lambda';
  if (api.async !== undefined && api.async !== false) {
    const compute = api.compute !== undefined ? computeOf(api.compute) : Compute.lambda();
    const maxBodySize = api.async === true ? undefined : api.async.maxBodySize;
    if (compute instanceof LambdaCompute) {
      // AsyncApi's own check: a job's body is held about four times beside the model.
      const maxBodyBytes = (maxBodySize ?? APP_FILE_DEFAULTS.async.maxBodySize) * 2 ** 20;
      const path =
        maxBodySize !== undefined
          ? [...base, 'async', 'maxBodySize']
          : api.compute !== undefined && 'memorySize' in api.compute
            ? [...base, 'compute', 'memorySize']
            : [...base, 'async'];
      for (const problem of lambdaMemoryProblems(compute, model, maxBodyBytes))
        problems.push(at.problem(path, problem));
      if (api.async !== true) problems.push(...lambdaAsyncProblems(api.async, [...base, 'async'], at));
    }
    for (const key of REALTIME_ONLY) {
      if (api[key] !== undefined && !(key === 'batching' && kind === 'lambda')) {
        problems.push(at.problem([...base, key], 'applies to realtime APIs; async APIs do not have it yet'));
      }
    }
    return problems;
  }
  if (api.rollout !== undefined) {
    const keys = typeof api.rollout === 'string' ? [] : Object.keys(api.rollout);
    for (const problem of rolloutOf(api.rollout).problems(kind)) {
      // A rollout problem names the option it is about ("rollout interval ...", "rollout batchPercent ..."); the kind otherwise.
      const key =
        keys.find((k) => k !== 'kind' && problem.includes(` ${k} `)) ??
        (problem.includes('%') && keys.includes('percent') ? 'percent' : 'kind');
      const path = typeof api.rollout === 'string' ? [...base, 'rollout'] : [...base, 'rollout', key];
      problems.push(at.problem(path, problem));
    }
  }
  problems.push(...variantsProblems(api, base, at, kind, dir));
  if (api.dataCapture !== undefined && kind === 'lambda') {
    problems.push(
      at.problem(
        [...base, 'dataCapture'],
        'runs on the container computes (sagemaker, ecs): a frozen Lambda sandbox cannot upload captures',
      ),
    );
  }
  return problems;
}

/** What the constructs refuse of the variants, each at the option it is about. */
function variantsProblems(
  api: AppFileApi,
  base: readonly [string, number],
  at: Locator,
  kind: 'lambda' | 'sagemaker' | 'ecs',
  dir: string,
): AppFileProblem[] {
  const variants = api.variants ?? [];
  const problems: AppFileProblem[] = [];
  const path = (i: number, key?: string): (string | number)[] => [...base, 'variants', i, ...(key ? [key] : [])];
  const seen = new Set([PRIMARY_VARIANT]);
  let shadows = 0;
  for (const [i, variant] of variants.entries()) {
    if (seen.has(variant.name))
      problems.push(at.problem(path(i, 'name'), `'${variant.name}' is taken (the API's own is ${PRIMARY_VARIANT})`));
    seen.add(variant.name);
    const model = modelOptions(variant.model);
    const file = resolve(dir, model.path);
    const size = isS3Uri(model.path) ? undefined : fileSize(file);
    if (!isS3Uri(model.path) && size === undefined) {
      const at_ = typeof variant.model === 'string' ? path(i, 'model') : [...path(i, 'model'), 'path'];
      problems.push(at.problem(at_, `model file ${model.path} does not exist (paths are relative to the app file)`));
    }
    const fileFormat = (): ModelFormat | undefined =>
      size === undefined ? undefined : modelFileFormat(file, size, model.format);
    problems.push(...ortFormatProblems(model, fileFormat, path(i, 'model'), at));
    if (variant.predictor !== undefined && fileSize(resolve(dir, variant.predictor)) === undefined)
      problems.push(at.problem(path(i, 'predictor'), `predictor ${variant.predictor} does not exist`));
    const weight = variant.weight ?? 1;
    if (variant.shadow === true) {
      shadows++;
      if (shadows > 1) problems.push(at.problem(path(i, 'shadow'), 'at most one shadow variant'));
      if (kind !== 'sagemaker' && weight > 1)
        problems.push(at.problem(path(i, 'weight'), `a shadow's weight is the share of requests copied, at most 1`));
    } else if (kind === 'lambda' && variant.predictor !== undefined) {
      problems.push(
        at.problem(
          path(i, 'predictor'),
          "weighted variants on lambda run in the API's function, with its predictor (a shadow may have its own)",
        ),
      );
    }
    if (kind !== 'sagemaker' && Math.abs(Math.round(weight * 100) - weight * 100) > 1e-6)
      problems.push(at.problem(path(i, 'weight'), `${weight} is not a multiple of 0.01`));
    if (kind === 'lambda' && variant.instanceCount !== undefined)
      problems.push(at.problem(path(i, 'instanceCount'), 'applies to sagemaker and ecs; lambda scales by itself'));
  }
  if (shadows > 0 && shadows < variants.length)
    problems.push(
      at.problem(
        [...base, 'variants'],
        'a shadow variant copies the traffic of one production variant: no weighted variants beside it',
      ),
    );
  return problems;
}
