/**
 * A role's access to one S3 prefix (a versioned model's folders, a data-capture destination) in a policy of its own,
 * so cdk-nag's wildcard finding (AwsSolutions-IAM5 on `<bucket>/<prefix>*`) is acknowledged on exactly those
 * statements, with the reason, and on nothing else the role holds.
 */
import { Aspects, Stack, Validations } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import type { Construct } from 'constructs';

/** Attaches `statements` to the grantee's role as policy `id` under `scope`; `wildcardArn` is the prefix's `…/*` ARN. */
export function attachPrefixPolicy(
  scope: Construct,
  id: string,
  grantee: iam.IGrantable,
  statements: readonly iam.PolicyStatement[],
  wildcardArn: string,
  reason: string,
): void {
  const principal = grantee.grantPrincipal;
  if (!(principal instanceof iam.Role)) {
    for (const statement of statements) principal.addToPrincipalPolicy(statement);
    return;
  }
  const policy = new iam.Policy(scope, id, { statements: [...statements], roles: [principal] });
  // cdk-nag names the finding by the resolved ARN (`<Bucket1234.Arn>/prefix/*`), known only once tokens resolve.
  Aspects.of(policy).add({
    visit: (node) => {
      if (node !== policy) return;
      const finding = `AwsSolutions-IAM5[Resource::${nagNotation(Stack.of(policy).resolve(wildcardArn))}]`;
      Validations.of(policy).acknowledge({ id: finding, reason });
    },
  });
}

/** A resolved CloudFormation value as cdk-nag writes it in finding ids: `<Logical.Attr>`, `<Ref>`, strings as they are. */
function nagNotation(value: unknown): string {
  if (typeof value === 'string') return value;
  const v = value as Record<string, unknown>;
  if (Array.isArray(v['Fn::Join'])) {
    const [separator, parts] = v['Fn::Join'] as [string, unknown[]];
    return parts.map(nagNotation).join(separator);
  }
  if (Array.isArray(v['Fn::GetAtt'])) return `<${(v['Fn::GetAtt'] as string[]).join('.')}>`;
  if (typeof v['Ref'] === 'string') return `<${v['Ref']}>`;
  return JSON.stringify(value);
}
