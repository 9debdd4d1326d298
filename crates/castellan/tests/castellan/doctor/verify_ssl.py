"""Python's ssl module as a client (what paho-mqtt and requests use): a TLS server on 127.0.0.1 presents
CHAIN with KEY, a client trusting CAFILE connects to it as HOST. Prints "ok" or the client's error.

    python3 verify_ssl.py CAFILE CHAIN KEY HOST
"""
import socket
import ssl
import sys
import threading

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
