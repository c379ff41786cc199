import { Duration, Size, SizeRoundingBehavior } from 'aws-cdk-lib';
import type * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import type { Construct } from 'constructs';
import type { ModelFormat } from '../predictor.js';
import type { BackendContext, ComputeBackend } from './backends/backend-common.js';
import { buildEcsBackend, type EcsSettings } from './backends/ecs-backend.js';
import { buildLambdaBackend, type LambdaSettings } from './backends/lambda-backend.js';
import { buildSageMakerBackend, type SageMakerSettings } from './backends/sagemaker-backend.js';
import { RestApiAccessLogs } from './backends/sagemaker-rest-api.js';

export { RestApiAccessLogs };
import { LAMBDA_LIMITS, SAGEMAKER_LIMITS, requiredMemoryMb } from './backends/limits.js';

export { LAMBDA_LIMITS, SAGEMAKER_LIMITS, estimatedColdStartSeconds, requiredMemoryMb } from './backends/limits.js';

/** Props of the Lambda compute. */
export interface LambdaComputeProps {
  /** Memory in MB (CPU scales with it; 1769 MB is one full vCPU). @default 2048 */
  readonly memorySize?: number;
  /** Instruction set of the function. @default lambda.Architecture.ARM_64 */
  readonly architecture?: lambda.Architecture;
  /** Size of /tmp. @default Size.mebibytes(512) */
  readonly ephemeralStorageSize?: Size;
  /** Per-invocation timeout; API Gateway gives up at 29 s. @default Duration.seconds(29) */
  readonly timeout?: Duration;
  /** Concurrency reserved for (and capping) the function. @default no reservation */
  readonly reservedConcurrency?: number;
  /** Pre-initialized sandboxes, so requests skip the cold start. @default none */
  readonly provisionedConcurrency?: number;
}

/** Where a RealtimeApi runs. */
export abstract class Compute {
  /** An AWS Lambda container function (CPU): scales to zero, pay per request. The default. */
  static lambda(props: LambdaComputeProps = {}): LambdaCompute {
    return new LambdaCompute(props);
  }

  /**
   * A SageMaker real-time endpoint on GPU (or CPU) instances, behind an API Gateway REST API. Requests are limited
   * by SageMaker to 6 MB and 60 s, and by API Gateway to 29 s.
   */
  static sageMaker(props: SageMakerComputeProps): SageMakerCompute {
    return new SageMakerCompute(props);
  }

  /**
   * ECS on GPU (or CPU) EC2 instances. A RealtimeApi: one service per variant (each its own task definition, task
   * role, target group and autoscaling) behind one internal ALB whose listener forwards by the variants' weights
   * (`x-arclight-variant: <name>` pins one), reached through an HTTP API's VPC link. An AsyncApi: one service of
   * queue workers, with no load balancer.
   */
  static ecs(props: EcsComputeProps): EcsCompute {
    return new EcsCompute(props);
  }

  /** Which backend this is. */
  abstract readonly kind: 'lambda' | 'sagemaker' | 'ecs';

  /** Every problem with the props, given the model's size (and format) when known. */
  abstract problems(modelBytes: number | undefined, format?: ModelFormat): string[];

  /**
   * Builds this compute's backend under `scope` (the RealtimeApi): the model's runtime, the API in front of it, and
   * their roles, logs and scaling. Throws one error listing every invalid prop.
   */
  abstract bind(scope: Construct, context: BackendContext): ComputeBackend;
}

/** The Lambda compute, with every prop resolved to its default. */
export class LambdaCompute extends Compute implements LambdaSettings {
  readonly kind = 'lambda' as const;
  readonly memorySize: number;
  readonly architecture: lambda.Architecture;
  readonly ephemeralStorageSize: Size;
  readonly timeout: Duration;
  readonly reservedConcurrency?: number;
  readonly provisionedConcurrency?: number;

  constructor(props: LambdaComputeProps) {
    super();
    this.memorySize = props.memorySize ?? 2048;
    this.architecture = props.architecture ?? lambda.Architecture.ARM_64;
    this.ephemeralStorageSize = props.ephemeralStorageSize ?? Size.mebibytes(512);
    this.timeout = props.timeout ?? Duration.seconds(29);
    this.reservedConcurrency = props.reservedConcurrency;
    this.provisionedConcurrency = props.provisionedConcurrency;
  }

  override bind(scope: Construct, context: BackendContext): ComputeBackend {
    return buildLambdaBackend(scope, context, this);
  }

  /** Every problem with these props, given the model's size when known; a torch model needs more memory. */
  override problems(modelBytes: number | undefined, format: ModelFormat = 'onnx'): string[] {
    const problems: string[] = [];
    const [minMemory, maxMemory] = LAMBDA_LIMITS.memoryMb;
    if (!Number.isInteger(this.memorySize) || this.memorySize < minMemory || this.memorySize > maxMemory) {
      problems.push(`memorySize ${this.memorySize} MB is outside Lambda's ${minMemory}–${maxMemory} MB`);
    }
    const ephemeralMb = this.ephemeralStorageSize.toMebibytes({ rounding: SizeRoundingBehavior.NONE });
    const [minEphemeral, maxEphemeral] = LAMBDA_LIMITS.ephemeralMb;
    if (!Number.isInteger(ephemeralMb) || ephemeralMb < minEphemeral || ephemeralMb > maxEphemeral) {
      problems.push(`ephemeralStorageSize ${ephemeralMb} MB is outside Lambda's ${minEphemeral}–${maxEphemeral} MB`);
    }
    const timeoutSeconds = this.timeout.toSeconds();
    if (timeoutSeconds > LAMBDA_LIMITS.maxTimeoutSeconds) {
      problems.push(
        `timeout ${timeoutSeconds} s is above API Gateway's ${LAMBDA_LIMITS.maxTimeoutSeconds} s integration limit`,
      );
    }
    for (const [name, value] of [
      ['reservedConcurrency', this.reservedConcurrency],
      ['provisionedConcurrency', this.provisionedConcurrency],
    ] as const) {
      if (value !== undefined && (!Number.isInteger(value) || value < 0))
        problems.push(`${name} must be a non-negative integer, got ${value}`);
    }
    if (
      this.reservedConcurrency !== undefined &&
      this.provisionedConcurrency !== undefined &&
      this.provisionedConcurrency > this.reservedConcurrency
    ) {
      problems.push(
        `provisionedConcurrency ${this.provisionedConcurrency} exceeds reservedConcurrency ${this.reservedConcurrency}`,
      );
    }
    if (modelBytes !== undefined) problems.push(...this.modelFitProblems(modelBytes, ephemeralMb, format));
    return problems;
  }

  private modelFitProblems(modelBytes: number, ephemeralMb: number, format: ModelFormat): string[] {
    const modelMb = modelBytes / 2 ** 20;
    const problems: string[] = [];
    if (modelMb > ephemeralMb) {
      problems.push(`the model (${modelMb.toFixed(0)} MB) is larger than ephemeralStorageSize (${ephemeralMb} MB)`);
    }
    const torch = format !== 'onnx';
    const neededMb = requiredMemoryMb(modelBytes, torch);
    if (neededMb > this.memorySize) {
      const runtime = torch
        ? `torch's copy, ${LAMBDA_LIMITS.runtimeMb} MB of runtime and ${LAMBDA_LIMITS.torchRuntimeMb} MB for Python with torch`
        : `the onnxruntime session's copy and ${LAMBDA_LIMITS.runtimeMb} MB of runtime`;
      problems.push(
        `the ${torch ? `${format} ` : ''}model (${modelMb.toFixed(0)} MB) needs about ${neededMb} MB of memory (its bytes, ${runtime}); memorySize is ${this.memorySize} MB`,
      );
    }
    return problems;
  }
}

/** The SageMaker inference host image whose NVIDIA driver (550) runs the GPU images' CUDA 12 (which needs >= 525). */
export const SAGEMAKER_CUDA12_AMI = 'al2-ami-sagemaker-inference-gpu-3-1';

/** Props of the SageMaker compute. */
export interface SageMakerComputeProps {
  /** The endpoint's instance type, e.g. `ml.g5.xlarge` (GPU) or `ml.c7i.xlarge` (CPU). */
  readonly instanceType: string;
  /** Instances the endpoint starts with. @default minInstances */
  readonly initialInstanceCount?: number;
  /** The fewest instances autoscaling keeps. @default 1 */
  readonly minInstances?: number;
  /** The most instances autoscaling adds. @default the larger of minInstances and 2 */
  readonly maxInstances?: number;
  /** Target of the autoscaling policy: invocations per instance per minute. @default 600 */
  readonly targetInvocationsPerInstance?: number;
  /** How long SageMaker waits for `/ping` to answer 200 (model fetch + session) before failing the deployment. @default Duration.minutes(10) */
  readonly containerStartupHealthCheckTimeout?: Duration;
  /**
   * EBS storage attached to each instance, in GB. Instance types with local NVMe storage (ml.g5, ml.g4dn, ml.p4d...)
   * refuse it. @default SageMaker's default for the instance type
   */
  readonly volumeSize?: number;
  /**
   * How the REST API in front writes access logs, which need the region's API Gateway account setting (a CloudWatch
   * Logs role) that a fresh account lacks. @default RestApiAccessLogs.CREATE_ACCOUNT_ROLE
   */
  readonly accessLogs?: RestApiAccessLogs;
  /**
   * The host image of the endpoint's instances (ProductionVariant `InferenceAmiVersion`), which fixes the NVIDIA
   * driver. SageMaker's default GPU host runs driver 470 (CUDA 11.4) on ml.g4dn, g5, p4d and p4de, too old for the
   * image's CUDA 12. @default 'al2-ami-sagemaker-inference-gpu-3-1' (driver 550, CUDA 12.4) on GPU types, none on CPU
   */
  readonly inferenceAmiVersion?: string;
}

/** Instance families that carry GPUs (SageMaker's ml.* and EC2's). */
const GPU_FAMILY = /^(g3s?|g4dn|g4ad|g5|g5g|g6|g6e|gr6|p2|p3|p3dn|p4d|p4de|p5|p5e|p5en)$/;
/** Families with local NVMe instance storage, which SageMaker refuses VolumeSizeInGB (and a KMS key) for. */
const INSTANCE_STORAGE_FAMILY = /^(g4dn|g5|g6|g6e|p3dn|p4d|p4de|p5|p5e|p5en|[a-z]\d+[a-z]*d[a-z]*)$/;
/** Families that need AWS Neuron, which onnxruntime-node has no execution provider for. */
const NEURON_FAMILY = /^(inf1|inf2|trn1|trn1n|trn2)$/;

/** The family of an instance type (`ml.g5.xlarge` → `g5`, `g5.xlarge` → `g5`). */
export function instanceFamily(instanceType: string): string {
  const parts = instanceType.replace(/^ml\./, '').split('.');
  return parts[0] ?? '';
}

/** Whether an instance type has GPUs. */
export function isGpuInstance(instanceType: string): boolean {
  return GPU_FAMILY.test(instanceFamily(instanceType));
}

/** The SageMaker compute, with every prop resolved to its default. */
export class SageMakerCompute extends Compute implements SageMakerSettings {
  readonly kind = 'sagemaker' as const;
  readonly instanceType: string;
  readonly initialInstanceCount: number;
  readonly minInstances: number;
  readonly maxInstances: number;
  readonly targetInvocationsPerInstance: number;
  readonly containerStartupHealthCheckTimeout: Duration;
  readonly volumeSize?: number;
  /** Whether the instance type has GPUs: the CUDA image, else the CPU one. */
  readonly gpu: boolean;
  readonly accessLogs: RestApiAccessLogs;
  readonly inferenceAmiVersion?: string;

  constructor(props: SageMakerComputeProps) {
    super();
    this.instanceType = props.instanceType;
    this.minInstances = props.minInstances ?? 1;
    this.maxInstances = props.maxInstances ?? Math.max(this.minInstances, 2);
    this.initialInstanceCount = props.initialInstanceCount ?? this.minInstances;
    this.targetInvocationsPerInstance = props.targetInvocationsPerInstance ?? 600;
    this.containerStartupHealthCheckTimeout = props.containerStartupHealthCheckTimeout ?? Duration.minutes(10);
    this.volumeSize = props.volumeSize;
    this.gpu = isGpuInstance(props.instanceType);
    this.accessLogs = props.accessLogs ?? RestApiAccessLogs.CREATE_ACCOUNT_ROLE;
    this.inferenceAmiVersion = props.inferenceAmiVersion ?? (this.gpu ? SAGEMAKER_CUDA12_AMI : undefined);
  }

  override bind(scope: Construct, context: BackendContext): ComputeBackend {
    return buildSageMakerBackend(scope, context, this);
  }

  override problems(modelBytes: number | undefined): string[] {
    const problems: string[] = [];
    const family = instanceFamily(this.instanceType);
    if (!/^ml\.[a-z0-9-]+\.[a-z0-9-]+$/.test(this.instanceType)) {
      problems.push(
        `instanceType '${this.instanceType}' is not a SageMaker instance type (ml.<family>.<size>, e.g. ml.g5.xlarge)`,
      );
    } else if (NEURON_FAMILY.test(family)) {
      problems.push(
        `instanceType '${this.instanceType}' needs AWS Neuron, which onnxruntime has no execution provider for; use a GPU (ml.g5...) or CPU type`,
      );
    }
    problems.push(...countProblems({ minInstances: this.minInstances, maxInstances: this.maxInstances }, 1));
    if (!Number.isInteger(this.initialInstanceCount) || this.initialInstanceCount < 1) {
      problems.push(`initialInstanceCount must be an integer of at least 1, got ${this.initialInstanceCount}`);
    } else if (this.initialInstanceCount < this.minInstances || this.initialInstanceCount > this.maxInstances) {
      problems.push(
        `initialInstanceCount ${this.initialInstanceCount} is outside minInstances–maxInstances (${this.minInstances}–${this.maxInstances})`,
      );
    }
    if (!(this.targetInvocationsPerInstance > 0) || !Number.isFinite(this.targetInvocationsPerInstance)) {
      problems.push(
        `targetInvocationsPerInstance must be a positive number (per minute), got ${this.targetInvocationsPerInstance}`,
      );
    }
    const startup = this.containerStartupHealthCheckTimeout.toSeconds();
    const [minStartup, maxStartup] = SAGEMAKER_LIMITS.startupHealthCheckSeconds;
    if (startup < minStartup || startup > maxStartup) {
      problems.push(
        `containerStartupHealthCheckTimeout ${startup} s is outside SageMaker's ${minStartup}–${maxStartup} s`,
      );
    }
    if (this.inferenceAmiVersion !== undefined && !/^[a-z0-9][a-z0-9-]{0,62}$/.test(this.inferenceAmiVersion)) {
      problems.push(`inferenceAmiVersion '${this.inferenceAmiVersion}' is not a SageMaker inference AMI version`);
    } else if (this.inferenceAmiVersion?.includes('-gpu-') && !this.gpu) {
      problems.push(
        `inferenceAmiVersion '${this.inferenceAmiVersion}' is a GPU host image; ${this.instanceType} has no GPU`,
      );
    }
    const accessLogModes: string[] = Object.values(RestApiAccessLogs);
    if (!accessLogModes.includes(this.accessLogs)) {
      problems.push(`accessLogs '${this.accessLogs}' is not one of RestApiAccessLogs: ${accessLogModes.join(', ')}`);
    }
    if (this.volumeSize !== undefined) {
      const [minVolume, maxVolume] = SAGEMAKER_LIMITS.volumeGb;
      if (!Number.isInteger(this.volumeSize) || this.volumeSize < minVolume || this.volumeSize > maxVolume) {
        problems.push(`volumeSize ${this.volumeSize} GB is outside SageMaker's ${minVolume}–${maxVolume} GB`);
      } else if (INSTANCE_STORAGE_FAMILY.test(family)) {
        problems.push(
          `volumeSize cannot be set for ${this.instanceType}: it has local NVMe instance storage, and SageMaker refuses VolumeSizeInGB for such types`,
        );
      } else if (modelBytes !== undefined && modelBytes / 2 ** 30 > this.volumeSize) {
        problems.push(
          `the model (${(modelBytes / 2 ** 30).toFixed(1)} GB) does not fit in volumeSize (${this.volumeSize} GB)`,
        );
      }
    }
    return problems;
  }
}

/** Props of the ECS compute. */
export interface EcsComputeProps {
  /** The EC2 instance type of the capacity, e.g. `g5.xlarge`. */
  readonly instanceType: string;
  /** GPUs each task reserves; 0 runs the CPU image. @default 1 on GPU instance types, else 0 */
  readonly gpuCount?: number;
  /** The fewest tasks each service runs (each variant's, and an AsyncApi's queue worker, where 0 is allowed). @default 1 */
  readonly minTasks?: number;
  /** The most tasks autoscaling gives each service. @default the larger of minTasks and 2 */
  readonly maxTasks?: number;
  /** Target of each service's autoscaling: ALB requests per task per minute (an AsyncApi scales on its queue). @default 600 */
  readonly targetRequestsPerTask?: number;
  /** The VPC to run in (private subnets with egress for the tasks and instances). @default a new VPC, 2 AZs, one NAT gateway, flow logs */
  readonly vpc?: ec2.IVpc;
}

/** GPUs per instance of the common GPU types (the rest are not checked). */
const GPUS_PER_INSTANCE: Record<string, number> = {
  'g4dn.xlarge': 1,
  'g4dn.2xlarge': 1,
  'g4dn.4xlarge': 1,
  'g4dn.8xlarge': 1,
  'g4dn.12xlarge': 4,
  'g5.xlarge': 1,
  'g5.2xlarge': 1,
  'g5.4xlarge': 1,
  'g5.8xlarge': 1,
  'g5.12xlarge': 4,
  'g5.24xlarge': 4,
  'g5.48xlarge': 8,
  'g6.xlarge': 1,
  'g6.2xlarge': 1,
  'g6.4xlarge': 1,
  'g6.12xlarge': 4,
  'g6.48xlarge': 8,
  'p3.2xlarge': 1,
  'p3.8xlarge': 4,
  'p3.16xlarge': 8,
  'p4d.24xlarge': 8,
  'p5.48xlarge': 8,
};

/** The ECS compute, with every prop resolved to its default. */
export class EcsCompute extends Compute implements EcsSettings {
  readonly kind = 'ecs' as const;
  readonly instanceType: string;
  readonly gpuCount: number;
  readonly minTasks: number;
  readonly maxTasks: number;
  readonly targetRequestsPerTask: number;
  readonly vpc?: ec2.IVpc;

  constructor(props: EcsComputeProps) {
    super();
    this.instanceType = props.instanceType;
    this.gpuCount = props.gpuCount ?? (isGpuInstance(props.instanceType) ? 1 : 0);
    this.minTasks = props.minTasks ?? 1;
    this.maxTasks = props.maxTasks ?? Math.max(this.minTasks, 2);
    this.targetRequestsPerTask = props.targetRequestsPerTask ?? 600;
    this.vpc = props.vpc;
  }

  /** Whether tasks reserve GPUs (and run the CUDA image). */
  get gpu(): boolean {
    return this.gpuCount > 0;
  }

  override bind(scope: Construct, context: BackendContext): ComputeBackend {
    return buildEcsBackend(scope, context, this);
  }

  override problems(): string[] {
    const problems: string[] = [];
    const valid = /^[a-z][a-z0-9-]*\.[a-z0-9-]+$/.test(this.instanceType);
    if (!valid) {
      problems.push(
        `instanceType '${this.instanceType}' is not an EC2 instance type (<family>.<size>, e.g. g5.xlarge)`,
      );
    } else if (NEURON_FAMILY.test(instanceFamily(this.instanceType))) {
      problems.push(
        `instanceType '${this.instanceType}' needs AWS Neuron, which onnxruntime has no execution provider for`,
      );
    }
    if (!Number.isInteger(this.gpuCount) || this.gpuCount < 0) {
      problems.push(`gpuCount must be a non-negative integer, got ${this.gpuCount}`);
    } else if (this.gpuCount > 0 && valid && !isGpuInstance(this.instanceType)) {
      problems.push(`gpuCount ${this.gpuCount} needs a GPU instance type; ${this.instanceType} has no GPU`);
    } else if (this.gpuCount > (GPUS_PER_INSTANCE[this.instanceType] ?? Infinity)) {
      problems.push(
        `gpuCount ${this.gpuCount} is more than the ${GPUS_PER_INSTANCE[this.instanceType]} GPU(s) of ${this.instanceType}`,
      );
    }
    problems.push(...countProblems({ minTasks: this.minTasks, maxTasks: this.maxTasks }, 1));
    if (!(this.targetRequestsPerTask > 0) || !Number.isFinite(this.targetRequestsPerTask)) {
      problems.push(`targetRequestsPerTask must be a positive number (per minute), got ${this.targetRequestsPerTask}`);
    }
    return problems;
  }
}

/** A min/max pair: integers, min at least `floor`, max at least min. */
function countProblems(pair: Record<string, number>, floor: number): string[] {
  const [[minName, min], [maxName, max]] = Object.entries(pair) as [[string, number], [string, number]];
  const problems: string[] = [];
  if (!Number.isInteger(min) || min < floor)
    problems.push(`${minName} must be an integer of at least ${floor}, got ${min}`);
  if (!Number.isInteger(max) || max < floor)
    problems.push(`${maxName} must be an integer of at least ${floor}, got ${max}`);
  else if (Number.isInteger(min) && max < min) problems.push(`${maxName} ${max} is less than ${minName} ${min}`);
  return problems;
}
