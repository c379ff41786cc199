import { Duration, Size, SizeRoundingBehavior } from 'aws-cdk-lib';
import * as lambda from 'aws-cdk-lib/aws-lambda';

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

/** Lambda's limits, and ours on top of them. */
export const LAMBDA_LIMITS = {
  memoryMb: [128, 10240],
  ephemeralMb: [512, 10240],
  maxTimeoutSeconds: 29,
  /** The runtime's own footprint: Node.js, onnxruntime, the AWS SDK. */
  runtimeMb: 160,
  /** Lambda's init phase; a cold start longer than this is billed and may be retried. */
  initWindowSeconds: 10,
} as const;

/** Where a RealtimeApi runs. */
export abstract class Compute {
  /** An AWS Lambda container function (CPU): scales to zero, pay per request. The default. */
  static lambda(props: LambdaComputeProps = {}): LambdaCompute {
    return new LambdaCompute(props);
  }

  /** Which backend this is. */
  abstract readonly kind: 'lambda';
}

/** The Lambda compute, with every prop resolved to its default. */
export class LambdaCompute extends Compute {
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

  /** Every problem with these props, given the model's size when known. */
  problems(modelBytes: number | undefined): string[] {
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
    if (modelBytes !== undefined) problems.push(...this.modelFitProblems(modelBytes, ephemeralMb));
    return problems;
  }

  private modelFitProblems(modelBytes: number, ephemeralMb: number): string[] {
    const modelMb = modelBytes / 2 ** 20;
    const problems: string[] = [];
    if (modelMb > ephemeralMb) {
      problems.push(`the model (${modelMb.toFixed(0)} MB) is larger than ephemeralStorageSize (${ephemeralMb} MB)`);
    }
    const neededMb = requiredMemoryMb(modelBytes);
    if (neededMb > this.memorySize) {
      problems.push(
        `the model (${modelMb.toFixed(0)} MB) needs about ${neededMb} MB of memory (its bytes, the onnxruntime session's copy and ${LAMBDA_LIMITS.runtimeMb} MB of runtime); memorySize is ${this.memorySize} MB`,
      );
    }
    return problems;
  }
}

/** Memory a model needs at peak: the downloaded bytes and the session built from them, next to the runtime. */
export function requiredMemoryMb(modelBytes: number): number {
  return Math.ceil(LAMBDA_LIMITS.runtimeMb + (2 * modelBytes) / 2 ** 20);
}

/** A rough cold start: an S3 fetch at ~75 MB/s plus session creation at ~300 MB/s plus half a second of imports. */
export function estimatedColdStartSeconds(modelBytes: number): number {
  const mb = modelBytes / 2 ** 20;
  return 0.5 + mb / 75 + mb / 300;
}
