#!/usr/bin/env python3
"""botocore as the reference for credagent's AWS tokens.

Reads a JSON list of cases on stdin and prints a JSON list of tokens, one per case, made by
botocore with the signing clock frozen at the case's time:

  {"kind": "rds", "host": H, "port": P, "user": U, ...common}
  {"kind": "elasticache" | "memorydb", "cache_name": N, "user": U, "serverless": bool, ...common}
  common: "region", "access_key_id", "secret_access_key", "session_token" (optional),
          "time" (seconds since 1970, UTC)

  {"kind": "sts-request", "action": A, "parameters": {...}, "endpoint": URL, ...common}: the
  request botocore's SigV4Auth signs in its headers, as {"method", "path", "query", "headers", "body"}

RDS uses botocore's own generate_db_auth_token. botocore has no ElastiCache/MemoryDB helper: the
token is a presigned `connect` request, built like AWS's documented Python sample (ElastiCache
user guide, "Authenticating with IAM").
"""
import datetime
import json
import sys
from unittest import mock
from urllib.parse import ParseResult, urlencode, urlsplit, urlunparse

import botocore.auth
import botocore.session
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.model import ServiceId
from botocore.signers import RequestSigner


def frozen(seconds):
    moment = datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).replace(tzinfo=None)
    return mock.patch.object(botocore.auth, "get_current_datetime", lambda *args, **kwargs: moment)


def rds_token(session, case):
    client = session.create_client(
        "rds", region_name=case["region"],
        aws_access_key_id=case["access_key_id"], aws_secret_access_key=case["secret_access_key"],
        aws_session_token=case.get("session_token"))
    with frozen(case["time"]):
        return client.generate_db_auth_token(case["host"], case["port"], case["user"], Region=case["region"])


def cache_token(session, case):
    service = case["kind"]
    credentials = Credentials(case["access_key_id"], case["secret_access_key"], case.get("session_token"))
    signer = RequestSigner(ServiceId(service), case["region"], service, "v4", credentials,
                           session.get_component("event_emitter"))
    query = {"Action": "connect", "User": case["user"]}
    if case.get("serverless"):
        query["ResourceType"] = "ServerlessCache"
    url = urlunparse(ParseResult(scheme="https", netloc=case["cache_name"], path="/",
                                 query=urlencode(query), params="", fragment=""))
    with frozen(case["time"]):
        signed = signer.generate_presigned_url(
            {"method": "GET", "url": url, "body": {}, "url_path": "/", "context": {}, "headers": {}},
            operation_name="connect", expires_in=900, region_name=case["region"])
    return signed[len("https://"):]


def signed_sts_request(case):
    credentials = Credentials(case["access_key_id"], case["secret_access_key"], case.get("session_token"))
    body = urlencode({"Action": case["action"], "Version": "2011-06-15", **case.get("parameters", {})})
    request = AWSRequest(method="POST", url=case["endpoint"], data=body,
                         headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"})
    with frozen(case["time"]):
        botocore.auth.SigV4Auth(credentials, "sts", case["region"]).add_auth(request)
    parts = urlsplit(request.url)
    # As sent: the HTTP layer adds the Host header that SigV4Auth signed from the URL.
    headers = [[name, value] for name, value in request.headers.items()] + [["Host", parts.netloc]]
    return {"method": request.method, "path": parts.path or "/", "query": parts.query, "headers": headers, "body": body}


def main():
    session = botocore.session.get_session()
    out = []
    for case in json.load(sys.stdin):
        if case["kind"] == "sts-request":
            out.append(signed_sts_request(case))
        else:
            out.append(rds_token(session, case) if case["kind"] == "rds" else cache_token(session, case))
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
