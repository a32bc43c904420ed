"""How long after a rotation a sink file holds the new secret.

Usage: sink-latency.py AGENT_SOCKET CREDENTIAL SINK_FILE ROTATIONS

For each rotation: POST /v1/credentials/CREDENTIAL/refresh over the agent's socket; once the agent
answers with the new secret (the rotation is done: the socket serves it), the sink file is read
in a tight loop until it holds that secret. The latency is the time from the answer to the first
read that shows the new secret (about 0 when the file already held it); beside it, the time from
sending the refresh, which includes fetching the new token from the identity endpoint. Prints one
JSON line: {"rotations", "p50_ms", "p99_ms", "max_ms", "from_request_p50_ms", "from_request_p99_ms"}.
The secret itself is never printed.
"""
import json
import socket
import sys
import time


def refresh(path, name):
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    connection.connect(path)
    connection.sendall(f"POST /v1/credentials/{name}/refresh HTTP/1.1\r\nHost: localhost\r\n"
                       "Content-Length: 0\r\nConnection: close\r\n\r\n".encode())
    answer = b""
    while True:
        chunk = connection.recv(65536)
        if not chunk:
            break
        answer += chunk
    connection.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        status = head.split(b"\r\n")[0].decode()
        raise SystemExit(f"sink-latency: the refresh answered {status}")
    return json.loads(body)


def read(path):
    try:
        with open(path) as file:
            return file.read()
    except FileNotFoundError:
        return None


def main():
    agent_socket, name, sink, rotations = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    latencies, from_request = [], []
    version = 0
    for _ in range(rotations):
        requested = time.monotonic()
        credential = refresh(agent_socket, name)
        answered = time.monotonic()
        if credential["version"] == version:
            raise SystemExit("sink-latency: the refresh did not rotate (refresh.client_min_interval must be 0s)")
        version = credential["version"]
        while read(sink) != credential["password"]:
            if time.monotonic() - answered > 5:
                raise SystemExit(f"sink-latency: {sink} did not hold version {version} within 5 s")
        held = time.monotonic()
        latencies.append((held - answered) * 1000)
        from_request.append((held - requested) * 1000)
    latencies.sort()
    from_request.sort()
    def percentile(values, p):
        return round(values[min(len(values) - 1, int(len(values) * p))], 3)
    print(json.dumps({"rotations": rotations, "p50_ms": percentile(latencies, 0.50),
                      "p99_ms": percentile(latencies, 0.99), "max_ms": round(latencies[-1], 3),
                      "from_request_p50_ms": percentile(from_request, 0.50),
                      "from_request_p99_ms": percentile(from_request, 0.99)}))


main()
