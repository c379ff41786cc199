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
import { ASYNC_DEFAULTS } from '../contract.js';
import { ASYNC_LAMBDA_MAX_BODY_SIZE } from '../constructs/async/async-api.js';
import { LAMBDA_MAX_TIMEOUT } from '../constructs/async/async-lambda-worker.js';
import { SAGEMAKER_ASYNC_MAX_TIMEOUT } from '../constructs/async/async-sagemaker-endpoint.js';
import { MONITORING_DEFAULTS } from '../constructs/operations/api-monitoring.js';
import { Rollout } from '../constructs/operations/rollout.js';

/** The file names looked for, in this order. */
export const APP_FILE_NAMES = ['arclight.yaml', 'arclight.yml', 'arclight.json'] as const;

/** The constructs' defaults, read from computes built with no optional props. */
const LAMBDA = Compute.lambda();
const SAGEMAKER = Compute.sageMaker({ instanceType: 'ml.c7i.xlarge' });
const ECS = Compute.ecs({ instanceType: 'c7i.xlarge' });
/** Rollout's defaults, read through the shapes it gives the backends (CodeDeploy's canary, SageMaker's rolling). */
const CANARY = Rollout.canary();
const CANARY_STEP = CANARY.codeDeployTrafficRouting()?.timeBasedCanary as
  { canaryPercentage: number; canaryInterval: number } | undefined;
const ROLLING_BATCH = (
  Rollout.rolling().sageMakerDeploymentConfig([])?.rollingUpdatePolicy as { maximumBatchSize: { value: number } }
).maximumBatchSize.value;

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
  /** AsyncApi's defaults (the timeout is Lambda's; SageMaker takes up to 3600 s). */
  async: {
    timeout: LAMBDA_MAX_TIMEOUT.toSeconds(),
    maxBodySize: ASYNC_LAMBDA_MAX_BODY_SIZE.toMebibytes(),
    inlineResultSize: ASYNC_DEFAULTS.inlineResultBytes / 1024,
    urlExpiry: ASYNC_DEFAULTS.urlTtlSeconds,
    retention: ASYNC_DEFAULTS.retentionDays,
    maxReceiveCount: ASYNC_DEFAULTS.maxReceives,
  },
  /** Rollout's step defaults, read from Rollout.canary() and Rollout.rolling() built with no props. */
  rollout: {
    percent: CANARY_STEP!.canaryPercentage,
    interval: CANARY_STEP!.canaryInterval * 60,
    batchPercent: ROLLING_BATCH,
    defaultAlarms: CANARY.defaultAlarms,
  },
  monitoring: {
    errorRatePercent: MONITORING_DEFAULTS.errorRatePercent,
    latencyP99Threshold: MONITORING_DEFAULTS.latencyP99Threshold.toSeconds(),
    throttlesPerMinute: MONITORING_DEFAULTS.throttlesPerMinute,
  },
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
    ortFormat: z.boolean().optional().meta({
      default: false,
      description:
        "Local ONNX models: deploy them converted to onnxruntime's ORT format at synth (sessions made from the bytes in place). Not for s3:// or torch models.",
    }),
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
    minTasks: nonNegativeInt().optional().meta({
      default: APP_FILE_DEFAULTS.ecs.minTasks,
      description: 'The fewest tasks the service runs (at least 1; 0 on an async API, which scales out from zero).',
    }),
    maxTasks: positiveInt('tasks').optional().describe('The most tasks. Default: the larger of minTasks and 2.'),
    targetRequestsPerTask: z.number().positive().optional().meta({
      default: APP_FILE_DEFAULTS.ecs.targetRequestsPerTask,
      description: 'Autoscaling target: ALB requests per task per minute.',
    }),
  })
  .describe(
    'ECS on EC2 instances (a new VPC): a service per variant behind one internal ALB; async APIs: SQS queue workers, no load balancer.',
  );

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

const asyncSchema = z
  .strictObject({
    timeout: boundedInt(1, SAGEMAKER_ASYNC_MAX_TIMEOUT.toSeconds(), 'SageMaker asynchronous inference', 's')
      .optional()
      .meta({
        default: APP_FILE_DEFAULTS.async.timeout,
        description: 'Seconds one job may run: up to 900 on lambda, 3600 on sagemaker.',
      }),
    maxBodySize: boundedInt(1, ASYNC_DEFAULTS.maxBodyBytes / 2 ** 20, 'the async API', 'MB')
      .optional()
      .meta({
        default: APP_FILE_DEFAULTS.async.maxBodySize,
        description: 'The largest request body in MB (above 6 MB through POST /async/uploads).',
      }),
    inlineResultSize: boundedInt(1, 1024, 'the async API', 'KB').optional().meta({
      default: APP_FILE_DEFAULTS.async.inlineResultSize,
      description: 'Results up to this many KB come back inline from GET /async/{id}; larger ones as a URL.',
    }),
    urlExpiry: boundedInt(60, 43_200, 'a presigned URL', 's')
      .optional()
      .meta({ default: APP_FILE_DEFAULTS.async.urlExpiry, description: 'Seconds presigned URLs are valid.' }),
    retention: positiveInt('days').optional().meta({
      default: APP_FILE_DEFAULTS.async.retention,
      description: 'Days requests, results and statuses are kept.',
    }),
    maxReceiveCount: boundedInt(1, 1000, "SQS's redrive", 'deliveries').optional().meta({
      default: APP_FILE_DEFAULTS.async.maxReceiveCount,
      description: 'Deliveries of a job before it is failed (and its message dead-lettered).',
    }),
    maxConcurrentInvocationsPerInstance: boundedInt(1, 1000, "SageMaker's ClientConfig", 'jobs')
      .optional()
      .describe('sagemaker: jobs SageMaker sends one instance at once. Default: 4.'),
    targetBacklogPerInstance: z
      .number()
      .positive()
      .optional()
      .describe('sagemaker: the backlog of jobs per instance autoscaling holds. Default: 5.'),
    minInstances: nonNegativeInt()
      .optional()
      .describe(
        "sagemaker: the fewest instances kept; 0 scales to zero. Default: the compute's minInstances when set, else 0.",
      ),
  })
  .describe('An async API (AsyncApi): POST /async answers 202 with a job id, GET /async/{id} its status and result.');

const rolloutAlarms = {
  defaultAlarms: z.boolean().optional().meta({
    default: APP_FILE_DEFAULTS.rollout.defaultAlarms,
    description: "Roll back on Arclight's default alarms (5xx rate, p99 latency, throttles, model loads, capacity).",
  }),
};
const rolloutInterval = positiveInt('seconds').optional().meta({
  default: APP_FILE_DEFAULTS.rollout.interval,
  description: 'Seconds each step bakes before the next (whole minutes on Lambda; at most 3600 on SageMaker).',
});
const stepPercent = boundedInt(1, 99, 'a traffic shift', '%').optional().meta({
  default: APP_FILE_DEFAULTS.rollout.percent,
  description: 'Percent of traffic: the first step (canary) or each step (linear).',
});
const rolloutKinds = ['allAtOnce', 'canary', 'linear', 'rolling'] as const;

const rolloutSchema = z
  .union([
    z.enum(rolloutKinds),
    z.discriminatedUnion('kind', [
      z.strictObject({ kind: z.literal('allAtOnce') }).describe('All traffic at once; no automatic rollback.'),
      z
        .strictObject({ kind: z.literal('canary'), percent: stepPercent, interval: rolloutInterval, ...rolloutAlarms })
        .describe('percent of traffic for interval, then the rest.'),
      z
        .strictObject({ kind: z.literal('linear'), percent: stepPercent, interval: rolloutInterval, ...rolloutAlarms })
        .describe('percent more of traffic every interval.'),
      z
        .strictObject({
          kind: z.literal('rolling'),
          batchPercent: boundedInt(5, 50, 'SageMaker', '%').optional().meta({
            default: APP_FILE_DEFAULTS.rollout.batchPercent,
            description: 'Percent of the fleet replaced per batch.',
          }),
          interval: rolloutInterval,
          ...rolloutAlarms,
        })
        .describe('Instances replaced in batches (sagemaker, ecs).'),
    ]),
  ])
  .optional()
  .describe(
    'How a new version takes traffic and rolls back: allAtOnce, canary, linear or rolling. Default: canary on lambda and sagemaker, rolling on ecs.',
  );

const monitoringSchema = z
  .strictObject({
    dashboard: z.boolean().optional().meta({ default: true, description: 'Build the CloudWatch dashboard.' }),
    alarms: z
      .boolean()
      .optional()
      .meta({ default: true, description: 'Build the default alarms (rollouts roll back on them).' }),
    alarmTopic: z
      .string()
      .regex(/^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}$/, {
        error: (issue) => `'${String(issue.input)}' is not an SNS topic ARN (arn:aws:sns:region:account:name)`,
      })
      .optional()
      .describe('The ARN of an SNS topic the alarms notify (on alarm and on recovery). Default: none.'),
    errorRatePercent: z
      .number()
      .gt(0, { error: (issue) => `${String(issue.input)} % must be above 0` })
      .max(100, { error: (issue) => `${String(issue.input)} % is above 100` })
      .optional()
      .meta({
        default: APP_FILE_DEFAULTS.monitoring.errorRatePercent,
        description: 'Percent of 5xx answers that raises the error alarm.',
      }),
    latencyP99Threshold: z
      .number()
      .gt(0, { error: (issue) => `${String(issue.input)} s must be above 0` })
      .optional()
      .meta({
        default: APP_FILE_DEFAULTS.monitoring.latencyP99Threshold,
        description: 'Seconds of p99 request latency that raise the latency alarm.',
      }),
    throttlesPerMinute: z
      .number()
      .gt(0, { error: (issue) => `${String(issue.input)} must be above 0` })
      .optional()
      .meta({
        default: APP_FILE_DEFAULTS.monitoring.throttlesPerMinute,
        description: 'Throttled or overloaded requests per minute that raise the throttling alarm.',
      }),
  })
  .optional()
  .describe('The CloudWatch dashboard and default alarms. Default: both, with the default thresholds.');

const dataCaptureSchema = z
  .strictObject({
    bucket: z
      .string()
      .regex(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, {
        error: (issue) => `'${String(issue.input)}' is not an S3 bucket name`,
      })
      .describe('An existing bucket (private, encrypted) the JSON lines go to.'),
    prefix: z
      .string()
      .regex(/^[^/*?][^*?]*$/, {
        error: (issue) => `'${String(issue.input)}' must be a folder without a leading / or IAM wildcards (* ?)`,
      })
      .optional()
      .describe('Key prefix of the captured objects. Default: data-capture/<name>/.'),
    samplingPercentage: z
      .number()
      .gt(0, { error: (issue) => `${String(issue.input)} % must be above 0` })
      .max(100, { error: (issue) => `${String(issue.input)} % is above 100` })
      .optional()
      .meta({ default: 100, description: 'Percent of requests captured.' }),
  })
  .optional()
  .describe('Write a sampled share of requests and responses to S3 as JSON lines (sagemaker and ecs computes).');

const variantSchema = z.strictObject({
  name: z
    .string()
    .regex(/^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$/, {
      error: (issue) => `'${String(issue.input)}' must be letters, digits and '-', at most 63`,
    })
    .describe("The variant's name: in metrics (dimension variant) and the x-arclight-variant header."),
  model: z.union([z.string().min(1), modelSchema]).describe('The model it serves: a file or s3:// URI, or options.'),
  predictor: z
    .string()
    .optional()
    .describe("Its predictor module, relative to this file. Default: the API's. Lambda: a shadow only."),
  weight: z
    .number()
    .gt(0, { error: (issue) => `${String(issue.input)} must be above 0` })
    .optional()
    .meta({
      default: 1,
      description:
        "Its share of traffic beside the API's own model, which weighs 1 (0.25: a fifth of requests); a shadow's: the share of requests copied to it (at most 1).",
    }),
  shadow: z
    .boolean()
    .optional()
    .meta({ default: false, description: 'Gets a copy of live requests; its answers are logged, never returned.' }),
  instanceCount: positiveInt('instances')
    .optional()
    .meta({ default: 1, description: 'Instances (sagemaker) or tasks (ecs) serving it. Not on lambda.' }),
});

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
  async: z.union([z.boolean(), asyncSchema]).optional().meta({
    default: false,
    description:
      'Serve the API as jobs (AsyncApi) instead of request/response: true, or a map of its options. On lambda, sagemaker and ecs (queue workers).',
  }),
  rollout: rolloutSchema,
  monitoring: monitoringSchema,
  tracing: z.boolean().optional().meta({ default: false, description: 'X-Ray tracing of the API and the runtime.' }),
  dataCapture: dataCaptureSchema,
  variants: z
    .array(variantSchema)
    .optional()
    .describe(
      'More models behind the API: weighted variants sharing live traffic, or one shadow getting a copy of it (every compute).',
    ),
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
    apis: z
      .array(apiSchema)
      .min(1, { error: 'list at least one API' })
      .describe('The APIs, one RealtimeApi (or AsyncApi) each.'),
  })
  .describe('An Arclight app: inference APIs without infrastructure code.');

export type AppFile = z.infer<typeof appFileSchema>;
export type AppFileApi = z.infer<typeof apiSchema>;
export type AppFileModel = z.infer<typeof modelSchema>;
export type AppFileCompute = z.infer<typeof computeSchema>;
export type AppFileAsync = z.infer<typeof asyncSchema>;
export type AppFileRollout = NonNullable<z.infer<typeof rolloutSchema>>;

/** The JSON Schema of the file, for editors. */
export function appFileJsonSchema(): Record<string, unknown> {
  return {
    ...z.toJSONSchema(appFileSchema, { target: 'draft-2020-12' }),
    title: 'arclight.yaml',
  };
}
