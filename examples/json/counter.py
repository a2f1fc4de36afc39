#!/usr/bin/env python3
"""mqpaxos from Python with paho-mqtt (1.x or 2.x): a put, a get with revisions, and a counter
incremented by compare-and-swap on the key's mod_revision, which no concurrent writer can slip
under. Usage: counter.py [HOST [PORT [USER]]] (default 127.0.0.1 1883 alice, the broker of
`mqpaxos cluster up`). Prints every answer as a JSON line; exits 1 if one does not come."""
import json
import queue
import sys
import time
import uuid

import paho.mqtt.client as mqtt

HOST = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1"
PORT = int(sys.argv[2]) if len(sys.argv) > 2 else 1883
USER = sys.argv[3] if len(sys.argv) > 3 else "alice"
CLUSTER = "default"
REQUEST = f"mqpaxos/{CLUSTER}/json/request/{USER}"
# Our own reply topic, under our user's: nobody else's answers arrive here.
REPLY = f"mqpaxos/{CLUSTER}/json/reply/{USER}/py-{uuid.uuid4().hex[:12]}"

answers = queue.Queue()


def on_message(client, userdata, msg):
    answers.put(json.loads(msg.payload))


def connect():
    try:
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)  # paho-mqtt 2.x
    except AttributeError:
        client = mqtt.Client()  # paho-mqtt 1.x
    client.username_pw_set(USER)
    client.on_message = on_message
    client.connect(HOST, PORT)
    client.subscribe(REPLY)
    client.loop_start()
    return client


def call(client, op, **fields):
    """One request, sent again with the same id until it is answered: the servers run a
    request id at most once, so a resend after a lost answer or a leader change is safe."""
    rid = uuid.uuid4().hex
    body = json.dumps({"id": rid, "op": op, "reply_to": REPLY, **fields})
    deadline = time.time() + 15
    while time.time() < deadline:
        client.publish(REQUEST, body)
        wait_until = time.time() + 1
        while time.time() < wait_until:
            try:
                answer = answers.get(timeout=max(0.01, wait_until - time.time()))
            except queue.Empty:
                break
            if answer.get("id") == rid:
                print(json.dumps(answer, sort_keys=True))
                if not answer["ok"]:
                    sys.exit(f"{op} refused: {answer['error']}")
                return answer
    sys.exit(f"no answer to {op} within 15 s")


def main():
    client = connect()
    call(client, "put", key="counter", value="0")
    for _ in range(5):
        while True:
            now = call(client, "get", key="counter")
            new = str(int(now["value"]) + 1)
            swapped = call(client, "cas", key="counter", revision=now["mod_revision"], value=new)
            if swapped["swapped"]:
                break
    final = call(client, "get", key="counter")
    client.loop_stop()
    if final["value"] != "5" or final["version"] != 6:
        sys.exit(f"unexpected final state: {final}")


if __name__ == "__main__":
    main()
