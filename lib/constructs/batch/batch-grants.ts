/**
 * The permissions a batch job's workers hold: read the input prefix, read and write the output prefix (and list only
 * under it), each on exact prefixes; KMS use only where a bucket has its own key.
 */
import * as iam from 'aws-cdk-lib/aws-iam';
import type { Construct } from 'constructs';
import type { BatchJobContext } from './batch-context.js';

export function grantJobBuckets(grantee: iam.IGrantable, context: BatchJobContext): void {
  const principal = grantee.grantPrincipal;
  principal.addToPrincipalPolicy(
    new iam.PolicyStatement({
      actions: ['s3:GetObject'],
      resources: [context.inputBucket.arnForObjects(`${context.inputPrefix}*`)],
    }),
  );
  principal.addToPrincipalPolicy(
    new iam.PolicyStatement({
      actions: ['s3:GetObject', 's3:PutObject', 's3:DeleteObject'],
      resources: [context.outputBucket.arnForObjects(`${context.outputPrefix}*`)],
    }),
  );
  principal.addToPrincipalPolicy(
    new iam.PolicyStatement({
      actions: ['s3:ListBucket'],
      resources: [context.outputBucket.bucketArn],
      conditions: { StringLike: { 's3:prefix': [`${context.outputPrefix}*`] } },
    }),
  );
  context.inputBucket.encryptionKey?.grantDecrypt(principal);
  context.outputBucket.encryptionKey?.grantEncryptDecrypt(principal);
}

/** Every invalid prop in one error, as RealtimeApi reports them. */
export function throwProblems(scope: Construct, problems: readonly string[]): void {
  if (problems.length > 0) {
    throw new Error(`BatchJob '${scope.node.path}' has invalid props:\n  - ${problems.join('\n  - ')}`);
  }
}
