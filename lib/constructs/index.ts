export { ApiAuth, type JwtAuthOptions } from './api-auth.js';
export type { BackendContext, ComputeBackend } from './backends/backend-common.js';
export {
  Compute,
  EcsCompute,
  LambdaCompute,
  RestApiAccessLogs,
  SAGEMAKER_CUDA12_AMI,
  SAGEMAKER_LIMITS,
  SageMakerCompute,
  type EcsComputeProps,
  type LambdaComputeProps,
  type SageMakerComputeProps,
} from './compute.js';
export {
  ModelSource,
  type AssetModelOptions,
  type ExistingModelOptions,
  type ModelFormatOptions,
  type ModelSourceConfig,
  type ModelVersionsConfig,
  type TorchModelConfig,
  type VersionedModelOptions,
} from './model-source.js';
export type { DataCaptureProps } from './operations/data-capture.js';
export { Predictor, type PredictorConfig } from './predictor.js';
export {
  RealtimeApi,
  API_METADATA_KEY,
  type ApiMetadata,
  type BatchingProps,
  type RealtimeApiProps,
  type ThrottleProps,
} from './realtime-api.js';
export {
  ApiMonitoring,
  MONITORING_DEFAULTS,
  type ApiGatewayMetrics,
  type ApiMonitoringProps,
  type BackendMetrics,
  type MonitoringProps,
} from './operations/api-monitoring.js';
export {
  Rollout,
  type RollingRolloutProps,
  type RolloutAlarmOptions,
  type RolloutCompute,
  type StepRolloutProps,
} from './operations/rollout.js';
export { AsyncApi, type AsyncApiProps } from './async/async-api.js';
export { AsyncSageMakerEndpoint, type AsyncSageMakerEndpointProps } from './async/async-sagemaker-endpoint.js';
export { AsyncEcsWorker, type AsyncEcsWorkerProps } from './async/async-ecs-worker.js';
export { AsyncNotifications, type AsyncNotificationsProps } from './async/async-notifications.js';
export { WebhookSecret, type WebhookSecretConfig } from './async/webhook-secret.js';
export { BatchJob, type BatchJobProps } from './batch/batch-job.js';
export {
  BatchCompute,
  BATCH_LIMITS,
  type LambdaBatchComputeProps,
  type SageMakerBatchComputeProps,
} from './batch/batch-compute.js';
export { type VariantProps } from './operations/variant.js';
