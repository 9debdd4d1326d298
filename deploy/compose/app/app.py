"""A small MQTT app on Castellan's certificates: publishes over mutual TLS and reads its message back.

It builds a new TLS context for every connection, so a certificate the agent renewed (the files in
CERT_DIR replaced atomically) is used from the next connection on, with no restart.
"""
import os
import ssl
import sys
import time
import uuid

import paho.mqtt.client as mqtt

HOST = os.environ.get("MQTT_HOST", "mosquitto")
PORT = int(os.environ.get("MQTT_PORT", "8883"))
CERT_DIR = os.environ.get("CERT_DIR", "/certs/app")
TOPIC = os.environ.get("MQTT_TOPIC", "castellan/hello")
INTERVAL = float(os.environ.get("INTERVAL", "30"))
ONCE = os.environ.get("ONCE") == "1"


def tls_context() -> ssl.SSLContext:
    # Trust Castellan's root alone; present the leaf and its intermediate (chain.pem) with the key.
    ctx = ssl.create_default_context(cafile=os.path.join(CERT_DIR, "root.pem"))
    ctx.load_cert_chain(os.path.join(CERT_DIR, "chain.pem"), os.path.join(CERT_DIR, "key.pem"))
    return ctx


def round_trip() -> str:
    """Connects, subscribes, publishes one message and returns it as received from the broker."""
    received = []
    message = f"hello over mTLS {uuid.uuid4().hex[:8]}"
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"app-{uuid.uuid4().hex[:8]}")
    client.tls_set_context(tls_context())
    client.on_message = lambda _c, _u, msg: received.append(msg.payload.decode())
    client.connect(HOST, PORT, keepalive=30)
    client.subscribe(TOPIC, qos=1)
    client.loop_start()
    try:
        time.sleep(0.5)
        client.publish(TOPIC, message, qos=1).wait_for_publish(timeout=10)
        deadline = time.monotonic() + 10
        while message not in received and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        client.loop_stop()
        client.disconnect()
    if message not in received:
        raise RuntimeError(f"{message!r} did not come back from {HOST}:{PORT}")
    return message


def main() -> int:
    while True:
        try:
            print(f"published and received: {round_trip()}", flush=True)
            if ONCE:
                return 0
        except Exception as e:  # noqa: BLE001 - a daemon reports and tries again
            print(f"error: {e}", file=sys.stderr, flush=True)
            if ONCE:
                return 1
        time.sleep(INTERVAL)


if __name__ == "__main__":
    sys.exit(main())
