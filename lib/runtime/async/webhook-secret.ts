/**
 * The webhook signing key, read where the construct said it is (`ARCLIGHT_ASYNC_WEBHOOK_SECRET`):
 * `secretsmanager:<arn>` (its SecretString) or `ssm:<name>` (a SecureString, decrypted). The key never sits in the
 * function's environment; `arclight dev` passes its own key directly.
 */
import { GetSecretValueCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { GetParameterCommand, SSMClient } from '@aws-sdk/client-ssm';

/** Reads the key `reference` names. */
export async function readWebhookSecret(reference: string): Promise<string> {
  const at = reference.indexOf(':');
  const kind = reference.slice(0, at);
  const name = reference.slice(at + 1);
  let value: string | undefined;
  if (kind === 'secretsmanager') {
    const client = new SecretsManagerClient({});
    try {
      value = (await client.send(new GetSecretValueCommand({ SecretId: name }))).SecretString;
    } finally {
      client.destroy();
    }
  } else if (kind === 'ssm') {
    const client = new SSMClient({});
    try {
      value = (await client.send(new GetParameterCommand({ Name: name, WithDecryption: true }))).Parameter?.Value;
    } finally {
      client.destroy();
    }
  } else {
    throw new Error(`the webhook secret reference must be secretsmanager:<arn> or ssm:<name>, got '${kind}:…'`);
  }
  if (!value) throw new Error(`the webhook secret ${reference} is empty`);
  return value;
}
