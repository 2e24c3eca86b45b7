# Endpoints that mint credentials, for the capture tests (imported by upstream.py;
# proxy_capture_test.cpp). DIR/minted.json (written by the test) holds the values they hand out:
#   POST /oauth/token   OAuth refresh (JSON or form body): when the refresh_token sent is
#                       `refresh_old`, answers {"access_token": access_new, "refresh_token":
#                       refresh_new, ...}; else 400 invalid_grant. Records "TOKEN <sent>".
#   POST / on sts.*     STS query API: AssumeRole / GetSessionToken answer the XML of
#                       sts_key_id, sts_secret, sts_token; GetCallerIdentity records
#                       "STS-CALL <Authorization> TOKEN <X-Amz-Security-Token>" and answers XML.
#   POST / on iam.*     IAM CreateAccessKey: records "IAM <Action>" and hands out iam_secret.
import json
import os
import urllib.parse


def load(dir_):
    with open(os.path.join(dir_, "minted.json")) as f:
        return json.load(f)


def note(h, dir_, line):
    with open(os.path.join(dir_, "seen.log"), "a") as f:
        f.write(line + "\n")


def read_body(h):
    n = int(h.headers.get("Content-Length", "0"))
    return h.rfile.read(n).decode(errors="replace") if n else ""


def oauth(h, dir_):
    m = load(dir_)
    body = read_body(h)
    if h.headers.get("Content-Type", "").startswith("application/json"):
        sent = json.loads(body or "{}").get("refresh_token", "")
    else:
        sent = urllib.parse.parse_qs(body).get("refresh_token", [""])[0]
    note(h, dir_, f"TOKEN {sent}")
    if sent != m["refresh_old"]:
        return h.reply(400, b'{"error":"invalid_grant"}', "application/json")
    doc = {"token_type": "Bearer", "access_token": m["access_new"], "expires_in": 3600,
           "refresh_token": m["refresh_new"], "scope": "user:inference"}
    return h.reply(200, json.dumps(doc, indent=1).encode(), "application/json")


def signature_valid(h, body, key_id, secret, token):
    """Whether the request's SigV4 signature verifies under the real minted key (botocore)."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials
    auth = h.headers.get("Authorization", "")
    try:
        signed = auth.split("SignedHeaders=")[1].split(",")[0].split(";")
        sent_sig = auth.split("Signature=")[1].strip()
        scope = auth.split("Credential=")[1].split(",")[0].split("/")
    except IndexError:
        return False
    headers = {k: v for k, v in h.headers.items() if k.lower() in signed}
    req = AWSRequest(method=h.command, url=f"https://{h.headers['Host']}{h.path}", data=body,
                     headers=headers)
    req.context["timestamp"] = h.headers.get("X-Amz-Date", "")
    signer = SigV4Auth(Credentials(key_id, secret, token), scope[3], scope[2])
    canonical = signer.canonical_request(req)
    return signer.signature(signer.string_to_sign(req, canonical), req) == sent_sig


def sts(h, dir_):
    m = load(dir_)
    raw = read_body(h)
    form = urllib.parse.parse_qs(raw)
    action = form.get("Action", [""])[0]
    if action in ("AssumeRole", "GetSessionToken"):
        xml = (f"<{action}Response xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">"
               f"<{action}Result><Credentials>"
               f"<AccessKeyId>{m['sts_key_id']}</AccessKeyId>"
               f"<SecretAccessKey>{m['sts_secret']}</SecretAccessKey>"
               f"<SessionToken>{m['sts_token']}</SessionToken>"
               f"<Expiration>2030-01-01T00:00:00Z</Expiration>"
               f"</Credentials>"
               + ("<AssumedRoleUser><AssumedRoleId>AROAEXAMPLE:s</AssumedRoleId>"
                  "<Arn>arn:aws:sts::123456789012:assumed-role/r/s</Arn></AssumedRoleUser>"
                  if action == "AssumeRole" else "")
               + f"</{action}Result><ResponseMetadata><RequestId>1</RequestId>"
               f"</ResponseMetadata></{action}Response>")
        note(h, dir_, f"STS {action}")
        return h.reply(200, xml.encode(), "text/xml")
    auth = h.headers.get("Authorization", "")
    token = h.headers.get("X-Amz-Security-Token", "")
    note(h, dir_, f"STS-CALL {auth} TOKEN {token}")
    ok = signature_valid(h, raw.encode(), m["sts_key_id"], m["sts_secret"], m["sts_token"])
    note(h, dir_, "SIGNATURE " + ("valid" if ok else "invalid"))
    xml = ("<GetCallerIdentityResponse><GetCallerIdentityResult><Arn>arn:aws:sts::123456789012:"
           "assumed-role/r/s</Arn><UserId>AROAEXAMPLE:s</UserId><Account>123456789012</Account>"
           "</GetCallerIdentityResult><ResponseMetadata><RequestId>2</RequestId>"
           "</ResponseMetadata></GetCallerIdentityResponse>")
    return h.reply(200, xml.encode(), "text/xml")


def iam(h, dir_):
    m = load(dir_)
    form = urllib.parse.parse_qs(read_body(h))
    action = form.get("Action", [""])[0]
    note(h, dir_, f"IAM {action}")
    xml = ("<CreateAccessKeyResponse><CreateAccessKeyResult><AccessKey><UserName>u</UserName>"
           f"<AccessKeyId>AKIAIOSFODNN7NEWKEY1</AccessKeyId><Status>Active</Status>"
           f"<SecretAccessKey>{m['iam_secret']}</SecretAccessKey></AccessKey>"
           "</CreateAccessKeyResult></CreateAccessKeyResponse>")
    return h.reply(200, xml.encode(), "text/xml")


def handle(h, url, dir_):
    """Serves the minting endpoints; returns False for any other request."""
    host = h.headers.get("Host", "").split(":")[0]
    if url.path == "/oauth/token" and h.command == "POST":
        oauth(h, dir_)
        return True
    if host.startswith("sts.") and h.command == "POST":
        sts(h, dir_)
        return True
    if host.startswith("iam.") and h.command == "POST":
        iam(h, dir_)
        return True
    return False
