/**
 * Runtime settings from the deployed contract's environment variables, validated in one pass:
 * every bad variable is reported together, each with what it should be.
 */
import { z } from 'zod';
import { DEFAULTS, ENV, MODEL_FORMATS } from '../contract.js';
import type { Config, ModelFormat, TensorDeclaration } from '../predictor.js';
import { LOG_LEVELS, type LogLevel } from './telemetry/logger.js';
import { checkResponsesByDefault } from './codec/predictor-schemas.js';
import { StartupError } from './startup-error.js';
import { DATATYPES } from './codec/tensor-types.js';
import type { TorchModelOptions } from './executors/torch-executor.js';

export interface RuntimeSettings {
  readonly apiName: string;
  readonly modelUri: string;
  readonly modelSha256?: string;
  readonly config: Config;
  readonly intraOpThreads?: number;
  readonly executionProviders: readonly string[];
  readonly maxBodyBytes: number;
  readonly requestTimeoutMs: number;
  readonly logLevel: LogLevel;
  /** Container server: largest dynamic batch (1: off). */
  readonly maxBatchSize: number;
  /** Container server: longest a request waits for batch-mates, ms. */
  readonly maxBatchDelayMs: number;
  /** Container server: inference requests queued beyond those running. */
  readonly maxQueueLength: number;
  /** Container server: executor worker threads. @default chosen from the cores */
  readonly workers?: number;
  /** The model's format. @default read from the model file */
  readonly modelFormat?: ModelFormat;
  /** Torch models: module file and class (checkpoints), declared inputs and outputs, the interpreter. */
  readonly torch?: TorchModelOptions;
  /** The playground page at `GET /docs`. */
  readonly docs: boolean;
  /** Check responses against the predictor's declared response schema. */
  readonly checkResponses: boolean;
  /** A versioned model: the version folder to serve. @default the highest */
  readonly modelVersion?: string;
  /** Containers: seconds between looks for a new model version (live reload). @default off */
  readonly modelPollSeconds?: number;
  /** Data capture: where sampled requests and responses go (`s3://bucket/prefix/`). @default off */
  readonly dataCaptureUri?: string;
  /** Data capture: the percentage of requests captured. @default 100 */
  readonly dataCapturePercent?: number;
}

const positiveInt = z.coerce.number().int().positive();
const nonNegativeInt = z.coerce.number().int().nonnegative();

const configJson = z.string().transform((text, ctx): Config => {
  try {
    const value: unknown = JSON.parse(text);
    if (typeof value === 'object' && value !== null && !Array.isArray(value)) return value as Config;
    ctx.addIssue({ code: 'custom', message: 'must be a JSON object' });
  } catch (error) {
    ctx.addIssue({ code: 'custom', message: `is not valid JSON: ${(error as Error).message}` });
  }
  return z.NEVER;
});

/** `[{ name, datatype, shape }]`, as ARCLIGHT_MODEL_INPUTS / _OUTPUTS and `--inputs` take it. */
export const tensorDeclarations = z
  .array(
    z.object({
      name: z.string().min(1, 'name must not be empty'),
      datatype: z.enum(DATATYPES, `datatype must be one of ${DATATYPES.join(', ')}`),
      shape: z.array(z.number().int().min(-1, 'shape dimensions are -1 (dynamic) or sizes')),
    }),
  )
  .min(1, 'must declare at least one tensor');

const declarationsJson = z.string().transform((text, ctx): TensorDeclaration[] => {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    ctx.addIssue({ code: 'custom', message: `is not valid JSON: ${(error as Error).message}` });
    return z.NEVER;
  }
  const parsed = tensorDeclarations.safeParse(value);
  if (parsed.success) return parsed.data;
  ctx.addIssue({
    code: 'custom',
    message: `must be [{"name","datatype","shape"}]: ${parsed.error.issues.map((i) => `${i.path.join('.')} ${i.message}`).join('; ')}`,
  });
  return z.NEVER;
});

const envSchema = z.object({
  [ENV.apiName]: z
    .string()
    .regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/, 'must be URL-safe: letters, digits, _ . -')
    .default('model'),
  [ENV.modelUri]: z.string().min(1, 'is required: s3://bucket/key or a path'),
  [ENV.modelSha256]: z
    .string()
    .regex(/^[0-9a-fA-F]{64}$/, 'must be 64 hex digits')
    .optional(),
  [ENV.config]: configJson.optional(),
  [ENV.intraOpThreads]: positiveInt.optional(),
  [ENV.executionProviders]: z.string().optional(),
  [ENV.maxBodyBytes]: positiveInt.optional(),
  [ENV.maxBatchSize]: positiveInt.optional(),
  [ENV.maxBatchDelayMs]: nonNegativeInt.optional(),
  [ENV.maxQueueLength]: nonNegativeInt.optional(),
  [ENV.workers]: positiveInt.optional(),
  [ENV.requestTimeoutMs]: positiveInt.optional(),
  [ENV.logLevel]: z.enum(LOG_LEVELS).optional(),
  [ENV.metrics]: z.enum(['on', 'off'], 'must be on or off').optional(),
  [ENV.modelFormat]: z
    .enum(MODEL_FORMATS, `must be ${MODEL_FORMATS.join(', ')} (or unset: read from the file)`)
    .optional(),
  [ENV.modelModule]: z.string().optional(),
  [ENV.modelClass]: z
    .string()
    .regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'must be a Python class name')
    .optional(),
  [ENV.modelInputs]: declarationsJson.optional(),
  [ENV.modelOutputs]: declarationsJson.optional(),
  [ENV.python]: z.string().optional(),
  [ENV.docs]: z.enum(['on', 'off'], 'must be on or off').optional(),
  [ENV.checkResponses]: z.enum(['on', 'off'], 'must be on or off').optional(),
  [ENV.modelVersion]: z
    .string()
    .regex(/^\d{1,15}$/, 'must be a version folder number')
    .optional(),
  [ENV.modelPollSeconds]: z.coerce.number().min(0, 'must be 0 (off) or more seconds').max(86_400).optional(),
  [ENV.dataCaptureUri]: z
    .string()
    .regex(/^s3:\/\/[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]\/(.*\/)?$/, 'must be s3://bucket/prefix/ (ending in /)')
    .optional(),
  [ENV.dataCapturePercent]: z.coerce.number().min(0).max(100, 'must be a percentage from 0 to 100').optional(),
});

/** Reads and validates the runtime's settings; throws one StartupError listing every problem. */
export function settingsFromEnv(env: NodeJS.ProcessEnv = process.env): RuntimeSettings {
  const present = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ''));
  const parsed = envSchema.safeParse(present);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => `${String(issue.path[0] ?? 'env')} ${issue.message}`);
    throw new StartupError(`invalid runtime environment: ${problems.join('; ')}`, 'Fix the variables named');
  }
  const e = parsed.data;
  if (e[ENV.modelFormat] === 'lightning-checkpoint' && (!e[ENV.modelModule] || !e[ENV.modelClass])) {
    throw new StartupError(
      `invalid runtime environment: ${ENV.modelFormat}=lightning-checkpoint needs ${ENV.modelModule} and ${ENV.modelClass}`,
      'Name the Python file and class that define the model',
    );
  }
  return {
    apiName: e[ENV.apiName],
    modelUri: e[ENV.modelUri],
    modelSha256: e[ENV.modelSha256]?.toLowerCase(),
    config: e[ENV.config] ?? {},
    intraOpThreads: e[ENV.intraOpThreads],
    executionProviders: (e[ENV.executionProviders] ?? 'cpu')
      .split(',')
      .map((p) => p.trim())
      .filter(Boolean),
    maxBodyBytes: e[ENV.maxBodyBytes] ?? DEFAULTS.maxBodyBytes,
    requestTimeoutMs: e[ENV.requestTimeoutMs] ?? DEFAULTS.requestTimeoutMs,
    logLevel: e[ENV.logLevel] ?? 'INFO',
    maxBatchSize: e[ENV.maxBatchSize] ?? DEFAULTS.maxBatchSize,
    maxBatchDelayMs: e[ENV.maxBatchDelayMs] ?? DEFAULTS.maxBatchDelayMs,
    maxQueueLength: e[ENV.maxQueueLength] ?? DEFAULTS.maxQueueLength,
    ...(e[ENV.workers] === undefined ? {} : { workers: e[ENV.workers] }),
    ...(e[ENV.modelFormat] === undefined ? {} : { modelFormat: e[ENV.modelFormat] }),
    torch: torchOptions(e),
    docs: e[ENV.docs] === 'on',
    checkResponses: checkResponsesByDefault(e[ENV.checkResponses], env['NODE_ENV']),
    ...(e[ENV.modelVersion] === undefined ? {} : { modelVersion: e[ENV.modelVersion] }),
    ...(e[ENV.modelPollSeconds] === undefined ? {} : { modelPollSeconds: e[ENV.modelPollSeconds] }),
    ...(e[ENV.dataCaptureUri] === undefined ? {} : { dataCaptureUri: e[ENV.dataCaptureUri] }),
    ...(e[ENV.dataCapturePercent] === undefined ? {} : { dataCapturePercent: e[ENV.dataCapturePercent] }),
  };
}

function torchOptions(e: z.infer<typeof envSchema>): TorchModelOptions {
  return Object.fromEntries(
    Object.entries({
      module: e[ENV.modelModule],
      className: e[ENV.modelClass],
      inputs: e[ENV.modelInputs],
      outputs: e[ENV.modelOutputs],
      python: e[ENV.python],
    }).filter(([, v]) => v !== undefined),
  );
}
