# A gRPC server over TLS (python3-grpcio, no generated code) for the h2 interception tests.
#   python3 grpc_upstream.py DIR PORT   (DIR/srv.pem, DIR/srv.key; writes DIR/ready, logs DIR/seen.log)
# /agentbox.Echo/Echo answers b"you sent: AUTH body: REQUEST", with AUTH also in the initial
# metadata (x-echo) and the trailing metadata (x-echo-trailer); every call is logged as
# "grpc METHOD AUTH REQUEST".
import sys
from concurrent import futures

import grpc

directory, port = sys.argv[1], int(sys.argv[2])


def echo(request, context):
    auth = dict(context.invocation_metadata()).get("authorization", "-")
    with open(f"{directory}/seen.log", "a") as f:
        f.write(f"grpc /agentbox.Echo/Echo {auth} {request.decode('latin-1')}\n")
    context.send_initial_metadata((("x-echo", auth),))
    context.set_trailing_metadata((("x-echo-trailer", auth),))
    return b"you sent: " + auth.encode() + b" body: " + request


handler = grpc.method_handlers_generic_handler(
    "agentbox.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(echo)})
server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
server.add_generic_rpc_handlers((handler,))
with open(f"{directory}/srv.key", "rb") as k, open(f"{directory}/srv.pem", "rb") as c:
    creds = grpc.ssl_server_credentials(((k.read(), c.read()),))
server.add_secure_port(f"127.0.0.1:{port}", creds)
server.start()
open(f"{directory}/ready", "w").close()
server.wait_for_termination()
