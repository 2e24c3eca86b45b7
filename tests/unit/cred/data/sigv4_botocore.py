# Signs requests with botocore (the AWS SDK for Python's signer) for sigv4_test.cpp: each request
# signed once with the box's placeholder key (what the proxy receives) and once with the real key
# (what upstream must see). Output, per request:
#   REQ <name>\nMETHOD TARGET\nH name: value ...\nBODYSHA <hex or ->\nEXPECT <authorization>\nEND
import datetime
import hashlib
import sys
from urllib.parse import urlsplit

import botocore.auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

FIXED = datetime.datetime(2026, 11, 27, 5, 30, 0)


class FixedDatetime(datetime.datetime):
    @classmethod
    def utcnow(cls):
        return FIXED

    @classmethod
    def now(cls, tz=None):
        return FIXED.replace(tzinfo=tz) if tz else FIXED


botocore.auth.datetime.datetime = FixedDatetime

PLACEHOLDER, REAL = sys.argv[1], sys.argv[2]
AKID = "AKIAEXAMPLEKEYID0001"

CASES = [
    # name, signer, service, method, url, headers, body
    ("iam-query", botocore.auth.SigV4Auth, "iam", "GET",
     "https://iam.amazonaws.com/?Version=2010-05-08&Action=ListUsers", {}, b""),
    ("sts-post-form", botocore.auth.SigV4Auth, "sts", "POST", "https://sts.amazonaws.com/",
     {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
     b"Action=GetCallerIdentity&Version=2011-06-15"),
    ("lambda-json-odd-path", botocore.auth.SigV4Auth, "lambda", "POST",
     "https://lambda.us-east-1.amazonaws.com/2015-03-31/functions/my%20fn/invocations",
     {"Content-Type": "application/json", "X-Amz-Security-Token": "token-value-123"},
     b'{"key": "value"}'),
    ("s3-put-odd-key", botocore.auth.S3SigV4Auth, "s3", "PUT",
     "https://bucket.s3.us-east-1.amazonaws.com/dir//a%20b/%E2%9C%93.txt?x-id=PutObject",
     {"Content-Type": "text/plain"}, b"hello world\n"),
    ("s3-list-query", botocore.auth.S3SigV4Auth, "s3", "GET",
     "https://bucket.s3.us-east-1.amazonaws.com/?list-type=2&prefix=a%2Fb&max-keys=10", {}, b""),
]


def sign(signer, service, method, url, headers, body, secret):
    req = AWSRequest(method=method, url=url, headers=dict(headers), data=body)
    signer(Credentials(AKID, secret), service, "us-east-1").add_auth(req)
    return req


for name, signer, service, method, url, headers, body in CASES:
    boxed = sign(signer, service, method, url, headers, body, PLACEHOLDER)
    real = sign(signer, service, method, url, headers, body, REAL)
    parts = urlsplit(boxed.url)
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    print(f"REQ {name}")
    print(f"{method} {target}")
    sent = dict(boxed.headers.items())
    if not any(k.lower() == "host" for k in sent):
        print(f"H Host: {parts.netloc}")
    for k, v in sent.items():
        print(f"H {k}: {v}")
    print("BODYSHA " + hashlib.sha256(body).hexdigest())
    print("EXPECT " + real.headers["Authorization"])
    print("END")
