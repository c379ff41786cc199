/**
 * The Lambda compute of a BatchJob: the Lambda image with the batch handler (lib/runtime/batch/step-functions-handler)
 * and a state machine around it:
 *
 * ```
 * run name ($.rerun, else the execution's name) → Plan (Lambda) → Distributed Map over the input prefix (ListObjectsV2)
 *                                                               └ or, rerunning, over <output>/<run>/failures.jsonl (JSONL)
 *                                                → RecordFailedBatches (Lambda: the items of batches that failed as a
 *                                                  whole, from the ResultWriter export, into the attempt's failures)
 *                                                → Finish (Lambda: failures.jsonl, summary.json, _SUCCESS)
 *                                                → Done, or MapFailed when the Map itself failed (tolerance exceeded)
 * ```
 * Each Map batch (ItemBatcher) is one invocation; MaxConcurrency bounds them; ToleratedFailurePercentage bounds whole
 * batches that fail after retries (item errors are results, never Map failures); ResultWriter keeps the Map's own
 * record of batches under `<outputPrefix>_stepfunctions/`.
 */
import { rmSync } from 'node:fs';
import { FeatureFlags, RemovalPolicy } from 'aws-cdk-lib';
import { Platform } from 'aws-cdk-lib/aws-ecr-assets';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import type * as s3 from 'aws-cdk-lib/aws-s3';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import * as tasks from 'aws-cdk-lib/aws-stepfunctions-tasks';
import { DISABLE_ASSET_STAGING_CONTEXT } from 'aws-cdk-lib/cx-api';
import type { Construct } from 'constructs';
import { ENV } from '../../contract.js';
import { LAMBDA_MODULE_DIR, buildLambdaImageContext } from '../images/lambda-image-context.js';
import { isTorchFormat, modelEnvironment, type ModelSourceConfig } from '../model-source.js';
import type { BatchEngine, BatchJobContext, LambdaBatchSettings } from './batch-context.js';
import { grantJobBuckets, throwProblems } from './batch-grants.js';
import { acknowledgeWildcards } from './batch-nag.js';

/** Where the Map's own result files go, under the output prefix. */
export const MAP_RESULTS_PREFIX = '_stepfunctions/';

export function buildStepFunctionsBatch(
  scope: Construct,
  context: BatchJobContext,
  settings: LambdaBatchSettings,
  computeProblems: string[],
): BatchEngine {
  const functionLogs = new logs.LogGroup(scope, 'FunctionLogs', {
    retention: context.logRetention,
    removalPolicy: RemovalPolicy.DESTROY,
  });
  const role = new iam.Role(scope, 'FunctionRole', {
    assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
    description: `Runs the ${context.jobName} Arclight batch job: reads its model and input prefix, writes its output prefix and logs`,
  });
  functionLogs.grantWrite(role);
  const model = context.model.bind(scope, role);
  throwProblems(scope, [...context.problems, ...context.predictor.problems, ...model.problems, ...computeProblems]);
  grantJobBuckets(role, context);

  const arch = settings.architecture === lambda.Architecture.ARM_64 ? 'arm64' : 'x64';
  const contextDir = buildLambdaImageContext({
    predictorEntry: context.predictor.entry,
    arch,
    entry: 'batch',
    ...(isTorchFormat(model.format) ? { torch: { module: model.torch?.module } } : {}),
  });
  const fn = new lambda.DockerImageFunction(scope, 'Function', {
    description: `Arclight batch job ${context.jobName}`,
    code: lambda.DockerImageCode.fromImageAsset(contextDir, {
      platform: arch === 'arm64' ? Platform.LINUX_ARM64 : Platform.LINUX_AMD64,
    }),
    architecture: settings.architecture,
    memorySize: settings.memorySize,
    ephemeralStorageSize: settings.ephemeralStorageSize,
    timeout: settings.timeout,
    role,
    logGroup: functionLogs,
    environment: functionEnvironment(context, model, settings),
  });
  if (!scope.node.tryGetContext(DISABLE_ASSET_STAGING_CONTEXT)) rmSync(contextDir, { recursive: true, force: true });

  const stateMachine = buildStateMachine(scope, context, settings, fn);
  acknowledgeWildcards(
    scope,
    "Each wildcard is an exact prefix of the job's own: objects under <input prefix>* (read) and <output prefix>* (written), the function's versions (':*'), the state machine's own map runs and executions; X-Ray and CloudWatch Logs delivery actions have no resource-level permissions and take '*'.",
  );
  return { stateMachine, function: fn };
}

function functionEnvironment(
  context: BatchJobContext,
  model: ModelSourceConfig,
  settings: LambdaBatchSettings,
): Record<string, string> {
  return {
    [ENV.apiName]: context.jobName,
    [ENV.modelUri]: model.uri,
    ...(model.sha256 ? { [ENV.modelSha256]: model.sha256 } : {}),
    ...modelEnvironment(model, LAMBDA_MODULE_DIR),
    [ENV.config]: JSON.stringify(context.config),
    [ENV.executionProviders]: 'cpu',
    // An item may take what the whole invocation may, less a little to write its part.
    [ENV.requestTimeoutMs]: String(Math.max(1000, settings.timeout.toMilliseconds() - 30_000)),
    [ENV.batchConcurrency]: String(settings.itemConcurrency),
    // Batch invocations log failures in the manifest; per-item request lines would cost more than the inference.
    [ENV.logLevel]: 'WARN',
  };
}

/** The feature flag under which aws-cdk-lib reads `resultWriterV2` (and ignores the deprecated `resultWriter`). */
const RESULT_WRITER_V2_FLAG = '@aws-cdk/aws-stepfunctions:useDistributedMapResultWriterV2';

/** The Map's ResultWriter, in the form this app's aws-cdk-lib reads (V2 under its flag, which new apps set). */
function resultWriterOf(
  scope: Construct,
  bucket: s3.IBucket,
  prefix: string,
): Pick<sfn.DistributedMapProps, 'resultWriter' | 'resultWriterV2'> {
  if (FeatureFlags.of(scope).isEnabled(RESULT_WRITER_V2_FLAG)) {
    return { resultWriterV2: new sfn.ResultWriterV2({ bucket, prefix }) };
  }
  return { resultWriter: new sfn.ResultWriter({ bucket, prefix }) };
}

function buildStateMachine(
  scope: Construct,
  context: BatchJobContext,
  settings: LambdaBatchSettings,
  fn: lambda.IFunction,
): sfn.StateMachine {
  const inputUri = `s3://${context.inputBucket.bucketName}/${context.inputPrefix}`;
  const outputBase = `s3://${context.outputBucket.bucketName}/${context.outputPrefix}`;
  const invoke = (id: string, payload: Record<string, unknown>, resultPath: string): tasks.LambdaInvoke =>
    new tasks.LambdaInvoke(scope, id, {
      lambdaFunction: fn,
      payload: sfn.TaskInput.fromObject(payload),
      payloadResponseOnly: true,
      resultPath,
      retryOnServiceExceptions: true,
    });

  const plan = invoke(
    'Plan',
    {
      action: 'plan',
      input: inputUri,
      output: sfn.JsonPath.format(`${outputBase}{}/`, sfn.JsonPath.stringAt('$.run')),
      rerun: sfn.JsonPath.stringAt('$.rerunning'),
    },
    '$.plan',
  );
  // ItemBatcher's BatchInput is rendered as written: paths take the `.$` suffix by hand.
  const batchInput = { 'input.$': '$.plan.input', 'output.$': '$.plan.output', 'attempt.$': '$.plan.attempt' };
  const mapOver = (id: string, itemReader: sfn.IItemReader, itemsPerBatch: number): sfn.DistributedMap => {
    const map = new sfn.DistributedMap(scope, id, {
      itemReader,
      itemBatcher: new sfn.ItemBatcher({ maxItemsPerBatch: itemsPerBatch, batchInput }),
      maxConcurrency: settings.maxConcurrency,
      toleratedFailurePercentage: settings.toleratedFailurePercentage,
      ...resultWriterOf(scope, context.outputBucket, `${context.outputPrefix}${MAP_RESULTS_PREFIX}`),
      resultPath: '$.map',
    });
    const run = new tasks.LambdaInvoke(scope, `${id}Batch`, {
      lambdaFunction: fn,
      payloadResponseOnly: true,
      retryOnServiceExceptions: true,
    });
    // A batch that fails as a whole (a timeout, an out-of-memory) is tried again; its parts replace themselves.
    run.addRetry({ errors: ['States.TaskFailed'], maxAttempts: 2, backoffRate: 2 });
    return map.itemProcessor(run);
  };
  const failedBatches = invoke(
    'RecordFailedBatches',
    {
      action: 'failedBatches',
      input: sfn.JsonPath.stringAt('$.plan.input'),
      output: sfn.JsonPath.stringAt('$.plan.output'),
      attempt: sfn.JsonPath.numberAt('$.plan.attempt'),
      mapResults: `s3://${context.outputBucket.bucketName}/${context.outputPrefix}${MAP_RESULTS_PREFIX}`,
    },
    '$.failedBatches',
  );
  const overInputs = mapOver(
    'OverInputs',
    new sfn.S3ObjectsItemReader({ bucket: context.inputBucket, prefix: context.inputPrefix || undefined }),
    settings.objectsPerBatch,
  );
  const overFailures = mapOver(
    'OverFailures',
    new sfn.S3JsonLItemReader({ bucket: context.outputBucket, key: sfn.JsonPath.stringAt('$.plan.failuresKey') }),
    settings.retriesPerBatch,
  );
  const finish = invoke(
    'Finish',
    {
      action: 'finish',
      input: sfn.JsonPath.stringAt('$.plan.input'),
      output: sfn.JsonPath.stringAt('$.plan.output'),
      attempt: sfn.JsonPath.numberAt('$.plan.attempt'),
      startedAt: sfn.JsonPath.stringAt('$.plan.startedAt'),
    },
    '$.summary',
  );
  const done = new sfn.Pass(scope, 'Done', { outputPath: '$.summary' });
  // The Map failed (more whole batches failed than tolerated): its items are in the manifest, and the run says so.
  const mapFailed = new sfn.Fail(scope, 'MapFailed', {
    errorPath: '$.mapError.Error',
    causePath: '$.mapError.Cause',
  });
  finish.next(
    new sfn.Choice(scope, 'DidTheMapFail').when(sfn.Condition.isPresent('$.mapError'), mapFailed).otherwise(done),
  );
  failedBatches.next(finish);
  for (const map of [overInputs, overFailures]) {
    map.addCatch(failedBatches, { errors: ['States.ALL'], resultPath: '$.mapError' });
    map.next(failedBatches);
  }

  const newRun = new sfn.Pass(scope, 'NewRun', {
    parameters: { run: sfn.JsonPath.stringAt('$$.Execution.Name'), rerunning: false },
  });
  const rerun = new sfn.Pass(scope, 'RerunFailures', {
    parameters: { run: sfn.JsonPath.stringAt('$.rerun'), rerunning: true },
  });
  newRun.next(plan);
  rerun.next(plan);
  plan.next(
    new sfn.Choice(scope, 'WhichItems')
      .when(
        sfn.Condition.and(
          sfn.Condition.booleanEquals('$.plan.rerun', true),
          sfn.Condition.numberEquals('$.plan.failures', 0),
        ),
        new sfn.Succeed(scope, 'NothingFailed', { comment: 'The run named by "rerun" has no failures to retry' }),
      )
      .when(sfn.Condition.booleanEquals('$.plan.rerun', true), overFailures)
      .otherwise(overInputs),
  );
  const start = new sfn.Choice(scope, 'RerunOrNew').when(sfn.Condition.isPresent('$.rerun'), rerun).otherwise(newRun);

  const machineLogs = new logs.LogGroup(scope, 'StateMachineLogs', {
    retention: context.logRetention,
    removalPolicy: RemovalPolicy.DESTROY,
  });
  const stateMachine = new sfn.StateMachine(scope, 'StateMachine', {
    definitionBody: sfn.DefinitionBody.fromChainable(start),
    comment: `Arclight batch job ${context.jobName}: {} runs over ${inputUri}; {"rerun":"<run>"} retries that run's failures`,
    logs: { destination: machineLogs, level: sfn.LogLevel.ALL, includeExecutionData: false },
    tracingEnabled: true,
  });
  confineStateMachine(stateMachine, context);
  return stateMachine;
}

/**
 * The Map's reader and writer grant the state machine objects of the whole output bucket and listing of the whole
 * input bucket (aws-cdk-lib has no prefix for them): explicit denials hold it to the job's own prefixes, which matters
 * when the buckets are shared.
 */
function confineStateMachine(stateMachine: sfn.StateMachine, context: BatchJobContext): void {
  stateMachine.addToRolePolicy(
    new iam.PolicyStatement({
      effect: iam.Effect.DENY,
      actions: ['s3:GetObject', 's3:PutObject', 's3:AbortMultipartUpload', 's3:ListMultipartUploadParts'],
      notResources: [context.outputBucket.arnForObjects(`${context.outputPrefix}*`)],
    }),
  );
  if (context.inputPrefix !== '') {
    stateMachine.addToRolePolicy(
      new iam.PolicyStatement({
        effect: iam.Effect.DENY,
        actions: ['s3:ListBucket'],
        resources: [context.inputBucket.bucketArn],
        conditions: { StringNotLike: { 's3:prefix': [`${context.inputPrefix}*`] } },
      }),
    );
  }
}
