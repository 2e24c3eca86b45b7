# A gRPC client (python3-grpcio) run inside the box: one unary call to /agentbox.Echo/Echo on
# HOST:443 with `Authorization: Bearer $API_TOKEN` and the body given, trusting the system bundle
# (where the box's session CA is). Prints "status CODE", the reply, and both metadata echoes.
#   python3 grpc_client.py HOST BODY
import os
import sys

import grpc

host, body = sys.argv[1], sys.argv[2]
with open("/etc/ssl/certs/ca-certificates.crt", "rb") as f:
    creds = grpc.ssl_channel_credentials(root_certificates=f.read())
with grpc.secure_channel(f"{host}:443", creds) as channel:
    call = channel.unary_unary("/agentbox.Echo/Echo")
    token = os.environ.get("API_TOKEN", "")
    try:
        reply, info = call.with_call(body.encode(), metadata=(("authorization", "Bearer " + token),),
                                     timeout=20)
        print("status OK")
        print("reply", reply.decode("latin-1"))
        for k, v in info.initial_metadata():
            print("initial", k, v)
        for k, v in info.trailing_metadata():
            print("trailing", k, v)
    except grpc.RpcError as e:
        print("status", e.code().name, e.details())
