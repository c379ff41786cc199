/**
 * The schema of `arclight.yaml` (also `.yml`, `.json`): the one source the file is checked against, and the JSON
 * Schema editors complete it from (`arclight/schema/arclight.schema.json`, generated from this at build). Every API
 * maps to one RealtimeApi; the documented defaults are read from the constructs themselves (a compute built with no
 * props), so the file's defaults cannot drift from theirs, and the file never fills a default in: what is left out is
 * left to the construct.
 */
import * as logs from 'aws-cdk-lib/aws-logs';
import { z } from 'zod';
import { MODEL_FORMATS } from '../contract.js';
import { Compute, LAMBDA_LIMITS, RestApiAccessLogs, SAGEMAKER_LIMITS } from '../constructs/compute.js';

/** The file names looked for, in this order. */
export const APP_FILE_NAMES = ['arclight.yaml', 'arclight.yml', 'arclight.json'] as const;

/** The constructs' defaults, read from computes built with no optional props. */
const LAMBDA = Compute.lambda();
const SAGEMAKER = Compute.sageMaker({ instanceType: 'ml.c7i.xlarge' });
const ECS = Compute.ecs({ instanceType: 'c7i.xlarge' });

/** What the constructs default to, as the file spells it (seconds, MB, names). */
export const APP_FILE_DEFAULTS = {
  lambda: {
    memorySize: LAMBDA.memorySize,
    architecture: LAMBDA.architecture.name,
    ephemeralStorageSize: LAMBDA.ephemeralStorageSize.toMebibytes(),
    timeout: LAMBDA.timeout.toSeconds(),
  },
  sagemaker: {
    minInstances: SAGEMAKER.minInstances,
    targetInvocationsPerInstance: SAGEMAKER.targetInvocationsPerInstance,
    containerStartupHealthCheckTimeout: SAGEMAKER.containerStartupHealthCheckTimeout.toSeconds(),
    accessLogs: SAGEMAKER.accessLogs,
  },
  ecs: { minTasks: ECS.minTasks, targetRequestsPerTask: ECS.targetRequestsPerTask },
  /** RealtimeApi's throttle default (documented on ThrottleProps); a test synthesizes both and compares. */
  throttle: { rateLimit: 100, burstLimit: 200 },
  /** RealtimeApi's logRetention default, logs.RetentionDays.ONE_MONTH. */
  logRetention: logs.RetentionDays.ONE_MONTH,
} as const;

const RETENTION_DAYS = Object.values(logs.RetentionDays).filter((v): v is number => typeof v === 'number');
const DATATYPES = ['BOOL', 'UINT8', 'INT8', 'INT16', 'INT32', 'INT64', 'FP16', 'FP32', 'FP64'] as const;

/** An integer in [min, max], with messages naming the limit's owner. */
function boundedInt(min: number, max: number, owner: string, unit: string): z.ZodNumber {
  return z
    .number()
    .int({ error: (issue) => `${String(issue.input)} is not a whole number of ${unit}` })
    .min(min, { error: (issue) => `${String(issue.input)} is below ${owner}'s ${min} ${unit}` })
    .max(max, { error: (issue) => `${String(issue.input)} is above ${owner}'s ${max} ${unit}` });
}

function positiveInt(what: string): z.ZodNumber {
  return z
    .number()
    .int({ error: (issue) => `${String(issue.input)} is not a whole number of ${what}` })
    .min(1, { error: (issue) => `${String(issue.input)} must be at least 1` });
}

function nonNegativeInt(): z.ZodNumber {
  return z
    .number()
    .int({ error: (issue) => `${String(issue.input)} is not a whole number` })
    .min(0, { error: (issue) => `${String(issue.input)} must be 0 or more` });
}

const tensorDeclaration = z.strictObject({
  name: z.string().min(1).describe('The tensor name.'),
  datatype: z.enum(DATATYPES).describe('Open Inference Protocol datatype.'),
  shape: z.array(z.number().int().min(-1)).describe('Sizes, -1 for a dynamic dimension.'),
});

const sha256 = z
  .string()
  .regex(/^[0-9a-fA-F]{64}$/, { error: (issue) => `'${String(issue.input)}' is not 64 hex digits` });

export const modelSchema = z
  .strictObject({
    path: z
      .string()
      .min(1)
      .describe('A model file (relative to this file; deployed as an asset) or an S3 object, s3://bucket/key.'),
    sha256: sha256
      .optional()
      .describe("The model's sha256 (hex); the runtime refuses other bytes. A local file is checked against it."),
    sizeBytes: positiveInt('bytes')
      .optional()
      .describe("S3 models: the object's size, for synth-time memory and storage checks."),
    format: z
      .enum(MODEL_FORMATS)
      .optional()
      .describe('onnx, torchscript or lightning-checkpoint. Default: read from a local file, else onnx.'),
    module: z.string().optional().describe('Lightning checkpoints: the Python file defining the model class.'),
    className: z.string().optional().describe('Lightning checkpoints: the class in module.'),
    inputs: z.array(tensorDeclaration).optional().describe("Torch models: the inputs in forward's order."),
    outputs: z.array(tensorDeclaration).optional().describe('Torch models: output names and metadata.'),
  })
  .describe('The model: a path or s3:// URI, or an object with its options.');

const lambdaCompute = z
  .strictObject({
    kind: z.literal('lambda'),
    memorySize: boundedInt(LAMBDA_LIMITS.memoryMb[0], LAMBDA_LIMITS.memoryMb[1], 'Lambda', 'MB')
      .optional()
      .meta({ default: APP_FILE_DEFAULTS.lambda.memorySize, description: 'Memory in MB (1769 MB is one vCPU).' }),
    architecture: z
      .enum(['arm64', 'x86_64'])
      .optional()
      .meta({ default: APP_FILE_DEFAULTS.lambda.architecture, description: 'Instruction set of the function.' }),
    ephemeralStorageSize: boundedInt(LAMBDA_LIMITS.ephemeralMb[0], LAMBDA_LIMITS.ephemeralMb[1], 'Lambda', 'MB')
      .optional()
      .meta({ default: APP_FILE_DEFAULTS.lambda.ephemeralStorageSize, description: 'Size of /tmp in MB.' }),
    timeout: boundedInt(1, LAMBDA_LIMITS.maxTimeoutSeconds, 'API Gateway', 's')
      .optional()
      .meta({ default: APP_FILE_DEFAULTS.lambda.timeout, description: 'Per-invocation timeout in seconds.' }),
    reservedConcurrency: nonNegativeInt().optional().describe('Concurrency reserved for (and capping) the function.'),
    provisionedConcurrency: nonNegativeInt().optional().describe('Pre-initialized sandboxes (no cold starts).'),
  })
  .describe('An AWS Lambda container function (CPU): scales to zero, pay per request.');

const sageMakerCompute = z
  .strictObject({
    kind: z.literal('sagemaker'),
    instanceType: z.string().describe('The endpoint instance type, e.g. ml.g5.xlarge (GPU) or ml.c7i.xlarge (CPU).'),
    initialInstanceCount: positiveInt('instances')
      .optional()
      .describe('Instances to start with. Default: minInstances.'),
    minInstances: positiveInt('instances')
      .optional()
      .meta({ default: APP_FILE_DEFAULTS.sagemaker.minInstances, description: 'The fewest instances kept.' }),
    maxInstances: positiveInt('instances')
      .optional()
      .describe('The most instances autoscaling adds. Default: the larger of minInstances and 2.'),
    targetInvocationsPerInstance: z.number().positive().optional().meta({
      default: APP_FILE_DEFAULTS.sagemaker.targetInvocationsPerInstance,
      description: 'Autoscaling target: invocations per instance per minute.',
    }),
    containerStartupHealthCheckTimeout: boundedInt(
      SAGEMAKER_LIMITS.startupHealthCheckSeconds[0],
      SAGEMAKER_LIMITS.startupHealthCheckSeconds[1],
      'SageMaker',
      's',
    )
      .optional()
      .meta({
        default: APP_FILE_DEFAULTS.sagemaker.containerStartupHealthCheckTimeout,
        description: 'Seconds SageMaker waits for /ping (model fetch + session).',
      }),
    volumeSize: boundedInt(SAGEMAKER_LIMITS.volumeGb[0], SAGEMAKER_LIMITS.volumeGb[1], 'SageMaker', 'GB')
      .optional()
      .describe('EBS GB per instance (types with NVMe storage refuse it).'),
    accessLogs: z
      .enum(Object.values(RestApiAccessLogs) as [RestApiAccessLogs, ...RestApiAccessLogs[]])
      .optional()
      .meta({ default: APP_FILE_DEFAULTS.sagemaker.accessLogs, description: "The REST API's access logs." }),
    inferenceAmiVersion: z
      .string()
      .optional()
      .describe('Host image (NVIDIA driver). Default: al2-ami-sagemaker-inference-gpu-3-1 on GPU types.'),
  })
  .describe('A SageMaker real-time endpoint behind an API Gateway REST API.');

const ecsCompute = z
  .strictObject({
    kind: z.literal('ecs'),
    instanceType: z.string().describe('The EC2 instance type of the capacity, e.g. g5.xlarge.'),
    gpuCount: nonNegativeInt().optional().describe('GPUs per task; 0 runs the CPU image. Default: 1 on GPU types.'),
    minTasks: positiveInt('tasks')
      .optional()
      .meta({ default: APP_FILE_DEFAULTS.ecs.minTasks, description: 'The fewest tasks the service runs.' }),
    maxTasks: positiveInt('tasks').optional().describe('The most tasks. Default: the larger of minTasks and 2.'),
    targetRequestsPerTask: z.number().positive().optional().meta({
      default: APP_FILE_DEFAULTS.ecs.targetRequestsPerTask,
      description: 'Autoscaling target: ALB requests per task per minute.',
    }),
  })
  .describe('An ECS service on EC2 instances behind an internal ALB (a new VPC).');

export const computeSchema = z
  .discriminatedUnion('kind', [lambdaCompute, sageMakerCompute, ecsCompute])
  .describe('Where the API runs. Default: kind lambda with its defaults.');

const authSchema = z
  .discriminatedUnion('kind', [
    z.strictObject({ kind: z.literal('none') }).describe('Anyone (throttled); synth warns.'),
    z.strictObject({ kind: z.literal('iam') }).describe('SigV4-signed callers allowed execute-api:Invoke.'),
    z
      .strictObject({
        kind: z.literal('jwt'),
        issuer: z
          .string()
          .regex(/^https:\/\/\S+$/, { error: (issue) => `'${String(issue.input)}' is not an https:// URL` })
          .describe('The token issuer URL.'),
        audience: z.array(z.string().min(1)).min(1, { error: 'name at least one audience' }),
      })
      .describe('Callers presenting a JWT from issuer for one of audience.'),
  ])
  .describe('Who may call the API: none, iam or jwt. Default: none, with a synth warning.');

export const apiSchema = z.strictObject({
  name: z
    .string()
    .regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/, {
      error: (issue) =>
        `'${String(issue.input)}' is not URL-safe (letters, digits, _ . -, at most 128, starting with a letter or digit)`,
    })
    .describe('URL-safe API name: the OIP model name, the log service name and the construct id.'),
  model: z.union([z.string().min(1), modelSchema]).describe('A model file or s3:// URI, or an object with options.'),
  predictor: z
    .string()
    .optional()
    .describe('The predictor module (TypeScript or JavaScript), relative to this file. Default: the OIP.'),
  config: z
    .record(z.string(), z.json())
    .optional()
    .describe("JSON handed to the predictor's init() and predict() as config."),
  compute: computeSchema.optional(),
  auth: z.union([z.enum(['none', 'iam']), authSchema]).optional(),
  throttle: z
    .strictObject({
      rateLimit: z
        .number()
        .positive()
        .optional()
        .meta({ default: APP_FILE_DEFAULTS.throttle.rateLimit, description: 'Requests per second.' }),
      burstLimit: z
        .number()
        .positive()
        .optional()
        .meta({ default: APP_FILE_DEFAULTS.throttle.burstLimit, description: 'Burst above the rate.' }),
    })
    .optional()
    .describe('Stage throttling; always on.'),
  batching: z
    .strictObject({
      maxBatchSize: boundedInt(1, 1024, 'the container server', 'requests').optional(),
      maxBatchDelay: z
        .number()
        .min(0)
        .max(1000, {
          error: (issue) => `${String(issue.input)} ms is above 1000 ms: every request would wait that long`,
        })
        .optional()
        .describe('Milliseconds the first request of a batch waits for others.'),
    })
    .optional()
    .describe('Dynamic batching (sagemaker and ecs computes only).'),
  logRetention: z
    .literal(RETENTION_DAYS)
    .optional()
    .meta({
      default: APP_FILE_DEFAULTS.logRetention,
      description: `Days the logs are kept: one of ${RETENTION_DAYS.join(', ')} (9999: forever).`,
    }),
  docs: z.boolean().optional().meta({ default: false, description: 'Serve the playground page at GET /docs.' }),
});

export const appFileSchema = z
  .strictObject({
    $schema: z.string().optional().describe('The JSON Schema this file follows (for editors).'),
    stackName: z
      .string()
      .regex(/^[A-Za-z][A-Za-z0-9-]{0,100}$/, {
        error: (issue) => `'${String(issue.input)}' is not a CloudFormation stack name (letters, digits, -)`,
      })
      .optional()
      .describe("Prefix of the stacks: API x deploys as stack <stackName>-x. Default: the directory's name."),
    region: z
      .string()
      .regex(/^[a-z]{2}(-[a-z]+)+-\d$/, { error: (issue) => `'${String(issue.input)}' is not an AWS region` })
      .optional()
      .describe("The AWS region. Default: the CDK CLI's (AWS_REGION, the profile)."),
    description: z.string().max(1024).optional().describe("The stacks' description."),
    tags: z.record(z.string().min(1).max(128), z.string().max(256)).optional().describe('Tags on every resource.'),
    apis: z.array(apiSchema).min(1, { error: 'list at least one API' }).describe('The APIs, one RealtimeApi each.'),
  })
  .describe('An Arclight app: inference APIs without infrastructure code.');

export type AppFile = z.infer<typeof appFileSchema>;
export type AppFileApi = z.infer<typeof apiSchema>;
export type AppFileModel = z.infer<typeof modelSchema>;
export type AppFileCompute = z.infer<typeof computeSchema>;

/** The JSON Schema of the file, for editors. */
export function appFileJsonSchema(): Record<string, unknown> {
  return {
    ...z.toJSONSchema(appFileSchema, { target: 'draft-2020-12' }),
    title: 'arclight.yaml',
  };
}
