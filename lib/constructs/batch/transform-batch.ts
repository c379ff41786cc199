/**
 * The SageMaker compute of a BatchJob: the GPU container image (whose server already answers `/invocations` and
 * `/ping`) as a SageMaker model, and a state machine whose one task runs a batch transform job over the input prefix
 * and waits for it (`createTransformJob.sync`). JSON Lines are split per line (`SplitType: Line`, one record per
 * request, `AssembleWith: Line`); objects go one per request. The container answers every record with its outcome
 * (ARCLIGHT_TRANSFORM_RECORDS: a predictor error never stops the job), and a small Lambda function plans each attempt
 * and splits SageMaker's `<run>/transform/<attempt>/<input key>.out` into the layout every batch job writes:
 *
 * ```
 * run name → Plan (Lambda; a rerun writes the failed records as the transform's input) → Transform (.sync)
 *          → Split (Lambda: results/, failures.jsonl, summary.json, _SUCCESS) → Done, or TransformFailed
 * ```
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Duration, RemovalPolicy, SizeRoundingBehavior } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import { DockerImageAsset, Platform } from 'aws-cdk-lib/aws-ecr-assets';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as sagemaker from 'aws-cdk-lib/aws-sagemaker';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import * as tasks from 'aws-cdk-lib/aws-stepfunctions-tasks';
import { DISABLE_ASSET_STAGING_CONTEXT } from 'aws-cdk-lib/cx-api';
import type { Construct } from 'constructs';
import { ENV } from '../../contract.js';
import { packageModule } from '../../package-files.js';
import { latestNodeRuntime } from '../async/async-front-function.js';
import { APP_DIR, MODEL_MODULE_DIR, buildContainerImageContext } from '../images/container-image-context.js';
import { bundleForNode } from '../images/node-bundle.js';
import { isTorchFormat, modelEnvironment } from '../model-source.js';
import type { BatchEngine, BatchJobContext, SageMakerBatchSettings } from './batch-context.js';
import { grantJobBuckets, throwProblems } from './batch-grants.js';
import { acknowledgeWildcards } from './batch-nag.js';

/**
 * The Lambda function that plans each attempt and splits the transform's output (a small zip bundle; it never loads
 * the model): it reads the input prefix and reads and writes the output prefix, nothing else.
 */
function buildStepsFunction(scope: Construct, context: BatchJobContext): lambda.Function {
  const logGroup = new logs.LogGroup(scope, 'StepsLogs', {
    retention: context.logRetention,
    removalPolicy: RemovalPolicy.DESTROY,
  });
  const role = new iam.Role(scope, 'StepsRole', {
    assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
    description: `Plans and splits the ${context.jobName} Arclight batch transform: reads its input prefix, writes its output prefix`,
  });
  logGroup.grantWrite(role);
  grantJobBuckets(role, context);
  const code = mkdtempSync(join(tmpdir(), 'arclight-transform-steps-'));
  bundleForNode(code, 'index.mjs', { file: packageModule('runtime/batch/transform-batch-handler') });
  return new lambda.Function(scope, 'Steps', {
    description: `Arclight batch job ${context.jobName}: plans each transform attempt and splits its output`,
    runtime: latestNodeRuntime(),
    architecture: lambda.Architecture.ARM_64,
    handler: 'index.handler',
    code: lambda.Code.fromAsset(code),
    memorySize: 1024,
    timeout: Duration.minutes(15),
    role,
    logGroup,
    environment: { [ENV.apiName]: context.jobName },
  });
}

/** What a transform request may take: the container answers within SageMaker's 60 s invocation limit... */
const TRANSFORM_REQUEST_TIMEOUT_MS = 55_000;

export function buildTransformBatch(
  scope: Construct,
  context: BatchJobContext,
  settings: SageMakerBatchSettings,
  computeProblems: string[],
): BatchEngine {
  const role = new iam.Role(scope, 'ExecutionRole', {
    assumedBy: new iam.ServicePrincipal('sagemaker.amazonaws.com'),
    description: `Runs the ${context.jobName} Arclight batch job on SageMaker: pulls its image, reads its model and input prefix, writes its output prefix`,
  });
  const model = context.model.bind(scope, role);
  throwProblems(scope, [...context.problems, ...context.predictor.problems, ...model.problems, ...computeProblems]);
  grantJobBuckets(role, context);
  // SageMaker lists the input prefix itself to find the objects.
  role.addToPolicy(
    new iam.PolicyStatement({
      actions: ['s3:ListBucket'],
      resources: [context.inputBucket.bucketArn],
      conditions: { StringLike: { 's3:prefix': [`${context.inputPrefix}*`] } },
    }),
  );
  const jobLogs = new logs.LogGroup(scope, 'TransformLogs', {
    logGroupName: `/aws/sagemaker/TransformJobs/${context.jobName}`,
    retention: context.logRetention,
    removalPolicy: RemovalPolicy.DESTROY,
  });
  jobLogs.grantWrite(role);
  role.addToPolicy(
    new iam.PolicyStatement({
      actions: ['cloudwatch:PutMetricData'],
      resources: ['*'],
      conditions: { StringLike: { 'cloudwatch:namespace': '/aws/sagemaker/*' } },
    }),
  );

  const contextDir = buildContainerImageContext({
    predictorEntry: context.predictor.entry,
    gpu: true,
    ...(isTorchFormat(model.format) ? { torch: { module: model.torch?.module } } : {}),
  });
  const image = new DockerImageAsset(scope, 'Image', { directory: contextDir, platform: Platform.LINUX_AMD64 });
  if (!scope.node.tryGetContext(DISABLE_ASSET_STAGING_CONTEXT)) rmSync(contextDir, { recursive: true, force: true });
  image.repository.grantPull(role);

  const maxPayloadBytes = settings.maxPayload.toBytes({ rounding: SizeRoundingBehavior.NONE });
  const cfnModel = new sagemaker.CfnModel(scope, 'Model', {
    executionRoleArn: role.roleArn,
    primaryContainer: {
      image: image.imageUri,
      mode: 'SingleModel',
      environment: {
        [ENV.apiName]: context.jobName,
        [ENV.modelUri]: model.uri,
        ...(model.sha256 ? { [ENV.modelSha256]: model.sha256 } : {}),
        ...modelEnvironment(model, `${APP_DIR}/${MODEL_MODULE_DIR}`),
        [ENV.config]: JSON.stringify(context.config),
        [ENV.executionProviders]: 'cuda,cpu',
        [ENV.maxBodyBytes]: String(maxPayloadBytes),
        [ENV.requestTimeoutMs]: String(TRANSFORM_REQUEST_TIMEOUT_MS),
        [ENV.maxQueueLength]: String(settings.maxConcurrentTransforms * 2),
        [ENV.transformRecords]: 'on',
      },
    },
  });
  cfnModel.node.addDependency(role);

  const jsonl = settings.inputFormat === 'jsonl';
  const steps = buildStepsFunction(scope, context);
  const outputBase = `s3://${context.outputBucket.bucketName}/${context.outputPrefix}`;
  const step = (id: string, payload: Record<string, unknown>, resultPath: string): tasks.LambdaInvoke =>
    new tasks.LambdaInvoke(scope, id, {
      lambdaFunction: steps,
      payload: sfn.TaskInput.fromObject(payload),
      payloadResponseOnly: true,
      resultPath,
      retryOnServiceExceptions: true,
    });
  const plan = step(
    'Plan',
    {
      action: 'plan',
      input: `s3://${context.inputBucket.bucketName}/${context.inputPrefix}`,
      output: sfn.JsonPath.format(`${outputBase}{}/`, sfn.JsonPath.stringAt('$.run')),
      rerun: sfn.JsonPath.stringAt('$.rerunning'),
    },
    '$.plan',
  );
  const transform = new tasks.SageMakerCreateTransformJob(scope, 'Transform', {
    integrationPattern: sfn.IntegrationPattern.RUN_JOB,
    // One job per attempt: `<run>-<attempt>` (≤ 63 letters, digits and hyphens; the default execution UUID fits).
    transformJobName: sfn.JsonPath.format(
      '{}-{}',
      sfn.JsonPath.stringAt('$.run'),
      sfn.JsonPath.stringAt('$.plan.attempt'),
    ),
    modelName: cfnModel.attrModelName,
    role,
    batchStrategy: tasks.BatchStrategy.SINGLE_RECORD,
    maxConcurrentTransforms: settings.maxConcurrentTransforms,
    maxPayload: settings.maxPayload,
    transformInput: {
      transformDataSource: {
        s3DataSource: {
          s3Uri: sfn.JsonPath.stringAt('$.plan.transformInput'),
          s3DataType: tasks.S3DataType.S3_PREFIX,
        },
      },
      ...(jsonl ? { contentType: 'application/json', splitType: tasks.SplitType.LINE } : {}),
    },
    transformOutput: {
      s3OutputPath: sfn.JsonPath.stringAt('$.plan.transformOutput'),
      ...(jsonl ? { assembleWith: tasks.AssembleWith.LINE, accept: 'application/json' } : {}),
    },
    transformResources: {
      instanceCount: settings.instanceCount,
      instanceType: new ec2.InstanceType(settings.instanceType.replace(/^ml\./, '')),
    },
    resultPath: sfn.JsonPath.DISCARD,
  });
  const split = step(
    'Split',
    {
      action: 'split',
      input: sfn.JsonPath.stringAt('$.plan.input'),
      output: sfn.JsonPath.stringAt('$.plan.output'),
      attempt: sfn.JsonPath.numberAt('$.plan.attempt'),
      startedAt: sfn.JsonPath.stringAt('$.plan.startedAt'),
      // null unless the transform failed (its outputs so far are split; the rest fail with its error).
      transformError: sfn.JsonPath.stringAt('$.transformError'),
    },
    '$.summary',
  );
  // A transform that fails (the job, not a record) still has its outputs split and its items in the manifest.
  transform.addCatch(split, { errors: ['States.ALL'], resultPath: '$.transformError' });
  transform.next(split);
  split.next(
    new sfn.Choice(scope, 'DidTheTransformFail')
      .when(
        sfn.Condition.isNotNull('$.transformError'),
        new sfn.Fail(scope, 'TransformFailed', {
          errorPath: '$.transformError.Error',
          causePath: '$.transformError.Cause',
        }),
      )
      .otherwise(new sfn.Pass(scope, 'Done', { outputPath: '$.summary' })),
  );
  const newRun = new sfn.Pass(scope, 'NewRun', {
    parameters: { run: sfn.JsonPath.stringAt('$$.Execution.Name'), rerunning: false, transformError: null },
  });
  const rerun = new sfn.Pass(scope, 'RerunFailures', {
    parameters: { run: sfn.JsonPath.stringAt('$.rerun'), rerunning: true, transformError: null },
  });
  newRun.next(plan);
  rerun.next(plan);
  plan.next(
    new sfn.Choice(scope, 'AnythingToRun')
      .when(
        sfn.Condition.and(sfn.Condition.isPresent('$.plan.records'), sfn.Condition.numberEquals('$.plan.records', 0)),
        new sfn.Succeed(scope, 'NothingFailed', { comment: 'The run named by "rerun" has no failures to retry' }),
      )
      .otherwise(transform),
  );
  const start = new sfn.Choice(scope, 'RerunOrNew').when(sfn.Condition.isPresent('$.rerun'), rerun).otherwise(newRun);

  const machineLogs = new logs.LogGroup(scope, 'StateMachineLogs', {
    retention: context.logRetention,
    removalPolicy: RemovalPolicy.DESTROY,
  });
  const stateMachine = new sfn.StateMachine(scope, 'StateMachine', {
    definitionBody: sfn.DefinitionBody.fromChainable(start),
    comment: `Arclight batch job ${context.jobName}: {} runs a SageMaker batch transform over the input prefix; {"rerun":"<run>"} retries that run's failed records`,
    logs: { destination: machineLogs, level: sfn.LogLevel.ALL, includeExecutionData: false },
    tracingEnabled: true,
  });

  acknowledgeWildcards(
    scope,
    "Each wildcard is an exact prefix of the job's own objects (<input prefix>* read, <output prefix>* written) or log streams; transform-job ARNs go by name pattern (each run's job is named at run time); ecr:GetAuthorizationToken, cloudwatch:PutMetricData (held to /aws/sagemaker/* by condition), X-Ray and CloudWatch Logs delivery have no resource-level permissions and take '*'.",
  );
  return { stateMachine, modelName: cfnModel.attrModelName };
}
