// Who is calling, as established by authentication and the policy. Tools and
// the audit log see this, never the token itself.
export interface Principal {
  sub: string
  /** Effective scopes: token scopes ∪ the role's scopes, known to the policy. */
  scopes: ReadonlySet<string>
  /** The token's roles the policy knows, after AUTH_ROLE_MAP. */
  roles: readonly string[]
  /** `jti` or a digest prefix; safe to log. */
  tokenId: string
  clientId: string | undefined
}
