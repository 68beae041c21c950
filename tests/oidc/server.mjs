// A real OpenID provider for the sign-in browser tests: panva's oidc-provider (OpenID-certified), on 127.0.0.1.
//
// Environment: PORT, REDIRECT_URI (the Hub's http://127.0.0.1:PORT/oauth2callback), CLIENT_ID, CLIENT_SECRET,
// ACCOUNTS (JSON: login name -> {email, email_verified, name}). The dev login page takes any password;
// the login name picks the account. Code flow, confidential client (client_secret_basic), ID tokens carry
// email, email_verified and name as Entra ID and Google send them.
import Provider from 'oidc-provider';

const port = Number(process.env.PORT);
const accounts = JSON.parse(process.env.ACCOUNTS || '{}');
const issuer = `http://127.0.0.1:${port}`;

const provider = new Provider(issuer, {
  clients: [{
    client_id: process.env.CLIENT_ID,
    client_secret: process.env.CLIENT_SECRET,
    redirect_uris: [process.env.REDIRECT_URI],
    post_logout_redirect_uris: [process.env.REDIRECT_URI],
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name'] },
  conformIdTokenClaims: false, // scope claims in the ID token itself, as Entra ID and Google do
  cookies: { keys: ['test-only-cookie-key-0123456789'] },
  features: { devInteractions: { enabled: true } },
  async findAccount(ctx, id) {
    const account = accounts[id];
    if (!account) return undefined;
    return { accountId: id, async claims() { return { sub: id, ...account }; } };
  },
  // First-party client: no consent screen (the recipe from oidc-provider's documentation).
  async loadExistingGrant(ctx) {
    const grantId = ctx.oidc.result?.consent?.grantId || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
    if (grantId) return ctx.oidc.provider.Grant.find(grantId);
    const grant = new ctx.oidc.provider.Grant({ clientId: ctx.oidc.client.clientId, accountId: ctx.oidc.session.accountId });
    grant.addOIDCScope('openid email profile');
    await grant.save();
    return grant;
  },
});

provider.listen(port, '127.0.0.1', () => {
  console.log(`oidc-provider listening on ${issuer}`);
});
