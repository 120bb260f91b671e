"""GitHub: OAuth 2.0 (with PKCE) plus its ``/user`` and ``/user/emails`` API.

The subject is GitHub's numeric user id (logins can be renamed and reused); the email is the
primary address only when ``/user/emails`` marks it ``verified`` (else any verified one).
"""

from __future__ import annotations

from typing import Any

import httpx2
from authlib.oauth2.rfc6749.parameters import prepare_grant_uri  # type: ignore[import-untyped]
from authlib.oauth2.rfc7636 import create_s256_code_challenge  # type: ignore[import-untyped]

from tidings.auth.providers.base import (
    AuthorizationParams,
    JsonHttp,
    ProviderKind,
    ProviderProfile,
    ProviderRejected,
)

API_HEADERS = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"}


class GitHubProvider:
    kind: ProviderKind = "github"
    uses_nonce = False

    def __init__(
        self,
        name: str,
        *,
        display_name: str,
        client_id: str,
        client_secret: str,
        scopes: list[str],
        web_base: str,
        api_base: str,
        link_by_email: bool = True,
    ) -> None:
        self.name = name
        self.display_name = display_name
        self.client_id = client_id
        self._client_secret = client_secret
        self.scopes = scopes
        self.web_base = web_base.rstrip("/")
        self.api_base = api_base.rstrip("/")
        self.link_by_email = link_by_email
        self._http = JsonHttp(display_name)

    async def authorization_url(self, http: httpx2.AsyncClient, params: AuthorizationParams) -> str:
        url: str = prepare_grant_uri(
            f"{self.web_base}/login/oauth/authorize",
            client_id=self.client_id,
            response_type="code",
            redirect_uri=params.redirect_uri,
            scope=self.scopes,
            state=params.state,
            code_challenge=create_s256_code_challenge(params.code_verifier),
            code_challenge_method="S256",
            allow_signup="true",
        )
        return url

    async def complete(
        self, http: httpx2.AsyncClient, params: AuthorizationParams, code: str, issuer: str | None
    ) -> ProviderProfile:
        tokens = await self._exchange(http, params, code)
        access_token = tokens["access_token"]
        auth = {**API_HEADERS, "Authorization": f"Bearer {access_token}"}
        user = await self._http.get_json(http, f"{self.api_base}/user", headers=auth)
        if not isinstance(user, dict) or not isinstance(user.get("id"), int):
            raise self._http.unavailable("answered /user without a numeric id")
        emails = await self._http.get_json(http, f"{self.api_base}/user/emails", headers=auth)
        email, verified = pick_email(emails if isinstance(emails, list) else [])
        refresh = tokens.get("refresh_token")
        return ProviderProfile(
            subject=str(user["id"]),
            email=email,
            email_verified=verified,
            username_hints=tuple(str(user[k]) for k in ("login", "name") if user.get(k)),
            display_name=str(user.get("name") or user.get("login") or "") or None,
            access_token=access_token,
            refresh_token=refresh if isinstance(refresh, str) else None,
        )

    async def _exchange(
        self, http: httpx2.AsyncClient, params: AuthorizationParams, code: str
    ) -> dict[str, Any]:
        response = await self._http.request(
            http,
            "POST",
            f"{self.web_base}/login/oauth/access_token",
            data={
                "client_id": self.client_id,
                "client_secret": self._client_secret,
                "code": code,
                "redirect_uri": params.redirect_uri,
                "code_verifier": params.code_verifier,
            },
            headers={"Accept": "application/json"},
        )
        body = self._http.json(response)
        # GitHub answers 200 with {"error": ...} for a bad code.
        if isinstance(body, dict) and "error" in body:
            raise ProviderRejected(f"GitHub refused the authorization code ({body['error']}).")
        if response.status_code != 200 or not isinstance(body, dict):
            raise self._http.unavailable(f"answered {response.status_code} at its token endpoint")
        if not isinstance(body.get("access_token"), str):
            raise self._http.unavailable("answered without an access token")
        return body


def pick_email(emails: list[Any]) -> tuple[str | None, bool]:
    """The primary address if verified, else the first verified one, else the (unverified)
    primary with ``verified=False``."""
    entries = [e for e in emails if isinstance(e, dict) and isinstance(e.get("email"), str)]
    primary = next((e for e in entries if e.get("primary") is True), None)
    if primary is not None and primary.get("verified") is True:
        return primary["email"], True
    verified = next((e for e in entries if e.get("verified") is True), None)
    if verified is not None:
        return verified["email"], True
    return (primary["email"] if primary else None), False
