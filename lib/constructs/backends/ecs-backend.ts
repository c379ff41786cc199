/**
 * The ECS backend of a RealtimeApi: a VPC (unless given), a cluster with Container Insights, an Auto Scaling group on
 * the ECS-optimized Amazon Linux 2023 (GPU) AMI as its capacity provider, with instance metadata closed to containers,
 * and one service per variant (the API's own model is one), each with its own EC2 task definition reserving GPUs,
 * task role, deployment circuit breaker, target group and autoscaling on ALB requests per target. One internal ALB
 * fronts them: its listener forwards by the variants' weights, `x-arclight-variant: <name>` pins one, and a shadow
 * variant is reached only on a listener of its own. An HTTP API reaches the main listener through a VPC link.
 * An AsyncApi on ECS is async/async-ecs-worker.ts instead: a queue worker service with no load balancer.
 */
import { rmSync } from 'node:fs';
import { Annotations, Duration, RemovalPolicy, Stack, Validations } from 'aws-cdk-lib';
import * as apigwv2 from 'aws-cdk-lib/aws-apigatewayv2';
import { HttpAlbIntegration } from 'aws-cdk-lib/aws-apigatewayv2-integrations';
import * as autoscaling from 'aws-cdk-lib/aws-autoscaling';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import { Platform } from 'aws-cdk-lib/aws-ecr-assets';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import * as elbv2 from 'aws-cdk-lib/aws-elasticloadbalancingv2';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as logs from 'aws-cdk-lib/aws-logs';
import { DISABLE_ASSET_STAGING_CONTEXT } from 'aws-cdk-lib/cx-api';
import * as cr from 'aws-cdk-lib/custom-resources';
import { Construct } from 'constructs';
import { API_METADATA_KEY, DEFAULTS, ENV, ROUTES, VARIANT_HEADER } from '../../contract.js';
import { integerWeights } from '../../variant-split.js';
import { METRICS } from '../../metric-catalog.js';
import { ApiMonitoring, runtimeMetric, type BackendMetrics } from '../operations/api-monitoring.js';
import { bindDataCapture, dataCaptureEnvironment } from '../operations/data-capture.js';
import {
  CONTAINER_REQUEST_TIMEOUT_MS,
  STARTUP_GRACE,
  acknowledgeFinding,
  acknowledgeOpenApi,
  addHttpRoutes,
  containerEnvironment,
  createHttpStage,
  httpApiMetrics,
  validateBatching,
  validateProps,
  type ApiMetadata,
  type BackendContext,
  type ComputeBackend,
  type ComputeChecks,
} from './backend-common.js';
import { buildContainerImageContext } from '../images/container-image-context.js';
import { isTorchFormat, type ModelSourceConfig } from '../model-source.js';
import { Rollout } from '../operations/rollout.js';
import {
  PRIMARY_VARIANT,
  shadowPercent,
  splitProblems,
  variantMetadata,
  variantProblems,
} from '../operations/variant.js';

/** The ECS compute's settings, every prop resolved to its default (`EcsCompute`). */
export interface EcsSettings extends ComputeChecks {
  readonly instanceType: string;
  readonly gpuCount: number;
  /** Whether tasks reserve GPUs (and run the CUDA image). */
  readonly gpu: boolean;
  readonly minTasks: number;
  readonly maxTasks: number;
  readonly targetRequestsPerTask: number;
  readonly vpc?: ec2.IVpc;
}

/**
 * The service's rolling deployment: every running task stays until its replacement is healthy (no capacity lost on
 * a model or code update), and as many new tasks as old may start beside them.
 */
export const DEPLOYMENT = { minHealthyPercent: 100, maxHealthyPercent: 200 } as const;

/** The container's name in the task definition. */
export const CONTAINER_NAME = 'server';
/** API Gateway's payload limit for HTTP APIs (10 MB). */
const HTTP_API_MAX_PAYLOAD_BYTES = 10 * 1024 * 1024;

/** The port of the ALB listener in front of the shadow variant's service, which only the primary's tasks reach. */
export const SHADOW_LISTENER_PORT = 8081;

/** One service of the API: the API's own, or a variant's. */
interface EcsVariantService {
  /** The construct its resources are under (the RealtimeApi for the API's own, `Variant<name>` for a variant). */
  readonly scope: Construct;
  /** Its name as metrics and `x-arclight-variant` say it. */
  readonly name: string;
  readonly weight: number;
  readonly shadow: boolean;
  readonly taskDefinition: ecs.Ec2TaskDefinition;
  readonly service: ecs.Ec2Service;
  readonly minTasks: number;
  readonly maxTasks: number;
}

/** Builds the ECS service and its HTTP API under `scope` (the RealtimeApi). */
export function buildEcsBackend(scope: Construct, context: BackendContext, compute: EcsSettings): ComputeBackend {
  const taskRole = new iam.Role(scope, 'TaskRole', {
    assumedBy: new iam.ServicePrincipal('ecs-tasks.amazonaws.com'),
    description: `Runs the ${context.apiName} Arclight API on ECS: reads its model object`,
  });
  const model = context.model.bind(scope, taskRole);
  // Each variant: a task role of its own reading its own model object, under its own scope.
  const boundVariants = context.variants.map((props) => {
    const variantScope = new Construct(scope, `Variant${props.name}`);
    const role = new iam.Role(variantScope, 'TaskRole', {
      assumedBy: new iam.ServicePrincipal('ecs-tasks.amazonaws.com'),
      description: `Runs variant ${props.name} of the ${context.apiName} Arclight API on ECS: reads its model object`,
    });
    return { props, scope: variantScope, role, model: props.model.bind(variantScope, role) };
  });
  const rollout = context.rollout ?? Rollout.rolling();
  validateProps(scope, context, model, [
    ...compute.problems(model.sizeBytes),
    ...validateBatching(context.batching),
    ...rollout.problems('ecs'),
    ...variantProblems(context.variants, PRIMARY_VARIANT),
    ...splitProblems(context.variants),
    ...boundVariants.flatMap((v) => v.model.problems.map((problem) => `variant '${v.props.name}': ${problem}`)),
  ]);
  if (rollout.kind === 'canary' || rollout.kind === 'linear') {
    Annotations.of(scope).addWarningV2(
      'arclight:ecsRolloutRolling',
      `RealtimeApi '${context.apiName}': ECS replaces tasks in a rolling deployment (new tasks start beside the old, the circuit breaker and the rollout's alarms roll back); the ${rollout.kind}'s percent and interval apply to Lambda and SageMaker only.`,
    );
  }

  const vpc = compute.vpc ?? createVpc(scope, context);
  const containerLogs = new logs.LogGroup(scope, 'ContainerLogs', {
    retention: context.logRetention,
    removalPolicy: RemovalPolicy.DESTROY,
  });
  const variantMaxTasks = (instanceCount: number | undefined): number => Math.max(instanceCount ?? 1, compute.maxTasks);
  const { cluster, capacityProvider, instanceRole, group } = addEcsCapacity(
    scope,
    context,
    // Room for every service's largest size, each in a rolling deployment.
    // (Named, not spread: the settings' gpu is a getter, which a spread drops.)
    {
      instanceType: compute.instanceType,
      gpu: compute.gpu,
      maxTasks: compute.maxTasks + context.variants.reduce((sum, v) => sum + variantMaxTasks(v.instanceCount), 0),
    },
    vpc,
    containerLogs,
  );

  const loadBalancer = new elbv2.ApplicationLoadBalancer(scope, 'LoadBalancer', {
    vpc,
    internetFacing: false,
    vpcSubnets: { subnets: vpc.privateSubnets },
    dropInvalidHeaderFields: true,
  });

  // One image per predictor: a variant with the API's predictor runs the API's image.
  const images = new Map<string | undefined, { image: ecs.ContainerImage; contextDir: string }>();
  const imageFor = (predictorEntry: string | undefined, modelFormat: ModelSourceConfig): ecs.ContainerImage => {
    const known = images.get(predictorEntry);
    if (known) return known.image;
    const contextDir = buildContainerImageContext({
      predictorEntry,
      gpu: compute.gpu,
      ...(isTorchFormat(modelFormat.format) ? { torch: { module: modelFormat.torch?.module } } : {}),
    });
    const image = ecs.ContainerImage.fromAsset(contextDir, { platform: Platform.LINUX_AMD64 });
    images.set(predictorEntry, { image, contextDir });
    return image;
  };
  const shadowProps = context.variants.find((v) => v.shadow);
  const hasVariants = context.variants.length > 0;
  const serviceOf = (
    serviceScope: Construct,
    args: {
      readonly name: string;
      readonly role: iam.Role;
      readonly model: ModelSourceConfig;
      readonly predictorEntry: string | undefined;
      readonly minTasks: number;
      readonly environment: Record<string, string>;
    },
  ): { taskDefinition: ecs.Ec2TaskDefinition; service: ecs.Ec2Service } => {
    const taskDefinition = new ecs.Ec2TaskDefinition(serviceScope, 'TaskDefinition', {
      networkMode: ecs.NetworkMode.AWS_VPC,
      taskRole: args.role,
    });
    taskDefinition.addContainer(CONTAINER_NAME, {
      image: imageFor(args.predictorEntry, args.model),
      memoryReservationMiB: 2048,
      ...(compute.gpu ? { gpuCount: compute.gpuCount } : {}),
      portMappings: [{ containerPort: DEFAULTS.port }],
      environment: {
        ...containerEnvironment(context, args.model, {
          gpu: compute.gpu,
          maxBodyBytes: HTTP_API_MAX_PAYLOAD_BYTES,
          requestTimeoutMs: CONTAINER_REQUEST_TIMEOUT_MS,
        }),
        // The X-Ray daemon beside it in the task (awsvpc: one network namespace).
        ...(context.tracing ? { [ENV.tracing]: 'on', AWS_XRAY_DAEMON_ADDRESS: `127.0.0.1:${XRAY_DAEMON_PORT}` } : {}),
        // The runtime's metrics carry the variant, and its answers name it.
        ...(hasVariants ? { [ENV.variant]: args.name } : {}),
        ...args.environment,
      },
      logging: ecs.LogDrivers.awsLogs({ streamPrefix: context.apiName, logGroup: containerLogs }),
      // The server stops accepting on SIGTERM and drains in-flight requests before exiting.
      stopTimeout: Duration.seconds(30),
    });
    if (context.tracing) addXRayDaemon(taskDefinition, args.role, containerLogs, context.apiName);
    const variant = context.variants.find((v) => v.name === args.name);
    (taskDefinition.node.defaultChild as ecs.CfnTaskDefinition).addMetadata(API_METADATA_KEY, {
      apiName: context.apiName,
      compute: 'ecs',
      architecture: 'x64',
      gpu: compute.gpu,
      ...(variant ? { variant: variantMetadata(variant) } : {}),
    } satisfies ApiMetadata);

    const service = new ecs.Ec2Service(serviceScope, 'Service', {
      cluster,
      taskDefinition,
      desiredCount: args.minTasks,
      circuitBreaker: { enable: true, rollback: true },
      capacityProviderStrategies: [{ capacityProvider: capacityProvider.capacityProviderName, weight: 1 }],
      healthCheckGracePeriod: STARTUP_GRACE,
      ...DEPLOYMENT,
      vpcSubnets: { subnets: vpc.privateSubnets },
    });
    // The cluster's capacity-provider association (made at synth, under the cluster) must exist before the service is
    // created with that provider, and outlive it on deletion: depend on the cluster's whole subtree.
    service.node.addDependency(cluster);
    // Tasks pull their image and write their logs with the execution role: its policy must be attached before the first
    // task starts, or the pull is refused and the circuit breaker rolls back the stack's first deployment.
    if (taskDefinition.executionRole) service.node.addDependency(taskDefinition.executionRole);
    return { taskDefinition, service };
  };

  const own = serviceOf(scope, {
    name: PRIMARY_VARIANT,
    role: taskRole,
    model,
    predictorEntry: context.predictor.entry,
    minTasks: compute.minTasks,
    environment: {
      ...dataCaptureEnvironment(
        context.dataCapture && bindDataCapture(scope, context.apiName, context.dataCapture, taskRole),
      ),
      // The shadow's copies go out through its own listener, after each answer (shadow-copy.ts).
      ...(shadowProps
        ? {
            [ENV.shadowUrl]: `http://${loadBalancer.loadBalancerDnsName}:${SHADOW_LISTENER_PORT}`,
            [ENV.shadowPercent]: String(shadowPercent(shadowProps)),
          }
        : {}),
    },
  });
  const services: EcsVariantService[] = [
    {
      scope,
      name: PRIMARY_VARIANT,
      weight: 1,
      shadow: false,
      ...own,
      minTasks: compute.minTasks,
      maxTasks: compute.maxTasks,
    },
    ...boundVariants.map((v) => {
      const minTasks = v.props.instanceCount ?? 1;
      return {
        scope: v.scope,
        name: v.props.name,
        weight: v.props.weight ?? 1,
        shadow: v.props.shadow ?? false,
        ...serviceOf(v.scope, {
          name: v.props.name,
          role: v.role,
          model: v.model,
          predictorEntry: (v.props.predictor?.bind() ?? context.predictor).entry,
          minTasks,
          environment: {},
        }),
        minTasks,
        maxTasks: variantMaxTasks(v.props.instanceCount),
      };
    }),
  ];
  // The image assets were staged as the containers were added: the generated contexts can go (unless staging is off).
  if (!scope.node.tryGetContext(DISABLE_ASSET_STAGING_CONTEXT)) {
    for (const { contextDir } of images.values()) rmSync(contextDir, { recursive: true, force: true });
  }

  const listener = loadBalancer.addListener('Listener', { port: 80, open: false });
  const targetGroups = routeToServices(scope, vpc, loadBalancer, listener, services);
  for (const [i, entry] of services.entries()) {
    const scaling = entry.service.autoScaleTaskCount({ minCapacity: entry.minTasks, maxCapacity: entry.maxTasks });
    scaling.scaleOnRequestCount('RequestsPerTask', {
      requestsPerTarget: compute.targetRequestsPerTask,
      targetGroup: targetGroups[i]!,
    });
  }
  const targetGroup = targetGroups[0]!;
  const service = own.service;

  const vpcLinkSecurityGroup = new ec2.SecurityGroup(scope, 'VpcLinkSecurityGroup', {
    vpc,
    description: `VPC link of the ${context.apiName} Arclight API to its internal ALB`,
  });
  loadBalancer.connections.allowFrom(vpcLinkSecurityGroup, ec2.Port.tcp(80), 'the API Gateway VPC link');
  const vpcLink = new apigwv2.VpcLink(scope, 'VpcLink', {
    vpc,
    subnets: { subnets: vpc.privateSubnets },
    securityGroups: [vpcLinkSecurityGroup],
  });

  const api = new apigwv2.HttpApi(scope, 'Api', {
    apiName: context.apiName,
    description: `Arclight API ${context.apiName} (ECS)`,
    createDefaultStage: false,
  });
  addHttpRoutes(api, new HttpAlbIntegration('Integration', listener, { vpcLink }), context.auth.bind());
  const stage = createHttpStage(scope, api, context.throttle, context.logRetention);

  acknowledge(scope, context, api, own.taskDefinition, instanceRole, group);
  for (const entry of services.slice(1)) acknowledgeTaskDefinition(entry.taskDefinition);

  const monitoring = new ApiMonitoring(scope, 'Monitoring', {
    ...context.monitoring,
    apiName: context.apiName,
    apiGateway: httpApiMetrics(api),
    backend: ecsMetrics(context.apiName, cluster, service, targetGroup),
    ...(hasVariants ? { variants: services.map((s) => s.name), shadow: shadowProps !== undefined } : {}),
  });
  // The circuit breaker rolls back tasks that never get healthy; the deployment alarms roll back ones that do but
  // misbehave (5xx, latency) while the deployment runs. Every variant's service deploys (and rolls back) on its own.
  const alarms = rollout.ecsRollsBack ? rollout.rollbackAlarms(monitoring.alarms) : [];
  if (alarms.length > 0) {
    for (const entry of services) {
      entry.service.enableDeploymentAlarms(
        alarms.map((alarm) => alarm.alarmName),
        { behavior: ecs.AlarmBehavior.ROLLBACK_ON_ALARM },
      );
    }
  }
  return { api, apiId: api.apiId, url: stage.url, stageName: stage.stageName, monitoring };
}

/** The target groups' health check: the ready route, as the server answers it once the model is loaded. */
const TARGET_HEALTH_CHECK: elbv2.HealthCheck = {
  path: ROUTES.ready,
  healthyHttpCodes: '200',
  interval: Duration.seconds(10),
  timeout: Duration.seconds(5),
  healthyThresholdCount: 2,
  unhealthyThresholdCount: 3,
};

/**
 * The listener's routing, one target group per service, in the order given: without variants, all to the API's
 * service (as ever). With production variants, the ALB's weighted forward (weights as the smallest integers in the
 * same ratio), a rule per variant that `x-arclight-variant: <name>` pins, and a 400 for any other value of it. A
 * shadow's service gets a listener of its own on SHADOW_LISTENER_PORT, open only to the API's own tasks: no caller
 * through API Gateway (which reaches port 80 only) can get a shadow's answer.
 */
function routeToServices(
  scope: Construct,
  vpc: ec2.IVpc,
  loadBalancer: elbv2.ApplicationLoadBalancer,
  listener: elbv2.ApplicationListener,
  services: readonly EcsVariantService[],
): elbv2.ApplicationTargetGroup[] {
  const targets = { port: DEFAULTS.port, protocol: elbv2.ApplicationProtocol.HTTP };
  if (services.length === 1) {
    return [
      listener.addTargets('Service', {
        ...targets,
        targets: [services[0]!.service],
        deregistrationDelay: Duration.seconds(30),
        healthCheck: TARGET_HEALTH_CHECK,
      }),
    ];
  }
  const groups = services.map(
    (entry) =>
      new elbv2.ApplicationTargetGroup(entry.scope, entry.scope === scope ? 'ServiceTargets' : 'Targets', {
        vpc,
        ...targets,
        targets: [entry.service],
        deregistrationDelay: Duration.seconds(30),
        healthCheck: TARGET_HEALTH_CHECK,
      }),
  );
  const production = services.flatMap((entry, i) => (entry.shadow ? [] : [{ entry, group: groups[i]! }]));
  const weights = integerWeights(production.map((p) => p.entry.weight));
  listener.addAction('Weighted', {
    action: elbv2.ListenerAction.weightedForward(
      production.map((p, i) => ({ targetGroup: p.group, weight: weights[i]! })),
    ),
  });
  for (const [i, { entry, group }] of production.entries()) {
    listener.addAction(`Pin${entry.name}`, {
      priority: i + 1,
      conditions: [elbv2.ListenerCondition.httpHeader(VARIANT_HEADER, [entry.name])],
      action: elbv2.ListenerAction.forward([group]),
    });
  }
  listener.addAction('PinUnknown', {
    priority: production.length + 1,
    conditions: [elbv2.ListenerCondition.httpHeader(VARIANT_HEADER, ['*'])],
    action: elbv2.ListenerAction.fixedResponse(400, {
      contentType: 'application/json',
      messageBody: JSON.stringify({
        error: `${VARIANT_HEADER} names no variant of this API; it serves ${production.map((p) => p.entry.name).join(', ')}`,
        code: 'invalid_input',
      }),
    }),
  });
  const shadowIndex = services.findIndex((entry) => entry.shadow);
  if (shadowIndex >= 0) {
    loadBalancer.addListener('ShadowListener', {
      port: SHADOW_LISTENER_PORT,
      protocol: elbv2.ApplicationProtocol.HTTP,
      open: false,
      defaultTargetGroups: [groups[shadowIndex]!],
    });
    loadBalancer.connections.allowFrom(
      services[0]!.service,
      ec2.Port.tcp(SHADOW_LISTENER_PORT),
      "copies for the shadow variant, from the API's own tasks",
    );
  }
  return groups;
}

/** The cluster and its capacity: what an ECS service of an Arclight API (realtime or async) runs on. */
export interface EcsCapacity {
  readonly cluster: ecs.Cluster;
  readonly capacityProvider: ecs.AsgCapacityProvider;
  readonly instanceRole: iam.Role;
  readonly group: autoscaling.AutoScalingGroup;
}

/**
 * A cluster with Container Insights in `vpc`, and an Auto Scaling group on the ECS-optimized Amazon Linux 2023 (GPU)
 * AMI as its capacity provider, instance metadata closed to containers; the instances' log writes held to
 * `containerLogs`.
 */
export function addEcsCapacity(
  scope: Construct,
  context: Pick<BackendContext, 'apiName' | 'logRetention'>,
  compute: Pick<EcsSettings, 'instanceType' | 'gpu' | 'maxTasks'>,
  vpc: ec2.IVpc,
  containerLogs: logs.ILogGroup,
): EcsCapacity {
  const cluster = new ecs.Cluster(scope, 'Cluster', { vpc, containerInsightsV2: ecs.ContainerInsights.ENABLED });
  cluster.node.addDependency(ecsServiceLinkedRole(scope, context.logRetention));

  const instanceRole = new InstanceRole(scope, 'InstanceRole', {
    assumedBy: new iam.ServicePrincipal('ec2.amazonaws.com'),
    description: `ECS container instances of the ${context.apiName} Arclight API`,
    logGroup: containerLogs,
  });
  const instanceSecurityGroup = new ec2.SecurityGroup(scope, 'InstanceSecurityGroup', {
    vpc,
    description: `ECS container instances of the ${context.apiName} Arclight API`,
  });
  const userData = ec2.UserData.forLinux();
  const launchTemplate = new ec2.LaunchTemplate(scope, 'LaunchTemplate', {
    instanceType: new ec2.InstanceType(compute.instanceType),
    // Amazon Linux 2023: the Amazon Linux 2 ECS AMIs reached end of life on 2026-06-30. The GPU variant's NVIDIA
    // driver (580.x in late 2026) runs the image's CUDA 12 (which needs >= 525.60.13).
    machineImage: ecs.EcsOptimizedImage.amazonLinux2023(
      compute.gpu ? ecs.AmiHardwareType.GPU : ecs.AmiHardwareType.STANDARD,
    ),
    userData,
    role: instanceRole,
    securityGroup: instanceSecurityGroup,
    requireImdsv2: true,
    // One hop: IMDS answers the host (and the ECS agent, on the host's network) but not a container behind a bridge.
    httpPutResponseHopLimit: 1,
    detailedMonitoring: true,
    blockDevices: [
      // The GPU AMI's root volume holds the CUDA image (several GB): room for two versions during a deployment.
      {
        deviceName: '/dev/xvda',
        volume: ec2.BlockDeviceVolume.ebs(100, { encrypted: true, volumeType: ec2.EbsDeviceVolumeType.GP3 }),
      },
    ],
  });
  const group = new autoscaling.AutoScalingGroup(scope, 'Capacity', {
    vpc,
    vpcSubnets: { subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS },
    launchTemplate,
    minCapacity: 0,
    maxCapacity: maxInstances(compute),
    cooldown: Duration.minutes(5),
  });
  const capacityProvider = new ecs.AsgCapacityProvider(scope, 'CapacityProvider', {
    autoScalingGroup: group,
    // ECS protects instances running tasks from scale-in, and drains them itself before termination.
    enableManagedTerminationProtection: true,
    enableManagedDraining: true,
    // The ECS agent's user data (ECS_CLUSTER=...), which Amazon Linux 2023 takes as Amazon Linux 2 did.
    machineImageType: ecs.MachineImageType.AMAZON_LINUX_2,
  });
  cluster.addAsgCapacityProvider(capacityProvider);
  userData.addCommands(
    // awsvpc tasks get no route to the instance's metadata service, so no container can take the instance role.
    'echo ECS_AWSVPC_BLOCK_IMDS=true >> /etc/ecs/ecs.config',
    ...(compute.gpu ? ['echo ECS_ENABLE_GPU_SUPPORT=true >> /etc/ecs/ecs.config'] : []),
  );
  return { cluster, capacityProvider, instanceRole, group };
}

/** What ECS (Container Insights) and the ALB report about the service, per minute. */
function ecsMetrics(
  apiName: string,
  cluster: ecs.Cluster,
  service: ecs.Ec2Service,
  targetGroup: elbv2.ApplicationTargetGroup,
): BackendMetrics {
  const period = Duration.minutes(1);
  return {
    throttles: runtimeMetric(METRICS.overloaded, apiName, { label: 'Overloaded (503)' }),
    capacity: [
      new cloudwatch.Metric({
        namespace: 'ECS/ContainerInsights',
        metricName: 'RunningTaskCount',
        dimensionsMap: { ClusterName: cluster.clusterName, ServiceName: service.serviceName },
        statistic: 'Average',
        period,
        label: 'Running tasks',
      }),
    ],
    healthy: targetGroup.metrics.healthyHostCount({ period, statistic: 'Minimum', label: 'Healthy targets' }),
    service: [
      targetGroup.metrics.requestCount({ period }),
      targetGroup.metrics.httpCodeTarget(elbv2.HttpCodeTarget.TARGET_5XX_COUNT, { period }),
      targetGroup.metrics.targetResponseTime({ period, statistic: 'p99', label: 'Target response time p99 (s)' }),
    ],
    utilization: [service.metricCpuUtilization({ period }), service.metricMemoryUtilization({ period })],
  };
}

/** The id of the stack-wide construct that makes sure ECS's service-linked role exists. */
const ECS_SERVICE_LINKED_ROLE_ID = 'ArclightEcsServiceLinkedRole';

/**
 * ECS's service-linked role (AWSServiceRoleForECS), created if the account has none. ECS makes it on first use, but
 * a CloudFormation stack that creates the account's first cluster and capacity provider fails ("Unable to assume the
 * service linked role"); an `AWS::IAM::ServiceLinkedRole` would fail wherever it exists already. So a custom
 * resource calls CreateServiceLinkedRole and takes "has been taken" (InvalidInput) as success; deleting the stack
 * leaves the role, which other clusters may use. One per stack.
 */
function ecsServiceLinkedRole(scope: Construct, retention: logs.RetentionDays): Construct {
  const stack = Stack.of(scope);
  const existing = stack.node.tryFindChild(ECS_SERVICE_LINKED_ROLE_ID) as Construct | undefined;
  if (existing) return existing;
  const logGroup = new logs.LogGroup(stack, `${ECS_SERVICE_LINKED_ROLE_ID}Logs`, {
    retention,
    removalPolicy: RemovalPolicy.DESTROY,
  });
  const resource = new cr.AwsCustomResource(stack, ECS_SERVICE_LINKED_ROLE_ID, {
    onCreate: {
      service: 'IAM',
      action: 'createServiceLinkedRole',
      parameters: { AWSServiceName: 'ecs.amazonaws.com' },
      physicalResourceId: cr.PhysicalResourceId.of('AWSServiceRoleForECS'),
      ignoreErrorCodesMatching: 'InvalidInput.*',
    },
    policy: cr.AwsCustomResourcePolicy.fromStatements([
      new iam.PolicyStatement({
        actions: ['iam:CreateServiceLinkedRole'],
        resources: [
          stack.formatArn({
            service: 'iam',
            region: '',
            resource: 'role',
            resourceName: 'aws-service-role/ecs.amazonaws.com/AWSServiceRoleForECS',
          }),
        ],
        conditions: { StringEquals: { 'iam:AWSServiceName': 'ecs.amazonaws.com' } },
      }),
    ]),
    installLatestAwsSdk: false,
    logGroup,
  });
  // CDK's one provider function for every AwsCustomResource of the stack.
  const provider = stack.node.findChild(
    cr.AwsCustomResource.PROVIDER_FUNCTION_UUID.replace(/-/g, '').replace(/^/, 'AWS'),
  );
  acknowledgeFinding(
    provider,
    'AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]',
    "CDK's AwsCustomResource provider (it creates ECS's service-linked role) runs with AWSLambdaBasicExecutionRole: it writes only its own logs.",
  );
  return resource;
}

/**
 * The Auto Scaling group's ceiling: room for a rolling deployment at the service's largest size (`maxTasks` old tasks
 * beside as many new ones, DEPLOYMENT's 200 %), at one task per instance, the fewest an instance holds. Managed
 * scaling launches only what pending tasks need, so the ceiling costs nothing until a rollout uses it.
 */
export function maxInstances(compute: Pick<EcsSettings, 'maxTasks'>): number {
  return Math.ceil((compute.maxTasks * DEPLOYMENT.maxHealthyPercent) / 100);
}

/**
 * The container instances' role. The ECS agent's grants that CDK adds as the group joins the cluster include
 * CloudWatch Logs writes on '*' (for the awslogs driver of tasks without an execution role); the task here has one,
 * so those writes are held to the service's own log group.
 */
class InstanceRole extends iam.Role {
  private readonly logGroupArn: string;

  constructor(scope: Construct, id: string, props: iam.RoleProps & { readonly logGroup: logs.ILogGroup }) {
    const { logGroup, ...roleProps } = props;
    super(scope, id, roleProps);
    this.logGroupArn = logGroup.logGroupArn;
  }

  override addToPrincipalPolicy(statement: iam.PolicyStatement): iam.AddToPrincipalPolicyResult {
    const logActions = statement.actions.filter((action) => action.startsWith('logs:'));
    if (logActions.length === 0 || !statement.resources.includes('*')) return super.addToPrincipalPolicy(statement);
    const others = statement.actions.filter((action) => !action.startsWith('logs:'));
    if (others.length > 0) super.addToPrincipalPolicy(statement.copy({ actions: others }));
    return super.addToPrincipalPolicy(statement.copy({ actions: logActions, resources: [this.logGroupArn] }));
  }
}

/** A VPC of two AZs with one NAT gateway and flow logs, for an API given none. */
export function createVpc(scope: Construct, context: Pick<BackendContext, 'apiName' | 'logRetention'>): ec2.Vpc {
  const vpc = new ec2.Vpc(scope, 'Vpc', {
    maxAzs: 2,
    natGateways: 1,
    subnetConfiguration: [
      { name: 'public', subnetType: ec2.SubnetType.PUBLIC, cidrMask: 24 },
      { name: 'private', subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS, cidrMask: 22 },
    ],
  });
  const flowLogs = new logs.LogGroup(scope, 'FlowLogs', {
    retention: context.logRetention,
    removalPolicy: RemovalPolicy.DESTROY,
  });
  const flowLogRole = new iam.Role(scope, 'FlowLogRole', {
    assumedBy: new iam.ServicePrincipal('vpc-flow-logs.amazonaws.com'),
    description: `Writes the flow logs of the ${context.apiName} Arclight API's VPC`,
  });
  vpc.addFlowLog('FlowLog', {
    destination: ec2.FlowLogDestination.toCloudWatchLogs(flowLogs, flowLogRole),
    trafficType: ec2.FlowLogTrafficType.ALL,
  });
  return vpc;
}

/** cdk-nag findings that follow from the design, each acknowledged with its reason. */
function acknowledge(
  scope: Construct,
  context: BackendContext,
  api: apigwv2.HttpApi,
  taskDefinition: ecs.Ec2TaskDefinition,
  instanceRole: iam.Role,
  group: autoscaling.AutoScalingGroup,
): void {
  acknowledgeEcsTask(taskDefinition, instanceRole, group);
  Validations.of(scope).acknowledge({
    id: 'AwsSolutions-ELB2',
    reason:
      "The ALB is internal and reached only through the API's VPC link; the API stage's JSON access logs record every request.",
  });
  acknowledgeOpenApi(api, context.auth);
}

/** The cdk-nag findings of the capacity (addEcsCapacity) and of a task definition on it, each with its reason. */
export function acknowledgeEcsTask(
  taskDefinition: ecs.TaskDefinition,
  instanceRole: iam.Role,
  group: autoscaling.AutoScalingGroup,
): void {
  acknowledgeTaskDefinition(taskDefinition);
  Validations.of(instanceRole).acknowledge({
    id: 'AwsSolutions-IAM5[Resource::*]',
    reason:
      "The ECS agent's calls that have no resource-level permissions (ecs:DiscoverPollEndpoint, ecr:GetAuthorizationToken, ecs:Poll and ecs:StartTelemetrySession held to the cluster by condition, as CDK's cluster grants them) take '*'; cluster-scoped ones name the cluster; log writes name the service's log group.",
  });
  Validations.of(instanceRole).acknowledge({
    id: 'AwsSolutions-IAM5[Action::ecs:Submit*]',
    reason:
      "ecs:Submit* (the agent's SubmitContainerStateChange, SubmitTaskStateChange, SubmitAttachmentStateChanges) as CDK's cluster grants it, scoped to this cluster's ARN.",
  });
  Validations.of(group).acknowledge({
    id: 'AwsSolutions-AS3',
    reason:
      'The group is an ECS capacity provider: ECS managed scaling drives it, and service events, Container Insights and the ALB report capacity problems.',
  });
}

/** What every task definition (the API's, each variant's) is acknowledged for. */
function acknowledgeTaskDefinition(taskDefinition: ecs.Ec2TaskDefinition): void {
  if (taskDefinition.executionRole) {
    Validations.of(taskDefinition.executionRole).acknowledge({
      id: 'AwsSolutions-IAM5[Resource::*]',
      reason:
        "ecr:GetAuthorizationToken has no resource-level permissions (it takes '*'); the image pull is scoped to its repository and logs to the task's own log group.",
    });
  }
  Validations.of(taskDefinition).acknowledge({
    id: 'AwsSolutions-ECS2',
    reason:
      "The variables are the deployed contract (model URI and sha256, API name, limits, batching knobs, variant and shadow URL): no secrets, and the task definition's revision records them.",
  });
}

/** The X-Ray daemon's image (AWS's, on ECR Public) and UDP port. */
export const XRAY_DAEMON_IMAGE = 'public.ecr.aws/xray/aws-xray-daemon:3.x';
const XRAY_DAEMON_PORT = 2000;

/**
 * tracing: true on ECS: the X-Ray daemon as a sidecar that receives the runtime's segments over UDP on loopback and
 * forwards them; the task role may put segments (X-Ray's write actions have no resource-level permissions).
 */
function addXRayDaemon(
  taskDefinition: ecs.Ec2TaskDefinition,
  taskRole: iam.Role,
  logGroup: logs.ILogGroup,
  apiName: string,
): void {
  taskDefinition.addContainer('xray-daemon', {
    image: ecs.ContainerImage.fromRegistry(XRAY_DAEMON_IMAGE),
    essential: false,
    memoryReservationMiB: 64,
    portMappings: [{ containerPort: XRAY_DAEMON_PORT, protocol: ecs.Protocol.UDP }],
    logging: ecs.LogDrivers.awsLogs({ streamPrefix: `${apiName}-xray`, logGroup }),
  });
  taskRole.addToPolicy(
    new iam.PolicyStatement({
      actions: [
        'xray:PutTraceSegments',
        'xray:PutTelemetryRecords',
        'xray:GetSamplingRules',
        'xray:GetSamplingTargets',
      ],
      resources: ['*'],
    }),
  );
  Validations.of(taskRole).acknowledge({
    id: 'AwsSolutions-IAM5[Resource::*]',
    reason:
      "tracing: true: the X-Ray daemon's PutTraceSegments, PutTelemetryRecords and sampling reads have no resource-level permissions and take '*'.",
  });
}
