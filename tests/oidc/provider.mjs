// A real OpenID Connect provider for the Tidings test suite: panva's certified `oidc-provider`.
//
// Started by tests/e2e/oauth_support.py. It listens on a free loopback port, then prints one JSON
// line {"issuer": "http://127.0.0.1:PORT"} on stdout; everything else goes to stderr.
//
// Configuration comes from the TEST_OIDC_CONFIG environment variable:
//   {"clients": [{"client_id": "...", "client_secret": "...", "redirect_uris": ["..."]}]}
//
// Sign-in uses the package's development interactions: the login form accepts any login and any
// password, and the login becomes the account id (the `sub`). Claims follow from the login:
//   email           <login>@example.com (lower-cased); none when the login starts "noemail_"
//   email_verified  false when the login starts "unverified_", true otherwise
//   name, preferred_username  the login
// Consent is granted automatically (a first-party client), so login is the only form to post.
import { generateKeyPairSync } from 'node:crypto';
import { createServer } from 'node:http';

import Provider from 'oidc-provider';

const config = JSON.parse(process.env.TEST_OIDC_CONFIG || '{"clients": []}');

function claimsFor(accountId) {
  const claims = {
    sub: accountId,
    name: accountId,
    preferred_username: accountId,
  };
  if (!accountId.startsWith('noemail_')) {
    claims.email = `${accountId.toLowerCase()}@example.com`;
    claims.email_verified = !accountId.startsWith('unverified_');
  }
  return claims;
}

async function findAccount(_ctx, accountId) {
  return { accountId, claims: async () => claimsFor(accountId) };
}

// Consent is implied for our first-party clients: grant whatever the request asks for.
async function loadExistingGrant(ctx) {
  const grantId = ctx.oidc.result?.consent?.grantId
    || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
  if (grantId) return ctx.oidc.provider.Grant.find(grantId);
  const grant = new ctx.oidc.provider.Grant({
    accountId: ctx.oidc.session.accountId,
    clientId: ctx.oidc.client.clientId,
  });
  grant.addOIDCScope(ctx.oidc.requestParamScopes ? [...ctx.oidc.requestParamScopes].join(' ') : 'openid');
  grant.addOIDCClaims(['email', 'email_verified', 'name', 'preferred_username']);
  await grant.save();
  return grant;
}

const signingKey = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
const jwk = { ...signingKey.export({ format: 'jwk' }), kid: 'test-rs256', use: 'sig', alg: 'RS256' };

const server = createServer();
server.listen(0, '127.0.0.1', () => {
  const { port } = server.address();
  const issuer = `http://127.0.0.1:${port}`;
  const provider = new Provider(issuer, {
    clients: config.clients.map((client) => ({
      client_id: client.client_id,
      client_secret: client.client_secret,
      redirect_uris: client.redirect_uris,
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
    })),
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['name', 'preferred_username'],
    },
    scopes: ['openid', 'email', 'profile'],
    findAccount,
    loadExistingGrant,
    pkce: { required: () => true },
    features: { devInteractions: { enabled: true } },
    cookies: { keys: ['tidings-test-cookie-key-not-secret'] },
    jwks: { keys: [jwk] },
    ttl: { AuthorizationCode: 60, IdToken: 300, AccessToken: 300, Interaction: 600, Session: 600, Grant: 600 },
  });
  server.on('request', provider.callback());
  process.stdout.write(`${JSON.stringify({ issuer })}\n`);
});

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => server.close(() => process.exit(0)));
}
