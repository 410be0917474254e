// Authentication: static bearer tokens (like --token-auth-file) and the service-account tokens
// the double itself issued. Every authenticated user also gets group system:authenticated, as
// the API server's authenticator union adds it. A missing or unknown token is a 401 Status.
import { unauthorized } from './errors.ts';
import type { ObjectStore } from './store.ts';
import type { TokenIssuer } from './tokens.ts';
import { isObject, type UserInfo } from './types.ts';

export interface StaticTokenUser {
  readonly username: string;
  readonly groups?: readonly string[];
  readonly uid?: string;
}

export type Authenticator = (authorization: string | undefined) => Promise<UserInfo>;

export function createAuthenticator(tokens: Readonly<Record<string, StaticTokenUser>>, issuer: TokenIssuer, store: ObjectStore): Authenticator {
  return async (authorization) => {
    const m = /^Bearer\s+(\S+)\s*$/i.exec(authorization ?? '');
    const token = m?.[1];
    if (token === undefined) throw unauthorized();
    const user = Object.hasOwn(tokens, token) ? tokens[token] : undefined;
    if (user !== undefined) {
      const groups = [...(user.groups ?? [])];
      if (!groups.includes('system:authenticated')) groups.push('system:authenticated');
      return { username: user.username, groups, ...(user.uid === undefined ? {} : { uid: user.uid }) };
    }
    // Service-account tokens for the API server's own audience (the issuer URL).
    const claims = await issuer.verify(token, [issuer.issuer]);
    const k = claims?.['kubernetes.io'];
    if (claims === undefined || !isObject(k) || !isObject(k.serviceaccount)) throw unauthorized();
    const namespace = String(k.namespace);
    const name = String(k.serviceaccount.name);
    // A bound token dies with its service account (and pod): the uid must still match.
    const sa = store.get('', 'serviceaccounts', namespace, name);
    if (sa === undefined || sa.metadata.uid !== k.serviceaccount.uid) throw unauthorized();
    const extra: Record<string, string[]> = {};
    if (isObject(k.pod)) {
      const pod = store.get('', 'pods', namespace, String(k.pod.name));
      if (pod === undefined || pod.metadata.uid !== k.pod.uid) throw unauthorized();
      extra['authentication.kubernetes.io/pod-name'] = [String(k.pod.name)];
      extra['authentication.kubernetes.io/pod-uid'] = [String(k.pod.uid)];
    }
    if (typeof claims.jti === 'string') extra['authentication.kubernetes.io/credential-id'] = [`JTI=${claims.jti}`];
    return {
      username: `system:serviceaccount:${namespace}:${name}`,
      uid: String(k.serviceaccount.uid),
      groups: ['system:serviceaccounts', `system:serviceaccounts:${namespace}`, 'system:authenticated'],
      extra,
    };
  };
}
