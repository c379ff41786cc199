/**
 * cdk-nag names each wildcard of a policy as its own finding (`AwsSolutions-IAM5[Resource::<Bucket.Arn>/prefix/*]`),
 * and a plain `AwsSolutions-IAM5` acknowledgment does not cover them. The job's wildcards are all of two kinds, exact
 * prefixes of its own objects and resources and actions AWS grants only by pattern, so each is acknowledged by the
 * id cdk-nag gives it (the same flattening of CloudFormation references as cdk-nag's), with the reason.
 */
import { Stack } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import type { Construct } from 'constructs';
import { acknowledgeFinding } from '../backends/backend-common.js';

export function acknowledgeWildcards(scope: Construct, reason: string): void {
  for (const child of scope.node.findAll()) {
    if (!(child instanceof iam.CfnPolicy)) continue;
    const document = Stack.of(child).resolve(child.policyDocument) as { Statement?: Record<string, unknown>[] };
    const findings = new Set<string>();
    for (const statement of document.Statement ?? []) {
      for (const resource of asArray(statement['Resource'])) {
        const flat = flatten(resource);
        if (flat.includes('*')) findings.add(`AwsSolutions-IAM5[Resource::${flat}]`);
      }
      for (const action of asArray(statement['Action'])) {
        if (typeof action === 'string' && action.includes('*')) findings.add(`AwsSolutions-IAM5[Action::${action}]`);
      }
    }
    for (const id of findings) acknowledgeFinding(child, id, reason);
  }
}

function asArray(value: unknown): unknown[] {
  return value === undefined ? [] : Array.isArray(value) ? value : [value];
}

/** cdk-nag's flattening: Fn::Join joined, Fn::GetAtt as `<Id.Attr>`, Ref as `<Id>`, anything else as JSON. */
function flatten(node: unknown): string {
  if (node === undefined) return '';
  if (typeof node === 'string') return node.replace(/\$\{/g, '<').replace(/\}/g, '>');
  const value = node as Record<string, unknown>;
  if (value['Fn::Join']) {
    const [delimiter, items] = value['Fn::Join'] as [string, unknown[]];
    return items.map(flatten).join(delimiter);
  }
  if (value['Fn::Sub']) return flatten(value['Fn::Sub']);
  if (value['Fn::GetAtt']) {
    const [resource, attribute] = value['Fn::GetAtt'] as [unknown, unknown];
    return `<${flatten(resource)}.${flatten(attribute)}>`;
  }
  if (value['Fn::ImportValue']) return flatten(value['Fn::ImportValue']);
  if (value['Ref']) return `<${flatten(value['Ref'])}>`;
  return JSON.stringify(node);
}
