/**
 * The SageMaker compute of a BatchJob: the GPU container image (whose server already answers `/invocations` and
 * `/ping`) as a SageMaker model, and a state machine whose one task runs a batch transform job over the input prefix
 * and waits for it (`createTransformJob.sync`). JSON Lines are split per line (`SplitType: Line`, one record per
 * request); objects go one per request. The job's output is SageMaker's: `<output>/<run>/<input key>.out`.
 */
import { rmSync } from 'node:fs';
import { RemovalPolicy, SizeRoundingBehavior } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import { DockerImageAsset, Platform } from 'aws-cdk-lib/aws-ecr-assets';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as sagemaker from 'aws-cdk-lib/aws-sagemaker';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import * as tasks from 'aws-cdk-lib/aws-stepfunctions-tasks';
import { DISABLE_ASSET_STAGING_CONTEXT } from 'aws-cdk-lib/cx-api';
import type { Construct } from 'constructs';
import { ENV } from '../../contract.js';
import { APP_DIR, MODEL_MODULE_DIR, buildContainerImageContext } from '../images/container-image-context.js';
import { isTorchFormat, modelEnvironment } from '../model-source.js';
import type { BatchEngine, BatchJobContext, SageMakerBatchSettings } from './batch-context.js';
import { grantJobBuckets, throwProblems } from './batch-grants.js';
import { acknowledgeWildcards } from './batch-nag.js';

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
      },
    },
  });
  cfnModel.node.addDependency(role);

  const jsonl = settings.inputFormat === 'jsonl';
  const transform = new tasks.SageMakerCreateTransformJob(scope, 'Transform', {
    integrationPattern: sfn.IntegrationPattern.RUN_JOB,
    // The execution's name is the transform job's (≤ 63 letters, digits and hyphens; the default UUID fits).
    transformJobName: sfn.JsonPath.stringAt('$$.Execution.Name'),
    modelName: cfnModel.attrModelName,
    role,
    batchStrategy: tasks.BatchStrategy.SINGLE_RECORD,
    maxConcurrentTransforms: settings.maxConcurrentTransforms,
    maxPayload: settings.maxPayload,
    transformInput: {
      transformDataSource: {
        s3DataSource: {
          s3Uri: `s3://${context.inputBucket.bucketName}/${context.inputPrefix}`,
          s3DataType: tasks.S3DataType.S3_PREFIX,
        },
      },
      ...(jsonl ? { contentType: 'application/json', splitType: tasks.SplitType.LINE } : {}),
    },
    transformOutput: {
      s3OutputPath: sfn.JsonPath.format(
        `s3://${context.outputBucket.bucketName}/${context.outputPrefix}{}/`,
        sfn.JsonPath.stringAt('$$.Execution.Name'),
      ),
      ...(jsonl ? { assembleWith: tasks.AssembleWith.LINE, accept: 'application/json' } : {}),
    },
    transformResources: {
      instanceCount: settings.instanceCount,
      instanceType: new ec2.InstanceType(settings.instanceType.replace(/^ml\./, '')),
    },
  });

  const machineLogs = new logs.LogGroup(scope, 'StateMachineLogs', {
    retention: context.logRetention,
    removalPolicy: RemovalPolicy.DESTROY,
  });
  const stateMachine = new sfn.StateMachine(scope, 'StateMachine', {
    definitionBody: sfn.DefinitionBody.fromChainable(transform),
    comment: `Arclight batch job ${context.jobName}: a SageMaker batch transform over the input prefix`,
    logs: { destination: machineLogs, level: sfn.LogLevel.ALL, includeExecutionData: false },
    tracingEnabled: true,
  });

  acknowledgeWildcards(
    scope,
    "Each wildcard is an exact prefix of the job's own objects (<input prefix>* read, <output prefix>* written) or log streams; transform-job ARNs go by name pattern (each run's job is named at run time); ecr:GetAuthorizationToken, cloudwatch:PutMetricData (held to /aws/sagemaker/* by condition), X-Ray and CloudWatch Logs delivery have no resource-level permissions and take '*'.",
  );
  return { stateMachine, modelName: cfnModel.attrModelName };
}
