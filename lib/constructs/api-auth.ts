import type * as apigwv2 from 'aws-cdk-lib/aws-apigatewayv2';
import { HttpIamAuthorizer, HttpJwtAuthorizer } from 'aws-cdk-lib/aws-apigatewayv2-authorizers';

/** Options of JWT authorization. */
export interface JwtAuthOptions {
  /** The token issuer URL (e.g. a Cognito user pool or an OIDC provider). */
  readonly issuer: string;
  /** Accepted audiences (`aud` claim); at least one. */
  readonly audience: readonly string[];
}

/** Who may call a RealtimeApi. */
export abstract class ApiAuth {
  /** Anyone on the internet (throttled). Synth warns. The default. */
  static none(): ApiAuth {
    return new NoAuth();
  }

  /** Callers signing requests with SigV4 and allowed `execute-api:Invoke` (see `RealtimeApi.grantInvoke`). */
  static iam(): ApiAuth {
    return new IamAuth();
  }

  /** Callers presenting a JWT from `issuer` for one of `audience`. */
  static jwt(options: JwtAuthOptions): ApiAuth {
    return new JwtAuth(options);
  }

  abstract readonly kind: 'none' | 'iam' | 'jwt';

  /** The route authorizer, or undefined for open routes. */
  abstract bind(): apigwv2.IHttpRouteAuthorizer | undefined;

  /** Problems with the options. */
  problems(): string[] {
    return [];
  }
}

class NoAuth extends ApiAuth {
  readonly kind = 'none' as const;
  bind(): undefined {
    return undefined;
  }
}

class IamAuth extends ApiAuth {
  readonly kind = 'iam' as const;
  bind(): apigwv2.IHttpRouteAuthorizer {
    return new HttpIamAuthorizer();
  }
}

class JwtAuth extends ApiAuth {
  readonly kind = 'jwt' as const;

  constructor(private readonly options: JwtAuthOptions) {
    super();
  }

  /** A new authorizer per call: one HttpJwtAuthorizer creates its resource in the first API it is bound to. */
  bind(): apigwv2.IHttpRouteAuthorizer {
    return new HttpJwtAuthorizer('JwtAuthorizer', this.options.issuer, { jwtAudience: [...this.options.audience] });
  }

  override problems(): string[] {
    const problems: string[] = [];
    if (!/^https:\/\/\S+$/.test(this.options.issuer))
      problems.push(`jwt issuer '${this.options.issuer}' must be an https:// URL`);
    if (this.options.audience.length === 0) problems.push('jwt audience must name at least one audience');
    return problems;
  }
}
