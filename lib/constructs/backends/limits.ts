/** The AWS limits the computes are checked against at synth, and the figures derived from them. */

/** Lambda's limits, and ours on top of them. */
export const LAMBDA_LIMITS = {
  memoryMb: [128, 10240],
  ephemeralMb: [512, 10240],
  maxTimeoutSeconds: 29,
  /** The runtime's own footprint: Node.js, onnxruntime, the AWS SDK. */
  runtimeMb: 160,
  /** What a torch model adds: the Python process with torch's CPU libraries loaded. */
  torchRuntimeMb: 400,
  /** Starting Python and importing torch, on a cold start (it overlaps the model fetch). */
  torchImportSeconds: 3,
  /** Lambda's init phase; a cold start longer than this is billed and may be retried. */
  initWindowSeconds: 10,
} as const;

/**
 * Memory a model needs at peak: the downloaded bytes and the session built from them, next to the runtime (and, for a
 * torch model, the Python process with torch loaded).
 */
export function requiredMemoryMb(modelBytes: number, torch = false): number {
  const runtime = LAMBDA_LIMITS.runtimeMb + (torch ? LAMBDA_LIMITS.torchRuntimeMb : 0);
  return Math.ceil(runtime + (2 * modelBytes) / 2 ** 20);
}

/** A rough cold start: an S3 fetch at ~75 MB/s plus session creation at ~300 MB/s plus half a second of imports. */
export function estimatedColdStartSeconds(modelBytes: number): number {
  const mb = modelBytes / 2 ** 20;
  return 0.5 + mb / 75 + mb / 300;
}

/** SageMaker's limits, and the API Gateway ones in front of it. */
export const SAGEMAKER_LIMITS = {
  /** InvokeEndpoint's request payload limit. */
  maxPayloadBytes: 6 * 1024 * 1024,
  /** InvokeEndpoint gives up on the container after 60 s; the REST API in front gives up at 29 s. */
  invocationSeconds: 60,
  apiGatewaySeconds: 29,
  startupHealthCheckSeconds: [60, 3600],
  volumeGb: [1, 512],
} as const;
