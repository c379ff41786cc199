export { ApiAuth, type JwtAuthOptions } from './api-auth.js';
export { Compute, LambdaCompute, type LambdaComputeProps } from './compute.js';
export { ModelSource, type ExistingModelOptions, type ModelSourceConfig } from './model-source.js';
export { Predictor, type PredictorConfig } from './predictor.js';
export {
  RealtimeApi,
  API_METADATA_KEY,
  type ApiMetadata,
  type RealtimeApiProps,
  type ThrottleProps,
} from './realtime-api.js';
