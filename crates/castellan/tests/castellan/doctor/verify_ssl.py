"""Python's ssl module as a client (what paho-mqtt and requests use): a TLS server on 127.0.0.1 presents
CHAIN with KEY, a client trusting CAFILE connects to it as HOST. Prints "ok" or the client's error.

    python3 verify_ssl.py CAFILE CHAIN KEY HOST

With `--client CAFILE HOST PORT` it is only the client (of another server, such as `openssl
s_server`). With `--serve CHAIN KEY` it only serves (for another client, such as JavaTls.java): prints its port,
then answers handshakes until stdin closes.
"""
import socket
import ssl
import sys
import threading

if sys.argv[1] == "--client":
    ctx = ssl.create_default_context(cafile=sys.argv[2])
    try:
        with socket.create_connection(("127.0.0.1", int(sys.argv[4])), timeout=10) as raw:
            with ctx.wrap_socket(raw, server_hostname=sys.argv[3]):
                print("ok")
    except ssl.SSLError as e:
        print(e)
        sys.exit(1)
    sys.exit(0)

if sys.argv[1] == "--serve":
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(sys.argv[2], sys.argv[3])
    srv = socket.create_server(("127.0.0.1", 0))
    print(srv.getsockname()[1], flush=True)

    def loop():
        while True:
            conn, _ = srv.accept()
            try:
                with ctx.wrap_socket(conn, server_side=True) as tls:
                    tls.recv(1)
            except (ssl.SSLError, OSError):
                pass

    threading.Thread(target=loop, daemon=True).start()
    sys.stdin.read()
    sys.exit(0)

cafile, chain, key, host = sys.argv[1:5]
server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
server_ctx.load_cert_chain(chain, key)
listener = socket.create_server(("127.0.0.1", 0))
port = listener.getsockname()[1]


def serve():
    conn, _ = listener.accept()
    try:
        with server_ctx.wrap_socket(conn, server_side=True) as tls:
            tls.recv(1)
    except (ssl.SSLError, OSError):
        pass


threading.Thread(target=serve, daemon=True).start()
client_ctx = ssl.create_default_context(cafile=cafile)
try:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with client_ctx.wrap_socket(raw, server_hostname=host) as tls:
            tls.sendall(b"x")
    print("ok")
except ssl.SSLError as e:
    print(e)
    sys.exit(1)
