/**
 * The front's check of a submission's `Arclight-Callback-Url`: an absolute https URL without credentials, naming a
 * host on the internet (not localhost, not a private, loopback or link-local address: the worker must not be turned
 * into a probe of its own network). `arclight dev` allows http and local addresses, as its receivers are local.
 * A host name that resolves to a private address is not caught here (that would need the worker's resolver).
 */
import { BlockList, isIP } from 'node:net';

const PRIVATE = new BlockList();
for (const [network, prefix] of [
  ['0.0.0.0', 8],
  ['10.0.0.0', 8],
  ['100.64.0.0', 10],
  ['127.0.0.0', 8],
  ['169.254.0.0', 16],
  ['172.16.0.0', 12],
  ['192.168.0.0', 16],
] as const) {
  PRIVATE.addSubnet(network, prefix, 'ipv4');
}
for (const [network, prefix] of [
  ['::', 127],
  ['fc00::', 7],
  ['fe80::', 10],
  ['::ffff:0:0', 96],
] as const) {
  PRIVATE.addSubnet(network, prefix, 'ipv6');
}

/** The longest callback URL accepted. */
export const MAX_CALLBACK_URL_LENGTH = 2048;

/** Why `value` cannot be a callback URL; undefined when it can. */
export function callbackUrlProblem(value: string, allowLocal: boolean): string | undefined {
  if (value.length > MAX_CALLBACK_URL_LENGTH) return `it is longer than ${MAX_CALLBACK_URL_LENGTH} characters`;
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return 'it is not an absolute URL';
  }
  if (url.protocol !== 'https:' && !(allowLocal && url.protocol === 'http:')) {
    return allowLocal ? 'it must be an http or https URL' : 'it must be an https URL';
  }
  if (url.username || url.password) return 'it must not carry credentials (put a token in the path or query)';
  if (allowLocal) return undefined;
  const host = url.hostname.replace(/^\[|\]$/g, '');
  if (host === 'localhost' || host.endsWith('.localhost') || host.endsWith('.internal')) {
    return `its host ${host} is not on the internet`;
  }
  const family = isIP(host);
  if (family !== 0 && PRIVATE.check(host, family === 4 ? 'ipv4' : 'ipv6')) {
    return `its host ${host} is a private, loopback or link-local address`;
  }
  return undefined;
}
