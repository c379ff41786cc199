/**
 * AsyncApi's completion notifications by the synthesized template (SNS and Secrets Manager cannot run here): the
 * topic encrypted with its own rotating key and TLS-only (AWS's aws:SecureTransport deny), the worker's exact grants
 * (publish to that topic, use that key, read that secret or parameter), the front told that webhooks are on, every
 * invalid prop in one error, and cdk-nag's AwsSolutions pack clean.
 */
import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import { Duration, Stack, Validations, type App } from 'aws-cdk-lib';
import type { Template as TemplateType } from 'aws-cdk-lib/assertions';
import { Template } from 'aws-cdk-lib/assertions';
import { AwsSolutionsChecks } from 'cdk-nag';
import { ASYNC_ENV } from '../../../lib/contract.js';
import { AsyncApi, Compute, ModelSource, Predictor, WebhookSecret } from '../../../lib/index.js';
import {
  assertNoNagViolations,
  policyStatements,
  tempApp,
  thrownProblems,
  useScratchTmpdir,
} from '../../cdk-helpers.js';
import { DIGITS_ONNX, DIGITS_PREDICTOR } from '../../helpers.js';

useScratchTmpdir();

let app: App;
let template: Template;
let ssmTemplate: TemplateType;

function build(id: string, notifications: ConstructorParameters<typeof AsyncApi>[2]['notifications']): Stack {
  const stack = new Stack(app, id);
  new AsyncApi(stack, 'digits-async', {
    predictor: Predictor.fromEntry(DIGITS_PREDICTOR),
    model: ModelSource.fromAsset(DIGITS_ONNX),
    compute: Compute.lambda({ memorySize: 1769 }),
    notifications,
  });
  return stack;
}

before(() => {
  app = tempApp();
  Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
  const stack = build('NotifyTest', { topic: true, webhooks: true, webhookAttempts: 4 });
  const ssmStack = build('NotifySsmTest', {
    webhooks: true,
    webhookSecret: WebhookSecret.fromSecureStringParameter('/arclight/hooks/key'),
  });
  app.synth();
  template = Template.fromStack(stack);
  ssmTemplate = Template.fromStack(ssmStack);
});

function functionEnv(t: TemplateType, description: RegExp): Record<string, unknown> {
  const found = Object.values(t.findResources('AWS::Lambda::Function'))
    .map(
      (r) =>
        (r as { Properties: { Description?: string; Environment?: { Variables: Record<string, unknown> } } })
          .Properties,
    )
    .filter((p) => description.test(String(p.Description)));
  assert.equal(found.length, 1);
  return found[0]!.Environment?.Variables ?? {};
}

function workerGrants(t: TemplateType): string[] {
  return policyStatements(t)
    .filter((s) => s.effect === 'Allow' && /^digitsasyncWorkerRole/.test(s.holder))
    .flatMap((s) => s.actions.map((a) => `${a} ${s.resources.join(' ')}`))
    .filter((line) => /^(sns|kms|secretsmanager|ssm):/.test(line))
    .map((line) => line.replace(/([A-Za-z]+)[0-9A-F]{8}\b/g, '$1'))
    .sort();
}

describe('AsyncApi notifications', () => {
  test('the topic: encrypted with its own rotating KMS key, TLS-only', () => {
    const topics = template.findResources('AWS::SNS::Topic');
    assert.equal(Object.keys(topics).length, 1);
    const [topicId, topic] = Object.entries(topics)[0]!;
    const keyRef = (topic as { Properties: { KmsMasterKeyId: unknown } }).Properties.KmsMasterKeyId;
    assert.match(JSON.stringify(keyRef), /NotificationsTopicKey/);
    template.hasResourceProperties('AWS::KMS::Key', { EnableKeyRotation: true });
    const policies = Object.values(template.findResources('AWS::SNS::TopicPolicy')).map(
      (r) =>
        (r as { Properties: { PolicyDocument: { Statement: Record<string, unknown>[] }; Topics: unknown } }).Properties,
    );
    assert.equal(policies.length, 1);
    assert.match(JSON.stringify(policies[0]!.Topics), new RegExp(topicId));
    const statements = policies[0]!.PolicyDocument.Statement;
    assert.equal(statements.length, 1);
    assert.equal(statements[0]!['Effect'], 'Deny');
    assert.equal(statements[0]!['Action'], 'sns:Publish');
    assert.deepEqual(statements[0]!['Condition'], { Bool: { 'aws:SecureTransport': 'false' } });
  });

  test('the worker may publish to that topic, use that key and read that secret: exactly', () => {
    assert.deepEqual(workerGrants(template), [
      'kms:Decrypt {GetAtt:digitsasyncNotificationsTopicKey.Arn}',
      'kms:GenerateDataKey {GetAtt:digitsasyncNotificationsTopicKey.Arn}',
      'secretsmanager:GetSecretValue {Ref:digitsasyncNotificationsWebhookSecret}',
      'sns:Publish {Ref:digitsasyncNotificationsTopic}',
    ]);
    template.hasResourceProperties('AWS::SecretsManager::Secret', {
      GenerateSecretString: { PasswordLength: 64, ExcludePunctuation: true },
    });
    // The front reads no secret and publishes nothing.
    const front = policyStatements(template).filter((s) => /^digitsasyncFrontRole/.test(s.holder));
    assert.ok(front.every((s) => s.actions.every((a) => !/^(sns|kms|secretsmanager|ssm):/.test(a))));
  });

  test('the environments: the worker knows the topic, the secret and the delivery limits; the front only that webhooks are on', () => {
    const worker = functionEnv(template, /the worker$/);
    assert.match(JSON.stringify(worker[ASYNC_ENV.topicArn]), /NotificationsTopic/);
    assert.equal(worker[ASYNC_ENV.webhooks], 'on');
    assert.equal(worker[ASYNC_ENV.webhookAttempts], '4');
    assert.equal(worker[ASYNC_ENV.webhookTimeoutMs], '5000');
    assert.match(JSON.stringify(worker[ASYNC_ENV.webhookSecret]), /secretsmanager:.*NotificationsWebhookSecret/);
    const front = functionEnv(template, /submit, upload, status$/);
    assert.equal(front[ASYNC_ENV.webhooks], 'on');
    assert.equal(front[ASYNC_ENV.topicArn], undefined);
  });

  test('an SSM SecureString key: ssm:GetParameter on that parameter only, no topic', () => {
    assert.deepEqual(workerGrants(ssmTemplate), [
      'ssm:GetParameter arn:{Ref:AWS::Partition}:ssm:{Ref:AWS::Region}:{Ref:AWS::AccountId}:parameter/arclight/hooks/key',
    ]);
    assert.equal(Object.keys(ssmTemplate.findResources('AWS::SNS::Topic')).length, 0);
    assert.equal(functionEnv(ssmTemplate, /the worker$/)[ASYNC_ENV.webhookSecret], 'ssm:/arclight/hooks/key');
  });

  test('passes cdk-nag AwsSolutions with no violation', () => {
    assertNoNagViolations(app.outdir);
  });

  test('every invalid notification prop in one error; SageMaker refuses them', () => {
    const problems = thrownProblems(() => {
      const stack = new Stack(tempApp(), 'Bad');
      new AsyncApi(stack, 'bad', {
        model: ModelSource.fromAsset(DIGITS_ONNX),
        compute: Compute.sageMaker({ instanceType: 'ml.m5.large' }),
        notifications: { topic: true, webhookTimeout: Duration.seconds(60), webhookAttempts: 9 },
      });
    });
    assert.equal(problems.length, 4, problems.join('\n'));
    assert.ok(problems.some((p) => /webhookTimeout 60 s is outside 1–30 s/.test(p)));
    assert.ok(problems.some((p) => /webhookAttempts must be an integer from 1 to 5, got 9/.test(p)));
    assert.ok(problems.some((p) => /set but webhooks is not true/.test(p)));
    assert.ok(problems.some((p) => /successTopic and endpoint.errorTopic/.test(p)));
  });
});
