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
  /**
   * The token's claims that declared tools bind to parameters and row-scope
   * rules filter by (claim path → value); only single strings and numbers.
   */
  claims: ReadonlyMap<string, string | number>
}

/** A claim the call is bound to: `sub` is always the principal's subject; any other from `claims`. */
export function claimValue(principal: Pick<Principal, 'sub' | 'claims'>, path: string): string | number | undefined {
  return path === 'sub' ? principal.sub : principal.claims.get(path)
}
