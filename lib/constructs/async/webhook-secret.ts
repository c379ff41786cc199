/**
 * Where an async API's webhook signing key lives: a Secrets Manager secret (the default generates one) or an SSM
 * SecureString parameter. `bind` grants the worker read access to exactly that secret or parameter and answers the
 * reference the runtime reads it by (`secretsmanager:<arn>` or `ssm:<name>`); the key itself never enters a template
 * or an environment variable.
 */
import { Stack, Validations } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as kms from 'aws-cdk-lib/aws-kms';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import type { Construct } from 'constructs';

/** A bound webhook secret. */
export interface WebhookSecretConfig {
  /** What the runtime reads the key by: `secretsmanager:<arn>` or `ssm:<name>`. */
  readonly reference: string;
  /** The Secrets Manager secret, when the key is one (receivers read the same key from it). */
  readonly secret?: secretsmanager.ISecret;
}

export abstract class WebhookSecret {
  /** A new Secrets Manager secret of 64 random characters. */
  static generated(): WebhookSecret {
    return new GeneratedWebhookSecret();
  }

  /** An existing Secrets Manager secret; its SecretString is the key. */
  static fromSecret(secret: secretsmanager.ISecret): WebhookSecret {
    return new SecretsManagerWebhookSecret(secret);
  }

  /**
   * An SSM SecureString parameter, by name (CloudFormation cannot create SecureStrings). `encryptionKey`: the customer
   * managed key it is encrypted with, if not SSM's AWS managed key (which needs no grant).
   */
  static fromSecureStringParameter(parameterName: string, encryptionKey?: kms.IKey): WebhookSecret {
    return new SsmWebhookSecret(parameterName, encryptionKey);
  }

  /** Grants `role` read access to the key and says where it is. */
  abstract bind(scope: Construct, role: iam.IRole): WebhookSecretConfig;
}

class SecretsManagerWebhookSecret extends WebhookSecret {
  constructor(private readonly secret: secretsmanager.ISecret) {
    super();
  }

  bind(_scope: Construct, role: iam.IRole): WebhookSecretConfig {
    role.addToPrincipalPolicy(
      new iam.PolicyStatement({ actions: ['secretsmanager:GetSecretValue'], resources: [this.secret.secretArn] }),
    );
    if (this.secret.encryptionKey) {
      role.addToPrincipalPolicy(
        new iam.PolicyStatement({ actions: ['kms:Decrypt'], resources: [this.secret.encryptionKey.keyArn] }),
      );
    }
    return { reference: `secretsmanager:${this.secret.secretArn}`, secret: this.secret };
  }
}

class GeneratedWebhookSecret extends WebhookSecret {
  bind(scope: Construct, role: iam.IRole): WebhookSecretConfig {
    const secret = new secretsmanager.Secret(scope, 'WebhookSecret', {
      description: 'Signs the async API completion webhooks (HMAC-SHA256); receivers verify with the same key',
      generateSecretString: { passwordLength: 64, excludePunctuation: true },
    });
    Validations.of(secret).acknowledge({
      id: 'AwsSolutions-SMG4',
      reason:
        'A webhook signing key is shared with the receivers, who must change it in step: it is rotated by hand (put a new value; the worker reads it on its next cold start), not by a rotation Lambda.',
    });
    return new SecretsManagerWebhookSecret(secret).bind(scope, role);
  }
}

class SsmWebhookSecret extends WebhookSecret {
  constructor(
    private readonly parameterName: string,
    private readonly encryptionKey?: kms.IKey,
  ) {
    super();
  }

  bind(scope: Construct, role: iam.IRole): WebhookSecretConfig {
    const name = this.parameterName.startsWith('/') ? this.parameterName.slice(1) : this.parameterName;
    role.addToPrincipalPolicy(
      new iam.PolicyStatement({
        actions: ['ssm:GetParameter'],
        resources: [Stack.of(scope).formatArn({ service: 'ssm', resource: 'parameter', resourceName: name })],
      }),
    );
    if (this.encryptionKey) {
      role.addToPrincipalPolicy(
        new iam.PolicyStatement({ actions: ['kms:Decrypt'], resources: [this.encryptionKey.keyArn] }),
      );
    }
    return { reference: `ssm:${this.parameterName}` };
  }
}
