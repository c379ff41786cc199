/**
 * Data capture (opt-in): a sampled share of an API's requests and responses written to an S3 prefix as JSON lines,
 * for drift monitoring. SageMaker captures at the endpoint (its DataCaptureConfig); on ECS the container server does
 * (ARCLIGHT_DATA_CAPTURE_URI), off the request path. Lambda has none: a frozen sandbox cannot upload in the background.
 */
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as s3 from 'aws-cdk-lib/aws-s3';
import type { CfnEndpointConfig } from 'aws-cdk-lib/aws-sagemaker';
import type { Construct } from 'constructs';
import { ENV } from '../../contract.js';
import { attachPrefixPolicy } from '../prefix-policy.js';

/** Where and how much to capture. */
export interface DataCaptureProps {
  /** The bucket the JSON lines go to (keep it private and encrypted). */
  readonly bucket: s3.IBucket;
  /** Key prefix of the captured objects. @default `data-capture/<apiName>/` */
  readonly prefix?: string;
  /** The percentage of requests captured, above 0 and at most 100. @default 100 */
  readonly samplingPercentage?: number;
}

/** Data capture as bound to an API's role. */
export interface BoundDataCapture {
  /** `s3://bucket/prefix/`. */
  readonly uri: string;
  readonly samplingPercentage: number;
}

/** Problems with the props (reported with the API's others). */
export function dataCaptureProblems(props: DataCaptureProps | undefined): string[] {
  if (props === undefined) return [];
  const problems: string[] = [];
  const percent = props.samplingPercentage;
  if (percent !== undefined && !(percent > 0 && percent <= 100)) {
    problems.push(`dataCapture.samplingPercentage must be above 0 and at most 100, got ${percent}`);
  }
  if (props.prefix !== undefined && (/[*?]/.test(props.prefix) || props.prefix.startsWith('/'))) {
    problems.push(`dataCapture.prefix '${props.prefix}' must be a folder without a leading / or IAM wildcards (* ?)`);
  }
  return problems;
}

/** Grants `grantee` s3:PutObject under the prefix only, and returns where captures go. */
export function bindDataCapture(
  scope: Construct,
  apiName: string,
  props: DataCaptureProps,
  grantee: iam.IGrantable,
): BoundDataCapture {
  const raw = props.prefix ?? `data-capture/${apiName}/`;
  const prefix = raw.endsWith('/') ? raw : `${raw}/`;
  const objects = props.bucket.arnForObjects(`${prefix}*`);
  attachPrefixPolicy(
    scope,
    'DataCaptureWrite',
    grantee,
    [new iam.PolicyStatement({ actions: ['s3:PutObject'], resources: [objects] })],
    objects,
    'Data capture writes new objects (named by time) under its prefix: PutObject there only, no read, nothing else in the bucket.',
  );
  // A bucket encrypted with a customer key: the writer needs the key too.
  props.bucket.encryptionKey?.grantEncrypt(grantee);
  return { uri: `s3://${props.bucket.bucketName}/${prefix}`, samplingPercentage: props.samplingPercentage ?? 100 };
}

/** The container server's env for data capture (ECS). */
export function dataCaptureEnvironment(bound: BoundDataCapture | undefined): Record<string, string> {
  if (!bound) return {};
  return { [ENV.dataCaptureUri]: bound.uri, [ENV.dataCapturePercent]: String(bound.samplingPercentage) };
}

/** SageMaker's own capture of the endpoint's input and output, JSON bodies kept as text. */
export function sageMakerDataCapture(bound: BoundDataCapture): CfnEndpointConfig.DataCaptureConfigProperty {
  return {
    enableCapture: true,
    initialSamplingPercentage: Math.max(1, Math.round(bound.samplingPercentage)),
    destinationS3Uri: bound.uri,
    captureOptions: [{ captureMode: 'Input' }, { captureMode: 'Output' }],
    captureContentTypeHeader: { jsonContentTypes: ['application/json'] },
  };
}
