"""OpenID Connect providers (Google and any issuer with a discovery document).

Discovery and the JWKS are fetched lazily and cached; an ID token signed with a key we have not
seen makes us refetch the JWKS once (providers rotate keys), never more than every few seconds.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import quote

import httpx2
from authlib.oauth2.rfc6749.parameters import prepare_grant_uri  # type: ignore[import-untyped]
from authlib.oauth2.rfc7636 import create_s256_code_challenge  # type: ignore[import-untyped]
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from tidings.auth.providers.base import (
    AuthorizationParams,
    JsonHttp,
    ProviderKind,
    ProviderProfile,
    ProviderRejected,
    as_bool,
)
from tidings.auth.providers.idtoken import InvalidIdToken, allowed_algorithms, validate_id_token

METADATA_TTL_SECONDS = 3600.0
JWKS_TTL_SECONDS = 3600.0
JWKS_MIN_REFRESH_SECONDS = 10.0
GOOGLE_ISSUER = "https://accounts.google.com"


class OIDCProvider:
    uses_nonce = True

    def __init__(
        self,
        name: str,
        *,
        display_name: str,
        client_id: str,
        client_secret: str,
        issuer: str,
        scopes: list[str],
        link_by_email: bool = True,
        trusted_audiences: tuple[str, ...] = (),
        kind: ProviderKind = "oidc",
    ) -> None:
        self.name = name
        self.kind: ProviderKind = kind
        self.display_name = display_name
        self.client_id = client_id
        self._client_secret = client_secret
        self.issuer = issuer
        self.scopes = scopes
        self.link_by_email = link_by_email
        self.trusted_audiences = trusted_audiences
        self._http = JsonHttp(display_name)
        self._metadata: dict[str, Any] | None = None
        self._metadata_at = 0.0
        self._jwks: KeySet | None = None
        self._jwks_at = 0.0

    @property
    def accepted_issuers(self) -> list[str]:
        # Google documents that its ID tokens may carry the issuer without the scheme.
        if self.kind == "google" and self.issuer == GOOGLE_ISSUER:
            return [GOOGLE_ISSUER, "accounts.google.com"]
        return [self.issuer]

    async def metadata(self, http: httpx2.AsyncClient) -> dict[str, Any]:
        if (
            self._metadata is not None
            and time.monotonic() - self._metadata_at < METADATA_TTL_SECONDS
        ):
            return self._metadata
        url = self.issuer.rstrip("/") + "/.well-known/openid-configuration"
        document = await self._http.get_json(http, url)
        if not isinstance(document, dict) or document.get("issuer") != self.issuer:
            raise self._http.unavailable("published a discovery document for another issuer")
        for field in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
            if not isinstance(document.get(field), str):
                raise self._http.unavailable(f"published a discovery document without {field}")
        self._metadata, self._metadata_at = document, time.monotonic()
        return document

    async def _keys(self, http: httpx2.AsyncClient, *, refresh: bool = False) -> KeySet:
        fresh = time.monotonic() - self._jwks_at < JWKS_TTL_SECONDS
        if self._jwks is not None and fresh and not refresh:
            return self._jwks
        if self._jwks is not None and time.monotonic() - self._jwks_at < JWKS_MIN_REFRESH_SECONDS:
            return self._jwks
        document = await self._http.get_json(http, (await self.metadata(http))["jwks_uri"])
        keys = document.get("keys") if isinstance(document, dict) else None
        if not isinstance(keys, list):
            raise self._http.unavailable("published a JWKS without keys")
        usable = [k for k in keys if isinstance(k, dict) and k.get("use", "sig") == "sig"]
        try:
            self._jwks = KeySet.import_key_set({"keys": usable})
        except (JoseError, ValueError, TypeError, KeyError) as exc:
            raise self._http.unavailable("published a JWKS we cannot read") from exc
        self._jwks_at = time.monotonic()
        return self._jwks

    async def authorization_url(self, http: httpx2.AsyncClient, params: AuthorizationParams) -> str:
        endpoint = (await self.metadata(http))["authorization_endpoint"]
        extra = {} if params.max_age is None else {"max_age": str(params.max_age)}
        url: str = prepare_grant_uri(
            endpoint,
            client_id=self.client_id,
            response_type="code",
            redirect_uri=params.redirect_uri,
            scope=self.scopes,
            state=params.state,
            nonce=params.nonce,
            code_challenge=create_s256_code_challenge(params.code_verifier),
            code_challenge_method="S256",
            **extra,
        )
        return url

    async def complete(
        self, http: httpx2.AsyncClient, params: AuthorizationParams, code: str, issuer: str | None
    ) -> ProviderProfile:
        metadata = await self.metadata(http)
        self._check_response_issuer(metadata, issuer)
        tokens = await self._exchange(http, metadata, params, code)
        id_token = tokens.get("id_token")
        if not isinstance(id_token, str):
            raise ProviderRejected(f"{self.display_name} returned no ID token.")
        access_token = tokens.get("access_token")
        access_token = access_token if isinstance(access_token, str) else None
        claims = await self._verify(http, metadata, id_token, params, access_token)
        if "email" not in claims and access_token and metadata.get("userinfo_endpoint"):
            claims = {**await self._userinfo(http, metadata, access_token, claims["sub"]), **claims}
        refresh = tokens.get("refresh_token")
        email = claims.get("email")
        auth_time = claims.get("auth_time")
        return ProviderProfile(
            subject=str(claims["sub"]),
            email=email if isinstance(email, str) and email else None,
            email_verified=as_bool(claims.get("email_verified")),
            username_hints=tuple(
                str(claims[k]) for k in ("preferred_username", "nickname", "name") if claims.get(k)
            ),
            display_name=str(claims["name"]) if claims.get("name") else None,
            access_token=access_token,
            refresh_token=refresh if isinstance(refresh, str) else None,
            # as sent (an integer too large for a float is refused by check_fresh, not here)
            auth_time=auth_time
            if isinstance(auth_time, int | float) and not isinstance(auth_time, bool)
            else None,
        )

    def _check_response_issuer(self, metadata: dict[str, Any], issuer: str | None) -> None:
        """RFC 9207: the ``iss`` authorization-response parameter defends against mix-ups."""
        if issuer is not None and issuer != self.issuer:
            raise ProviderRejected("The authorization response came from another issuer (iss).")
        if issuer is None and metadata.get("authorization_response_iss_parameter_supported"):
            raise ProviderRejected("The authorization response lacks the iss parameter.")

    async def _exchange(
        self,
        http: httpx2.AsyncClient,
        metadata: dict[str, Any],
        params: AuthorizationParams,
        code: str,
    ) -> dict[str, Any]:
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": params.redirect_uri,
            "code_verifier": params.code_verifier,
        }
        methods = metadata.get("token_endpoint_auth_methods_supported") or ["client_secret_basic"]
        auth: tuple[str, str] | None = None
        if "client_secret_basic" in methods:
            # RFC 6749 2.3.1: form-encode the id and secret before Basic-encoding them.
            auth = (quote(self.client_id, safe=""), quote(self._client_secret, safe=""))
        else:
            form |= {"client_id": self.client_id, "client_secret": self._client_secret}
        response = await self._http.request(
            http,
            "POST",
            metadata["token_endpoint"],
            data=form,
            auth=auth,
            headers={"Accept": "application/json"},
        )
        body = self._http.json(response)
        if response.status_code == 400 or (isinstance(body, dict) and "error" in body):
            error = (
                body.get("error", "invalid_grant") if isinstance(body, dict) else "invalid_grant"
            )
            raise ProviderRejected(f"{self.display_name} refused the authorization code ({error}).")
        if response.status_code != 200 or not isinstance(body, dict):
            raise self._http.unavailable(f"answered {response.status_code} at its token endpoint")
        return body

    async def _verify(
        self,
        http: httpx2.AsyncClient,
        metadata: dict[str, Any],
        id_token: str,
        params: AuthorizationParams,
        access_token: str | None,
    ) -> dict[str, Any]:
        assert params.nonce is not None
        algorithms = allowed_algorithms(metadata.get("id_token_signing_alg_values_supported"))
        refresh = False
        for _attempt in range(2):
            try:
                return validate_id_token(
                    id_token,
                    await self._keys(http, refresh=refresh),
                    issuers=self.accepted_issuers,
                    client_id=self.client_id,
                    nonce=params.nonce,
                    algorithms=algorithms,
                    trusted_audiences=self.trusted_audiences,
                    access_token=access_token,
                )
            except InvalidIdToken as exc:
                if not exc.unknown_key or refresh:
                    raise ProviderRejected(f"The ID token is invalid ({exc.reason}).") from exc
                refresh = True
        raise AssertionError("unreachable")

    async def _userinfo(
        self, http: httpx2.AsyncClient, metadata: dict[str, Any], access_token: str, subject: str
    ) -> dict[str, Any]:
        """OIDC Core 5.3.2: userinfo claims count only when its ``sub`` is the ID token's."""
        info = await self._http.get_json(
            http,
            metadata["userinfo_endpoint"],
            headers={"Authorization": f"Bearer {access_token}", "Accept": "application/json"},
        )
        if not isinstance(info, dict) or info.get("sub") != subject:
            raise ProviderRejected(f"{self.display_name} answered userinfo for another subject.")
        return {
            k: info[k]
            for k in ("email", "email_verified", "name", "preferred_username")
            if k in info
        }
