/**
 * What every AWS call of the CLI shares: region and profile from the flags (else the SDK's own chain: AWS_REGION,
 * AWS_PROFILE, the config file), endpoints from the SDK's AWS_ENDPOINT_URL variables, and errors told in one line.
 */
import { fromNodeProviderChain } from '@aws-sdk/credential-providers';
import { StartupError } from '../../runtime/startup-error.js';

export interface AwsOptions {
  /** @default the SDK's: AWS_REGION, then the profile's region */
  readonly region?: string;
  /** A profile of the shared config files. @default AWS_PROFILE, then `default` */
  readonly profile?: string;
}

/** The config every SDK client of the CLI is made with. */
export function clientConfig(options: AwsOptions): {
  region?: string;
  credentials?: ReturnType<typeof fromNodeProviderChain>;
  maxAttempts: number;
} {
  return {
    ...(options.region === undefined ? {} : { region: options.region }),
    ...(options.profile === undefined ? {} : { credentials: fromNodeProviderChain({ profile: options.profile }) }),
    // The SDK's standard retry mode: throttling and transient errors retried with jittered backoff.
    maxAttempts: 4,
  };
}

/** An AWS call that failed, in one line: the operation, the error's name and message, and what to do. */
export class AwsCallError extends StartupError {}

const HINTS: Readonly<Record<string, string>> = {
  CredentialsProviderError: 'Set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or run `aws sso login`',
  ExpiredToken: 'Refresh your credentials (`aws sso login`)',
  ExpiredTokenException: 'Refresh your credentials (`aws sso login`)',
  AccessDenied: 'Your identity lacks the permission named; ask for it or use another --profile',
  AccessDeniedException: 'Your identity lacks the permission named; ask for it or use another --profile',
  Throttling: 'AWS throttled the calls even after retries; wait a little and run it again',
  ThrottlingException: 'AWS throttled the calls even after retries; wait a little and run it again',
};

export function awsFailure(error: unknown, operation: string): StartupError {
  if (error instanceof StartupError) return error;
  const name = (error as Error)?.name ?? 'Error';
  const message = ((error as Error)?.message ?? String(error)).split('\n')[0]!.trim();
  if (/Region is missing/i.test(message)) {
    return new AwsCallError(`${operation}: no AWS region`, 'Pass --region, or set AWS_REGION or a profile region', {
      cause: error,
    });
  }
  const hint = HINTS[name] ?? (/credential/i.test(message) ? HINTS['CredentialsProviderError'] : undefined);
  return new AwsCallError(`${operation} failed: ${name}: ${message}`, hint, { cause: error });
}
