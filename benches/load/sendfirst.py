#!/usr/bin/env python3
"""A real client that sends the whole body before it reads (issue 11, item 2).

    python3 benches/load/sendfirst.py <addr> <body_bytes> <rounds> [timeout_s] [http.client|requests]

Each round POSTs <body_bytes> to /big with Python's http.client (or the
`requests` library, which sends through http.client the same way): the
request, body included, is sent with sendall() before getresponse() reads a
byte. The timeout is the library's, per socket operation, as a user would set
it. Prints one `SENDFIRST key=value ...` line per round, in the format of
`load sendfirst` (see benches/load/sendfirst.rs); what the library does not
show is `-`: it closes the socket itself, so how the connection ended (`end`)
is known only when an error says so.
"""

import http.client
import socket
import sys
import time


def kind(exc):
    """The name an exception goes by in the report."""
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return "timeout"
    if isinstance(exc, (ConnectionResetError, ConnectionAbortedError)):
        return "reset"
    if isinstance(exc, BrokenPipeError):
        return "pipe"
    if isinstance(exc, http.client.IncompleteRead):
        return "eof"
    if isinstance(exc, http.client.RemoteDisconnected):
        return "eof"
    # requests wraps the socket's error.
    cause = exc.__context__ or exc.__cause__
    if cause is not None and cause is not exc:
        inner = kind(cause)
        if inner != "error":
            return inner
    name = type(exc).__name__.lower()
    if "timeout" in name:
        return "timeout"
    return "error"


def with_http_client(host, port, body, timeout):
    """One round with http.client; returns the fields of the report."""
    out = {"status": "-", "close": 0, "whole": 0, "sent_ms": "-", "write": "ok",
           "received": 0, "end": "-"}
    start = time.perf_counter()
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        try:
            # Connects, sends the head and then the whole body (sendall).
            conn.request("POST", "/big", body=body,
                         headers={"Content-Type": "application/octet-stream"})
            out["sent_ms"] = f"{(time.perf_counter() - start) * 1e3:.3f}"
        except OSError as exc:
            # http.client gives up here: the user sees this error, no response.
            out["write"] = kind(exc)
            out["end"] = kind(exc)
            return out, None
        try:
            response = conn.getresponse()
            out["status"] = response.status
            out["close"] = int("close" in (response.getheader("Connection") or "").lower())
            data = response.read()
            out["received"] = len(data)
        except (OSError, http.client.HTTPException) as exc:
            out["end"] = kind(exc)
            return out, None
        elapsed = time.perf_counter() - start
        out["whole"] = 1
        return out, elapsed
    finally:
        conn.close()


def with_requests(host, port, body, timeout):
    """One round with requests (urllib3 over http.client)."""
    import requests

    out = {"status": "-", "close": 0, "whole": 0, "sent_ms": "-", "write": "-",
           "received": 0, "end": "-"}
    start = time.perf_counter()
    try:
        with requests.Session() as session:
            response = session.post(f"http://{host}:{port}/big", data=body,
                                    headers={"Content-Type": "application/octet-stream"},
                                    timeout=timeout)
            data = response.content
            elapsed = time.perf_counter() - start
    except requests.RequestException as exc:
        out["end"] = kind(exc)
        return out, None
    out["status"] = response.status_code
    out["close"] = int("close" in response.headers.get("Connection", "").lower())
    out["received"] = len(data)
    length = response.headers.get("Content-Length")
    out["whole"] = int(length is None or int(length) == len(data))
    return out, elapsed if out["whole"] else None


def main():
    args = sys.argv[1:]
    library = "http.client"
    if args and args[-1] in ("http.client", "requests"):
        library = args.pop()
    if len(args) not in (3, 4):
        sys.exit(__doc__.strip().splitlines()[2].strip())
    host, _, port = args[0].rpartition(":")
    body_bytes, rounds = int(args[1]), int(args[2])
    timeout = float(args[3]) if len(args) == 4 else 20.0
    body = b"x" * body_bytes
    one = with_requests if library == "requests" else with_http_client
    for n in range(1, rounds + 1):
        out, elapsed = one(host, int(port), body, timeout)
        whole_ms = f"{elapsed * 1e3:.3f}" if elapsed is not None else "-"
        print(f"SENDFIRST round={n} body={body_bytes} status={out['status']} "
              f"close={out['close']} whole={out['whole']} whole_ms={whole_ms} "
              f"sent_ms={out['sent_ms']} write={out['write']} "
              f"received={out['received']} end={out['end']}", flush=True)


if __name__ == "__main__":
    main()
