#!/usr/bin/env python3
"""Mints and verifies edgegate magic-link tokens with PyJWT, an implementation independent of
edgegate's, for filter/core/tests/magic_pyjwt.rs.

stdin: a JSON array of jobs; stdout: a JSON array of results, one per job.

  {"op": "mint", "secret": <b64url>, "claims": {...}, "headers": {...}, "alg": "HS256"}
      -> {"token": "..."}
  {"op": "verify", "secret": <b64url>, "token": "...", "issuer": "...", "audience": "..."}
      -> {"claims": {...}, "header": {...}} or {"error": "<PyJWT exception class>"}

Secrets are unpadded base64url, as in the edgegate config.
"""
import base64
import json
import sys

import jwt  # PyJWT


def key(b64url):
    return base64.urlsafe_b64decode(b64url + "=" * (-len(b64url) % 4))


def run(job):
    if job["op"] == "mint":
        token = jwt.encode(
            job["claims"],
            key(job["secret"]),
            algorithm=job.get("alg", "HS256"),
            headers=job.get("headers") or None,
        )
        return {"token": token}
    if job["op"] == "verify":
        try:
            claims = jwt.decode(
                job["token"],
                key(job["secret"]),
                algorithms=["HS256"],
                audience=job["audience"],
                issuer=job["issuer"],
                options={"require": ["iss", "aud", "exp", "iat", "jti"]},
            )
        except jwt.PyJWTError as e:
            return {"error": type(e).__name__}
        return {"claims": claims, "header": jwt.get_unverified_header(job["token"])}
    raise ValueError("unknown op " + repr(job["op"]))


def main():
    jobs = json.load(sys.stdin)
    json.dump([run(j) for j in jobs], sys.stdout)


if __name__ == "__main__":
    main()
